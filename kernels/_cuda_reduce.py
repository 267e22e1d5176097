"""Column sums of a tall (rows, C) array on the GPU, in parallel and in a fixed order.

The first CUDA forms summed each column in one thread, rows in order: C threads for the whole
array, each walking every row. That is O(rows) serial work per thread: at batch 1024 the
bias gradient of mnist_cnn's conv2 is (589824, 64), 64 threads of 589824 additions each, the
likely cause (not yet profiled on a device) of the all-numba arm's ~270 ms step on an H100
(bench/results/gpu_check_vm_20261127-024617). Here each thread sums a chunk
of CHUNK_ROWS rows of one column into a float64 partial (threads of a warp read consecutive
columns of a row: coalesced), and the partials are summed the same way, level by level, until
one row is left. The order of additions depends on the shape only, so results are
deterministic; each kernel that needs a fused first pass (ReLU mask, squared deviations, the
BatchNorm gradient terms) has its own first-level kernel beside the others' modules.
"""
import numpy

from ._cuda import cuda_jit, grid_for, launch

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled

CHUNK_ROWS = 64


def chunks(rows):
    """How many partial rows a first level over `rows` rows writes."""
    return max(1, -(-rows // CHUNK_ROWS))


@cuda_jit
def _partials_cuda(a, part, chunk_rows):
    rows, c = a.shape
    for e in range(cuda.grid(1), part.shape[0] * c, cuda.gridsize(1)):
        k = e // c
        j = e - k * c
        s = part[k, j]  # 0, as a float64 (a literal 0.0 would be float32 in the simulator)
        for r in range(k * chunk_rows, min(rows, (k + 1) * chunk_rows)):
            s += a[r, j]
        part[k, j] = s


@cuda_jit
def _sum_rows_into_cuda(part, out):
    rows, c = part.shape
    for j in range(cuda.grid(1), c, cuda.gridsize(1)):
        s = out[j]
        for r in range(rows):
            s += part[r, j]
        out[j] = s


def zeros(xp, rows, c):
    """A float64 partials buffer for a first level over `rows` rows of C columns."""
    return xp.zeros((chunks(rows), c), dtype=numpy.float64)


def finish(xp, part, out):
    """out (C,) float64 += the column sums of the float64 partials `part`, level by level."""
    while part.shape[0] > CHUNK_ROWS:
        next_part = zeros(xp, part.shape[0], part.shape[1])
        launch(_partials_cuda, *grid_for(next_part.size), part, next_part, CHUNK_ROWS)
        part = next_part
    launch(_sum_rows_into_cuda, *grid_for(part.shape[1]), part, out)
    return out


def column_sums(xp, a, out):
    """out (C,) float64 += the column sums of a (rows, C)."""
    part = zeros(xp, a.shape[0], a.shape[1])
    launch(_partials_cuda, *grid_for(part.size), a, part, CHUNK_ROWS)
    return finish(xp, part, out)

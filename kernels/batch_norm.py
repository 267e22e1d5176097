"""Batch normalization of a (rows, C) array over its rows (channels last), and its backward.

    batch_norm_forward(x, gamma, beta, epsilon, mean=None, var=None)
        -> (y, mean, var, inv_std)     y = (x - mean) * gamma * inv_std + beta,
                                       inv_std = 1 / sqrt(var + epsilon)
    batch_norm_backward(dy, x, gamma, mean, inv_std, training=True)
        -> (dx, dgamma, dbeta)         dgamma = sum(dy * xhat), dbeta = sum(dy) over the rows,
                                       xhat = (x - mean) * inv_std; dx =
                                       gamma * inv_std * (dy - dbeta/n - xhat * dgamma/n)
                                       (training: mean and var were the batch's), else
                                       gamma * inv_std * dy (given statistics are constants)

`x`/`dy` are 2-D (rows, C) (an (N, H, W, C) activation reshaped to (N*H*W, C) is one);
`gamma`/`beta` are (C,) arrays or None (1 and 0: Keras's scale=False / center=False).
With `mean`/`var` None the forward uses the batch's mean and biased variance (as
`x.var(axis=0)`), else the given ones (inference). `mean`, `var`, `inv_std`, `dgamma`,
`dbeta` are float64; y and dx have x's dtype. The backward recomputes xhat from x, so a
layer keeps x (which it holds anyway), not xhat.

The Numba CPU forms make two passes over the data each: per-channel statistics or sums,
then y = (x - mean)*scale + offset or dx = a*dy + b*(x - mean) + c with per-channel
coefficients, in float64 arithmetic. Rows are cut into fixed blocks (BLOCK_ELEMENTS // C
rows); each block's statistics (a two-pass mean and
sum of squared deviations, or the backward's sums) go to its own slot and the blocks are
merged in order (Chan et al.'s pairwise update for the variance), so results do not depend
on how blocks are spread over accelnet's worker threads (`_workers.run_tasks`), and a
large mean offset costs no precision. The references use NumPy/CuPy float64 reductions;
the CUDA forms take the statistics and sums as parallel column sums over chunks of 64 rows
(kernels._cuda_reduce: fixed order, deterministic) and give one thread per element for y and
dx.
"""

import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _cuda_reduce, _dispatch, _workers
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled

BLOCK_ELEMENTS = 8192  # a statistics block is BLOCK_ELEMENTS // C rows (32 KiB of float32)
MIN_THREADED_BYTES = 16 << 20  # smaller arrays run on the calling thread. Measured on 2
# shared cores, fwd + bwd of (131072, 32) float32 (16 MiB): 2 workers 4.5 ms vs 7.4 serial
# on a quiet machine, 6.7-7.4 vs 6.6-6.9 (best of 15) under a load of 4; at 8 MiB 2.6 vs
# 3.0 ms quiet, a loss under load. ACCELNET_NUM_THREADS=1 keeps every size serial.


def _check_forward(x, gamma, beta, mean, var):
    if x.ndim != 2:
        raise ShapeError(f"batch_norm_forward: expected a 2-D (rows, channels) array, got "
                         f"shape {x.shape}.")
    c = x.shape[1]
    for name, a in (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)):
        if a is not None and tuple(a.shape) != (c,):
            raise ShapeError(f"batch_norm_forward: {name} has shape {tuple(a.shape)}, "
                             f"expected ({c},).")
    if (mean is None) != (var is None):
        raise ShapeError("batch_norm_forward: give both mean and var, or neither.")


def _check_backward(dy, x, gamma, mean, inv_std):
    if dy.ndim != 2 or dy.shape != x.shape:
        raise ShapeError(f"batch_norm_backward: dy {dy.shape} and x {x.shape} must be the "
                         f"same 2-D (rows, channels) shape.")
    c = x.shape[1]
    for name, a in (("gamma", gamma), ("mean", mean), ("inv_std", inv_std)):
        if a is not None and tuple(a.shape) != (c,):
            raise ShapeError(f"batch_norm_backward: {name} has shape {tuple(a.shape)}, "
                             f"expected ({c},).")


def _f64(xp, a):
    return xp.asarray(a, dtype=numpy.float64)


def _forward_coefficients(xp, var, gamma, beta, epsilon):
    """(inv_std, scale, offset), float64: y = (x - mean) * scale + offset."""
    inv_std = 1.0 / xp.sqrt(var + epsilon)
    scale = inv_std * _f64(xp, gamma) if gamma is not None else inv_std
    offset = _f64(xp, beta) if beta is not None else xp.zeros_like(inv_std)
    return inv_std, scale, offset


def _backward_coefficients(xp, sum_dy, sum_dy_dev, gamma, inv_std, rows, training):
    """(dgamma, a, b, c), float64: dx = a * dy + b * (x - mean) + c, from sum_dy and
    sum_dy_dev = sum(dy * (x - mean))."""
    dgamma = sum_dy_dev * inv_std
    a = inv_std * _f64(xp, gamma) if gamma is not None else inv_std.copy()
    if training:
        b = -a * inv_std * (dgamma / rows)
        c = -a * (sum_dy / rows)
    else:
        b = xp.zeros_like(a)
        c = xp.zeros_like(a)
    return dgamma, a, b, c


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def reference_forward(x, gamma, beta, epsilon, mean=None, var=None):
    """Pure NumPy/CuPy form: float64 mean and (two-pass) variance, then three array ops."""
    _check_forward(x, gamma, beta, mean, var)
    xp = get_array_module(x)
    if mean is None:  # on a float64 copy: CuPy's var(dtype=float64) of float32 x is not float64
        x64 = x.astype(numpy.float64, copy=False)
        mean = x64.mean(axis=0)
        centred = x64 - mean
        var = (centred * centred).mean(axis=0)
    else:
        mean, var = _f64(xp, mean), _f64(xp, var)
    inv_std, scale, _ = _forward_coefficients(xp, var, gamma, None, epsilon)
    dtype = x.dtype if x.dtype.kind == "f" else numpy.dtype(numpy.float64)
    y = x - mean.astype(dtype)
    y *= scale.astype(dtype)
    if beta is not None:
        y += beta.astype(dtype)
    return y, mean, var, inv_std


def reference_backward(dy, x, gamma, mean, inv_std, training=True):
    """Pure NumPy/CuPy form: xhat, two float64 column sums, then dx."""
    _check_backward(dy, x, gamma, mean, inv_std)
    xp = get_array_module(dy, x)
    mean, inv_std = _f64(xp, mean), _f64(xp, inv_std)
    dtype = xp.result_type(dy.dtype, x.dtype)
    dtype = dtype if dtype.kind == "f" else numpy.dtype(numpy.float64)
    xhat = x - mean.astype(dtype)
    xhat *= inv_std.astype(dtype)
    dbeta = dy.sum(axis=0, dtype=numpy.float64)
    dgamma = (dy * xhat).sum(axis=0, dtype=numpy.float64)
    a = inv_std * _f64(xp, gamma) if gamma is not None else inv_std
    if training:
        rows = max(x.shape[0], 1)
        xhat *= (dgamma / rows).astype(dtype)
        xhat += (dbeta / rows).astype(dtype)
        dx = dy - xhat
        dx *= a.astype(dtype)
    else:
        dx = dy * a.astype(dtype)
    return dx, dgamma, dbeta


# ---------------------------------------------------------------- Numba CPU

def _block_rows(c):
    return max(1, BLOCK_ELEMENTS // max(c, 1))


@cpu_jit(nogil=True)
def _stats_blocks_cpu(x, block_rows, b0, b1, block_mean, block_m2):
    """Each block's mean and sum of squared deviations: two passes over the cached block,
    four rows per step (shorter dependency chains on the accumulators)."""
    rows, c = x.shape
    for b in range(b0, b1):
        r0 = b * block_rows
        r1 = min(r0 + block_rows, rows)
        m = block_mean[b]
        q = block_m2[b]
        for j in range(c):
            m[j] = 0.0
            q[j] = 0.0
        r = r0
        while r + 4 <= r1:
            for j in range(c):
                m[j] += (numpy.float64(x[r, j]) + x[r + 1, j]) \
                    + (numpy.float64(x[r + 2, j]) + x[r + 3, j])
            r += 4
        for r in range(r, r1):
            for j in range(c):
                m[j] += x[r, j]
        inv_count = 1.0 / (r1 - r0)
        for j in range(c):
            m[j] *= inv_count
        r = r0
        while r + 4 <= r1:
            for j in range(c):
                mj = m[j]
                d0 = x[r, j] - mj
                d1 = x[r + 1, j] - mj
                d2 = x[r + 2, j] - mj
                d3 = x[r + 3, j] - mj
                q[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
            r += 4
        for r in range(r, r1):
            for j in range(c):
                d = x[r, j] - m[j]
                q[j] += d * d


@cpu_jit(nogil=True)
def _merge_stats_cpu(block_mean, block_m2, rows, block_rows, mean, var):
    """Blocks merged in order (Chan et al.): the rows' mean and biased variance."""
    blocks, c = block_mean.shape
    count = min(block_rows, rows)
    for j in range(c):
        mean[j] = block_mean[0, j]
        var[j] = block_m2[0, j]  # the running sum of squared deviations until the end
    for b in range(1, blocks):
        nb = min(block_rows, rows - b * block_rows)
        total = count + nb
        for j in range(c):
            delta = block_mean[b, j] - mean[j]
            mean[j] += delta * nb / total
            var[j] += block_m2[b, j] + delta * delta * (count * nb / total)
        count = total
    for j in range(c):
        var[j] /= rows


@cpu_jit(nogil=True)
def _affine_cpu(x, mean, scale, offset, y, r0, r1):
    """y = (x - mean) * scale + offset over rows r0:r1 (float64 arithmetic)."""
    c = x.shape[1]
    for r in range(r0, r1):
        for j in range(c):
            y[r, j] = (x[r, j] - mean[j]) * scale[j] + offset[j]


@cpu_jit(nogil=True)
def _grad_sums_blocks_cpu(dy, x, mean, block_rows, b0, b1, block_dy, block_dy_dev):
    """Each block's sum(dy) and sum(dy * (x - mean)), four rows per step."""
    rows, c = x.shape
    for b in range(b0, b1):
        r0 = b * block_rows
        r1 = min(r0 + block_rows, rows)
        s = block_dy[b]
        t = block_dy_dev[b]
        for j in range(c):
            s[j] = 0.0
            t[j] = 0.0
        r = r0
        while r + 4 <= r1:
            for j in range(c):
                mj = mean[j]
                g0 = numpy.float64(dy[r, j])
                g1 = numpy.float64(dy[r + 1, j])
                g2 = numpy.float64(dy[r + 2, j])
                g3 = numpy.float64(dy[r + 3, j])
                s[j] += (g0 + g1) + (g2 + g3)
                t[j] += (g0 * (x[r, j] - mj) + g1 * (x[r + 1, j] - mj)) \
                    + (g2 * (x[r + 2, j] - mj) + g3 * (x[r + 3, j] - mj))
            r += 4
        for r in range(r, r1):
            for j in range(c):
                g = dy[r, j]
                s[j] += g
                t[j] += g * (x[r, j] - mean[j])


@cpu_jit(nogil=True)
def _sum_blocks_cpu(block, out):
    blocks, c = block.shape
    for j in range(c):
        out[j] = block[0, j]
    for b in range(1, blocks):
        for j in range(c):
            out[j] += block[b, j]


@cpu_jit(nogil=True)
def _dx_cpu(dy, x, mean, a, b, c_, dx, r0, r1):
    """dx = a * dy + b * (x - mean) + c over rows r0:r1 (float64 arithmetic)."""
    c = x.shape[1]
    for r in range(r0, r1):
        for j in range(c):
            dx[r, j] = a[j] * dy[r, j] + b[j] * (x[r, j] - mean[j]) + c_[j]


def _block_tasks(array, blocks):
    """[(b0, b1)]: the blocks cut into one run per worker thread (one run when the array is
    small or the work is not threaded). Results do not depend on this split."""
    count = 1
    if array.nbytes >= MIN_THREADED_BYTES and _workers.threaded(array):
        count = max(1, min(_workers.num_threads(), blocks))
    bounds = [blocks * k // count for k in range(count + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:])]


def _run(array, fn, tasks):
    if len(tasks) == 1:
        return [fn(tasks[0])]
    return _workers.run_tasks(array, fn, tasks)


def numba_cpu_forward(x, gamma, beta, epsilon, mean=None, var=None):
    """Numba CPU form: a statistics pass (blocks merged in order), then one for y."""
    _check_forward(x, gamma, beta, mean, var)
    rows, c = x.shape
    if rows == 0 or c == 0:
        return reference_forward(x, gamma, beta, epsilon, mean, var)
    x = numpy.ascontiguousarray(x)
    block_rows = _block_rows(c)
    blocks = -(-rows // block_rows)
    tasks = _block_tasks(x, blocks)
    if mean is None:
        block_mean = numpy.empty((blocks, c))
        block_m2 = numpy.empty((blocks, c))
        _run(x, lambda t: _stats_blocks_cpu(x, block_rows, t[0], t[1], block_mean, block_m2),
             tasks)
        mean, var = numpy.empty(c), numpy.empty(c)
        _merge_stats_cpu(block_mean, block_m2, rows, block_rows, mean, var)
    else:
        mean, var = _f64(numpy, mean), _f64(numpy, var)
    inv_std, scale, offset = _forward_coefficients(numpy, var, gamma, beta, epsilon)
    y = numpy.empty_like(x)
    _run(x, lambda t: _affine_cpu(x, mean, scale, offset, y, min(t[0] * block_rows, rows),
                                  min(t[1] * block_rows, rows)), tasks)
    return y, mean, var, inv_std


def numba_cpu_backward(dy, x, gamma, mean, inv_std, training=True):
    """Numba CPU form: one pass for the sums (blocks added in order), one for dx."""
    _check_backward(dy, x, gamma, mean, inv_std)
    rows, c = x.shape
    if rows == 0 or c == 0:
        return reference_backward(dy, x, gamma, mean, inv_std, training)
    dy, x = numpy.ascontiguousarray(dy), numpy.ascontiguousarray(x)
    mean, inv_std = _f64(numpy, mean), _f64(numpy, inv_std)
    block_rows = _block_rows(c)
    blocks = -(-rows // block_rows)
    tasks = _block_tasks(x, blocks)
    block_dy = numpy.empty((blocks, c))
    block_dy_dev = numpy.empty((blocks, c))
    _run(x, lambda t: _grad_sums_blocks_cpu(dy, x, mean, block_rows, t[0], t[1], block_dy,
                                            block_dy_dev), tasks)
    dbeta, sum_dy_dev = numpy.empty(c), numpy.empty(c)
    _sum_blocks_cpu(block_dy, dbeta)
    _sum_blocks_cpu(block_dy_dev, sum_dy_dev)
    dgamma, a, b, c_ = _backward_coefficients(numpy, dbeta, sum_dy_dev, gamma, inv_std, rows,
                                              training)
    dx = numpy.empty_like(dy)
    _run(x, lambda t: _dx_cpu(dy, x, mean, a, b, c_, dx, min(t[0] * block_rows, rows),
                              min(t[1] * block_rows, rows)), tasks)
    return dx, dgamma, dbeta


# ---------------------------------------------------------------- Numba CUDA

@cuda_jit
def _dev2_partials_cuda(x, mean, part, chunk_rows):
    """First level of the column sums of (x - mean)^2 (kernels._cuda_reduce)."""
    rows, c = x.shape
    for e in range(cuda.grid(1), part.shape[0] * c, cuda.gridsize(1)):
        k = e // c
        j = e - k * c
        s = part[k, j]  # 0, as a float64 (a literal 0.0 would be float32 in the simulator)
        m = mean[j]
        for r in range(k * chunk_rows, min(rows, (k + 1) * chunk_rows)):
            d = x[r, j] - m
            s += d * d
        part[k, j] = s


@cuda_jit
def _affine_cuda(x, mean, scale, offset, y, total):
    c = x.shape[1]
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = e // c
        j = e - r * c
        y[r, j] = (x[r, j] - mean[j]) * scale[j] + offset[j]


@cuda_jit
def _grad_partials_cuda(dy, x, mean, part_dy, part_dev, chunk_rows):
    """First level of the column sums of dy and dy * (x - mean) (kernels._cuda_reduce)."""
    rows, c = x.shape
    for e in range(cuda.grid(1), part_dy.shape[0] * c, cuda.gridsize(1)):
        k = e // c
        j = e - k * c
        s = part_dy[k, j]  # float64 zeros
        t = part_dev[k, j]
        m = mean[j]
        for r in range(k * chunk_rows, min(rows, (k + 1) * chunk_rows)):
            g = dy[r, j]
            s += g
            t += g * (x[r, j] - m)
        part_dy[k, j] = s
        part_dev[k, j] = t


@cuda_jit
def _dx_cuda(dy, x, mean, a, b, c_, dx, total):
    c = x.shape[1]
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = e // c
        j = e - r * c
        dx[r, j] = a[j] * dy[r, j] + b[j] * (x[r, j] - mean[j]) + c_[j]


def numba_cuda_forward(x, gamma, beta, epsilon, mean=None, var=None):
    """Numba CUDA form: the statistics as parallel column sums (kernels._cuda_reduce: the
    sums, then the squared deviations from the mean), one thread per element for y."""
    _check_forward(x, gamma, beta, mean, var)
    rows, c = x.shape
    if rows == 0 or c == 0:
        return reference_forward(x, gamma, beta, epsilon, mean, var)
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    if mean is None:
        sums, var = xp.zeros(c, dtype=numpy.float64), xp.zeros(c, dtype=numpy.float64)
        mean = _cuda_reduce.column_sums(xp, x, sums) / rows
        part = _cuda_reduce.zeros(xp, rows, c)
        launch(_dev2_partials_cuda, *grid_for(part.size), x, mean, part, _cuda_reduce.CHUNK_ROWS)
        var = _cuda_reduce.finish(xp, part, var) / rows
    else:
        mean, var = _f64(xp, mean), _f64(xp, var)
    inv_std, scale, offset = _forward_coefficients(xp, var, gamma, beta, epsilon)
    y = xp.empty_like(x)
    launch(_affine_cuda, *grid_for(x.size), x, mean, scale, offset, y, x.size)
    return y, mean, var, inv_std


def numba_cuda_backward(dy, x, gamma, mean, inv_std, training=True):
    """Numba CUDA form: the two sums as parallel column sums (kernels._cuda_reduce), one
    thread per element for dx."""
    _check_backward(dy, x, gamma, mean, inv_std)
    rows, c = x.shape
    if rows == 0 or c == 0:
        return reference_backward(dy, x, gamma, mean, inv_std, training)
    xp = get_array_module(dy, x)
    dy, x = xp.ascontiguousarray(dy), xp.ascontiguousarray(x)
    mean, inv_std = _f64(xp, mean), _f64(xp, inv_std)
    sum_dy, sum_dy_dev = xp.zeros(c, dtype=numpy.float64), xp.zeros(c, dtype=numpy.float64)
    part_dy, part_dev = _cuda_reduce.zeros(xp, rows, c), _cuda_reduce.zeros(xp, rows, c)
    launch(_grad_partials_cuda, *grid_for(part_dy.size), dy, x, mean, part_dy, part_dev,
           _cuda_reduce.CHUNK_ROWS)
    _cuda_reduce.finish(xp, part_dy, sum_dy)
    _cuda_reduce.finish(xp, part_dev, sum_dy_dev)
    dgamma, a, b, c_ = _backward_coefficients(xp, sum_dy, sum_dy_dev, gamma, inv_std, rows,
                                              training)
    dx = xp.empty_like(dy)
    launch(_dx_cuda, *grid_for(dy.size), dy, x, mean, a, b, c_, dx, dy.size)
    return dx, dgamma, sum_dy


# ---------------------------------------------------------------- public

def batch_norm_forward(x, gamma, beta, epsilon, mean=None, var=None):
    """(y, mean, var, inv_std): x (rows, C) normalized over its rows, or with the given
    mean/var; gamma/beta None mean 1/0. Statistics float64, y in x's dtype."""
    return _dispatch.form("batch_norm_forward", x)(x, gamma, beta, epsilon, mean, var)


def batch_norm_backward(dy, x, gamma, mean, inv_std, training=True):
    """(dx, dgamma, dbeta) of batch_norm_forward; training=False treats mean and inv_std as
    constants (inference statistics). dgamma/dbeta float64, dx in dy's dtype."""
    return _dispatch.form("batch_norm_backward", dy, x)(dy, x, gamma, mean, inv_std, training)

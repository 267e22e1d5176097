"""Small loops shared by the Numba CPU kernels.

`add_into(dst, src)`: dst += src for two 2-D arrays of one shape, as an explicit loop.
Inside a Numba kernel the array expression `dst += src` allocates a temporary for the sum:
measured 36 us for the 36 adds of (64, 32) partial sums of one Winograd weight-gradient
block, against ~1 us as a loop (the block's 36 GEMMs take 63 us).
`fill_zero(a)`: a[...] = 0 for a C-contiguous array of any rank, as a loop over its flat view.
"""
from ._jit import cpu_jit


@cpu_jit(parallel=False)
def add_into(dst, src):
    rows, cols = dst.shape
    for i in range(rows):
        for j in range(cols):
            dst[i, j] += src[i, j]


@cpu_jit(parallel=False)
def fill_zero(a):
    flat = a.reshape(-1)
    zero = flat.dtype.type(0)
    for i in range(flat.size):
        flat[i] = zero

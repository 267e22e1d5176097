"""Both gradients of a Winograd convolution from one transform of the output gradient.

    dw, dx = winograd_grads(x, dy, u, padding="valid", out=None, r=3)

u = winograd_weights(kernel, m) as in the forward. The weight gradient is
`winograd_weight_grad`'s (dM = A dY A^T per tile, dU = dM^T V); the input gradient reuses
dM: dV[k] = dM[k] U[k]^T per Winograd position k, then the adjoint of the input transform,
B dV B^T per tile, added into the n x n input patch the tile was read from (patches overlap
by r - 1; rows and columns outside the input, the padding, are dropped). The separate input
gradient (`winograd_conv` of dy with the rotated kernel, 'full' padding for a 'valid'
forward) transforms dy once more and, for 'valid', runs a ring of extra tiles.

Where it pays (`applies`): only for 'valid' convolutions, whose separate input gradient
runs a ring of extra tiles. Measured on 2 workers (16 slices of 8 images, as Conv2D runs
them), float32, ms per batch of 128, weight + input gradient as two passes | from one
transform: F(4x4, 3x3) 'valid' 26x26x32->64 (mnist conv2) 13.4 | 10.9, 13.1 | 10.8;
'same' 16x16x32->64 6.0 | 6.5, 16x16x64->64 9.2 | 10.2, 32x32x32->32 11.8 | 12.5; F(3x3,
5x5) 'same' 14x14x32->64 (seed 004's conv2) 11.8 | 12.2. The adjoint adds n x n values per tile
into overlapping patches where the forward writes m x m (read-modify-write, ~2.25x the
input's size at F(4x4, 3x3)). (One thread alone, 'same' looked 5-10 % faster at F > C:
measure with both workers busy.)
"""
import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _dispatch, _workers
from ._cuda import cuda_jit, grid_for, launch
from .winograd import (_blocking, _buffer, _check_dy, _cuda_dm, _cuda_v, _generated, _geometry,
                       _plane_rows, _reference_dm, _reference_v, finish_weight_grad, tile_of,
                       transforms)

cuda = None  # bound to numba.cuda when the CUDA kernel is first compiled


def applies(padding, channels, filters):
    """Whether Conv2D takes both gradients from one transform (see the module docstring:
    'valid' only, whatever the channels and filters)."""
    return padding == "valid"


def _prepare(x, dy, u, padding, out, r):
    """(m, geometry, dy as (N, OH, OW, F)) after the shape checks."""
    m = tile_of(u, r)
    geometry = _geometry(x.shape, padding, m, r)
    dy = _check_dy(x, dy, geometry[2], geometry[3])
    if u.shape[1:] != (x.shape[3], dy.shape[3]):
        raise ShapeError(f"winograd_grads: U {u.shape} does not fit x {x.shape} and dy "
                         f"{dy.shape} ((n*n, C, F)).")
    if out is not None and (out.shape != x.shape or not out.flags.c_contiguous):
        raise ShapeError(f"winograd_grads: out must be C-contiguous of shape {x.shape}, "
                         f"got {out.shape}.")
    return m, geometry, dy


def reference(x, dy, u, padding="valid", out=None, r=3, u_t=None, transformed=False):
    """Pure NumPy/CuPy form: einsum transforms, n*n GEMMs each way, and the adjoint's
    overlapping patches added by strided slicing (one slice per patch position)."""
    m, (top, left, _, _, th, tw), dy = _prepare(x, dy, u, padding, out, r)
    xp = get_array_module(x)
    n, h, w, c = x.shape
    a = m + r - 1
    dm = _reference_dm(dy.astype(x.dtype, copy=False), th, tw, m, r)
    v = _reference_v(x, top, th, tw, left, m, r)
    dw = finish_weight_grad(xp.matmul(dm.transpose(0, 2, 1), v), x.dtype, m, r, transformed)
    dv = xp.matmul(dm, u.astype(x.dtype, copy=False).transpose(0, 2, 1))
    bt = xp.asarray(transforms(m, r)[2], dtype=x.dtype)
    dd = xp.einsum("ap,abntsc,bq->ntspqc", bt, dv.reshape(a, a, n, th, tw, c), bt)
    dxp = xp.zeros((n, m * th + r - 1, m * tw + r - 1, c), dtype=x.dtype)
    for p in range(a):
        for q in range(a):
            dxp[:, p:p + m * th:m, q:q + m * tw:m, :] += dd[:, :, :, p, q, :]
    dx = dxp[:, top:top + h, left:left + w, :]
    if out is None:
        return dw, xp.ascontiguousarray(dx)
    out[...] = dx
    return dw, out


def numba_cpu(x, dy, u, padding="valid", out=None, r=3, u_t=None, transformed=False):
    """Numba CPU form: one GIL-free call (`_grads_cpu_M_R`, generated); per block of images
    both transforms, the 2 n*n GEMMs and the adjoint while the block is in cache."""
    m, (top, left, _, _, th, tw), dy = _prepare(x, dy, u, padding, out, r)
    kernel = _generated(m, r)
    if kernel is None:  # (the dispatcher sends other dtypes to the reference)
        return reference(x, dy, u, padding, out, r, transformed=transformed)  # (u_t: a shortcut)
    x = numpy.ascontiguousarray(x)
    dy = numpy.ascontiguousarray(dy, dtype=x.dtype)
    per_block, v, dm, mp, part, du_t = cpu_buffers(x, dy.shape[3], m, r, th, tw)
    out = numpy.empty(x.shape, x.dtype) if out is None else out
    with _workers.one_blas_thread():
        u_t = transposed(u) if u_t is None else u_t
        kernel[2](x, dy, numpy.ascontiguousarray(u_t, dtype=x.dtype), du_t, part, out, top,
                  left, th, tw, per_block, v, dm, mp)
    return finish_weight_grad(du_t, x.dtype, m, r, transformed), out


def cpu_buffers(x, f, m, r, th, tw):
    """(per_block, v, dm, dv, part, du_t): the generated gradient drivers' blocking, their
    per-thread transform buffers and the transformed kernel gradient to fill."""
    a = m + r - 1
    c = x.shape[3]
    per_block, tiles = _blocking(x, th, tw, "weight_grad")
    v = _buffer(x, "winograd_v", (a * a, _plane_rows(tiles, c, x.itemsize), c))
    dm = _buffer(x, "winograd_dm", (a * a, _plane_rows(tiles, f, x.itemsize), f))
    dv = _buffer(x, "winograd_dv", (a * a, _plane_rows(tiles, c, x.itemsize), c))
    part = _buffer(x, "winograd_part", (f, c))
    return per_block, v, dm, dv, part, numpy.empty((a * a, f, c), x.dtype)


def transposed(u):
    """U[k]^T for every k, (n*n, F, C) C-contiguous: `winograd_grads`'s `u_t`."""
    return get_array_module(u).ascontiguousarray(u.transpose(0, 2, 1))


@cuda_jit
def _adjoint_cuda(dv, dx, bt, top, left, th, tw, m, total):
    """dx[b, y, z, ch] = sum over the tiles whose patch holds (y, z) of (B dV B^T)[p, q]: one
    input element per thread, gathered (no atomics)."""
    n, h, w, c = dx.shape
    a = bt.shape[0]
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        ch = e % c
        z = (e // c) % w
        y = (e // (c * w)) % h
        b = e // (c * w * h)
        acc = 0.0
        # only the tiles whose patch holds (y, z): 0 <= y + top - m*i < a (a few, not th)
        i0 = max(0, -((a - 1 - y - top) // m))
        i1 = min(th, (y + top) // m + 1)
        j0 = max(0, -((a - 1 - z - left) // m))
        j1 = min(tw, (z + left) // m + 1)
        for i in range(i0, i1):
            p = y + top - m * i
            for j in range(j0, j1):
                q = z + left - m * j
                t = (b * th + i) * tw + j
                for p2 in range(a):
                    row = 0.0
                    for q2 in range(a):
                        row += dv[p2 * a + q2, t, ch] * bt[q2, q]
                    acc += bt[p2, p] * row
        dx[b, y, z, ch] = acc


def numba_cuda(x, dy, u, padding="valid", out=None, r=3, u_t=None, transformed=False):
    """Numba CUDA form: the weight gradient as `winograd_weight_grad`'s CUDA form; dM again
    one thread per (tile, filter), CuPy's GEMMs for dV, the adjoint one thread per input
    element."""
    m, (top, left, _, _, th, tw), dy = _prepare(x, dy, u, padding, out, r)
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    dy = xp.ascontiguousarray(dy, dtype=x.dtype)
    dm = _cuda_dm(dy, m, r, th, tw)
    v = _cuda_v(x, m, r, top, left, th, tw)
    dw = finish_weight_grad(xp.matmul(dm.transpose(0, 2, 1), v), x.dtype, m, r, transformed)
    dv = xp.ascontiguousarray(xp.matmul(dm, xp.asarray(u, dtype=x.dtype).transpose(0, 2, 1)))
    out = xp.empty(x.shape, x.dtype) if out is None else out
    bt = xp.asarray(transforms(m, r)[2], dtype=numpy.float64)
    total = out.size
    blocks, threads = grid_for(total)
    launch(_adjoint_cuda, blocks, threads, dv, out, bt, top, left, th, tw, m, total)
    return dw, out


def winograd_grads(x, dy, u, padding="valid", out=None, r=3, u_t=None, transformed=False):
    """(kernel gradient (r, r, C, F), input gradient (N, H, W, C) in `out` if given) of an
    r x r stride-1 convolution of x with U = winograd_weights(kernel, m), whose output
    gradient is dy ((N, OH, OW, F) or (N*OH*OW, F)), from one Winograd transform of dy.
    u_t = transposed(u), when the caller reuses one U over many calls (Conv2D's slices):
    the Numba CPU form needs U[k]^T contiguous (as u[k].T, an F-ordered operand, its GEMMs
    took 45 % longer) and would copy it per call (50 us at mnist conv2). transformed=True:
    the kernel gradient as `winograd_weight_grad(..., transformed=True)` gives it."""
    return _dispatch.form("winograd_grads", x, dy)(x, dy, u, padding, out, r, u_t, transformed)

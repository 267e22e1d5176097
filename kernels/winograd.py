"""Winograd F(m x m, r x r): an r x r stride-1 convolution with fewer multiplications.

    U = winograd_weights(kernel, m=2)          (n*n, C, F) from an (r, r, C, F) kernel
    winograd_conv(x, U, padding, out=None, bias=None, relu=False, r=3) -> (N, OH, OW, F)
    winograd_weight_grad(x, dy, padding, m=2, r=3) -> (r, r, C, F)

n = m + r - 1. F(2x2, 3x3) is described below; F(4x4, 3x3) takes 2.25 multiplies per output
instead of 9, F(3x3, 5x5) 5.4 and F(2x2, 5x5) 9 instead of 25, with Toom-Cook matrices
(`transforms`). On the
CPU each tile's transforms are straight-line code generated from those matrices
(`winograd_codegen` writes `_winograd_tiles.py`). Measured float32 error (max |err| / max
|y|, N(0, 1) data, vs float64 direct): F(2, 3) 2.6e-7, F(4, 3) 4.8e-6, F(2, 5) 2.5e-6,
F(3, 5) 4.3e-6.
`tile` is Conv2D's rule for which m to use per kernel and pass (`TILES`).

F(2x2, 3x3): the output is cut into 2x2 tiles; each tile reads a 4x4 patch d of the
(zero-padded) input, transformed to V = B^T d B (16 values per channel); for each of the 16
positions the channels are contracted with U = G g G^T by one GEMM (T tiles x C) @ (C x F);
the output transform A^T M A gives the 2x2 outputs (plus bias and ReLU when asked, in the
same pass). Larger tiles work alike with n x n patches. 'same' padding is TensorFlow's (the
odd pixel after). The Conv2D layer uses it per `tile` on the threaded CPU path; elsewhere
im2col + GEMM is the general fallback. The CUDA forms use generic transform kernels for
every tile (none has been measured on a device, and the GPU default is the reference).
Padding 'full' (r - 1 on every side) gives the input gradient of a 'valid' convolution.
"""

import functools
import math
from fractions import Fraction

import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _dispatch, _workers
from ._cuda import cuda_jit, grid_for, launch
from .im2col import conv_output_size, same_padding

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled

G = numpy.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
BT = numpy.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
AT = numpy.array([[1, 1, 1, 0], [0, 1, -1, -1]])

MAX_TILE = 8  # n = m + r - 1 at most (the CUDA forms' local arrays)
POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))  # Toom-Cook points, in order
# (n - 1 of them, then infinity), except where TILE_POINTS says otherwise. Measured float32
# max |error| / max |y| against a float64 direct convolution, N(0, 1) x, 16x16x32 -> 16
# 'same', forward / weight gradient: F(4, 3) with 0, +-1, +-2: 5.9e-6 / 4.0e-6; with
# 0, +-1, +-1/2: 4.8e-6 / 3.3e-6 (taken); F(2, 5) with 0, +-1, +-2: 2.5e-6 / 1.6e-5 (taken);
# with 0, +-1, +-1/2: 3.5e-6 / 9.7e-6; F(2, 3): 2.6e-7 / 5.2e-7.
TILE_POINTS = {(4, 3): (0, 1, -1, Fraction(1, 2), Fraction(-1, 2))}


@functools.lru_cache(maxsize=None)
def transforms(m, r, points=None):
    """(A^T (m, n), G (n, r), B^T (n, n)) float64 for F(m, r), n = m + r - 1, by the
    Toom-Cook construction (Lavin & Gray 2015) in exact rational arithmetic: y = A^T[(G g)
    * (B^T d)] is the correlation y_i = sum_k g_k d_(i+k). The n - 1 finite points are the
    first of POINTS unless given; the last point is infinity. A^T is the Vandermonde matrix
    of the points (transposed), G likewise for degree r - 1, B^T the transpose of the
    inverse of the full n x n Vandermonde matrix; each row of B^T is scaled to integers and
    the factor moved to G. F(2, 3) gives the hand-written AT, G, BT above."""
    n = m + r - 1
    if m < 1 or r < 1 or n > MAX_TILE:
        raise ShapeError(f"winograd: F({m}, {r}) needs m, r >= 1 and m + r - 1 <= {MAX_TILE}.")
    if (m, r) == (2, 3) and points is None:
        return AT.astype(float), G.astype(float), BT.astype(float)
    if points is None:
        points = TILE_POINTS.get((m, r), POINTS[:n - 1])
    pts = [Fraction(p) for p in points]
    if len(pts) != n - 1 or len(set(pts)) != n - 1:
        raise ValueError(f"winograd: F({m}, {r}) needs {n - 1} distinct points, got {pts}.")
    vand = [[p ** k for k in range(n)] for p in pts] + [[Fraction(int(k == n - 1)) for k in range(n)]]
    inv = _exact_inverse(vand)
    bt = [[inv[l][j] for l in range(n)] for j in range(n)]  # B^T = (V^-1)^T
    at = [[(pts[j] ** i if j < n - 1 else Fraction(int(i == m - 1))) for j in range(n)]
          for i in range(m)]
    g = [[(pts[j] ** k if j < n - 1 else Fraction(int(k == r - 1))) for k in range(r)]
         for j in range(n)]
    for j in range(n):  # scale row j of B^T to integers, G's row j by the inverse
        scale = math.lcm(*(v.denominator for v in bt[j]))
        bt[j] = [v * scale for v in bt[j]]
        g[j] = [v / scale for v in g[j]]
    as_array = lambda rows: numpy.array([[float(v) for v in row] for row in rows])
    return as_array(at), as_array(g), as_array(bt)


def _exact_inverse(rows):
    """The inverse of a square matrix of Fractions, by Gauss-Jordan elimination."""
    n = len(rows)
    a = [list(row) + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(rows)]
    for col in range(n):
        piv = next(i for i in range(col, n) if a[i][col] != 0)
        a[col], a[piv] = a[piv], a[col]
        p = a[col][col]
        a[col] = [v / p for v in a[col]]
        for i in range(n):
            if i != col and a[i][col] != 0:
                f = a[i][col]
                a[i] = [v - f * w for v, w in zip(a[i], a[col])]
    return [row[n:] for row in a]


def tile_of(u, r=3):
    """The output tile m of transformed weights U ((m + r - 1)^2, C, F) for an r x r kernel."""
    n = math.isqrt(u.shape[0]) if u.ndim == 3 else 0
    if u.ndim != 3 or n * n != u.shape[0] or n - r + 1 < 1:
        raise ShapeError(f"winograd_conv: U {u.shape} is not ((m + {r} - 1)^2, C, F).")
    return n - r + 1


MIN_CHANNELS = 8  # below, im2col + GEMM: measured with the generated kernels per image, one
# thread, batch 8, 3x3 'same' -> 32 filters, forward / weight gradient, F(4, 3) | im2col:
# C = 3 at 32x32 .038/.040 | .037/.043 (a tie), C = 8 .046/.050 | .066/.077, C = 16 at
# 16x16 .018/.026 | .030/.037; C = 1 (mnist conv1) .025/.024 | .015/.015.


# The tile m of F(m x m, r x r) that Conv2D uses per kernel size and pass, None for im2col +
# GEMM. Measured with the generated kernels per image, one thread, float32, batch 8, ms
# (forward / weight gradient / input gradient):
#   (weight gradients measured before `add_into`, which took ~25 % off every tile's)
#   3x3, F(4, 3) | F(2, 3) | im2col: mnist conv2 26x26x32->64 'valid' .067/.098/.095 |
#       .098/.128/.114 | .183/.217/.170; CIFAR 32x32x32->32 'same' .073/.086/.074 |
#       .109/.133/.112 | .209/.287/.180; 16x16x32->64 .033/.047/.035 | .044/.061/.048 |
#       .084/.099/.076; 16x16x64->64 .057/.076/.057 | .079/.103/.080 | .159/.188/.154.
#   5x5, F(3, 5) | F(2, 5) | im2col: seed004 conv2 14x14x32->64 'same' .064/.096/.066 |
#       .079/.110/.081 | .183/.206/.166; 28x28x32->32 'same' .146/.184/.152 | .179/.216/
#       .180; 14x14 'valid' .043/.066/.066 | .039/.067/.084 | .096/.108/.092. F(4, 5) ties
#       F(3, 5) (.061/.099/.064), F(6, 3) loses to F(4, 3) (.071/.103/.107 at mnist conv2).
TILES = {(3, 3): {"forward": 4, "input_grad": 4, "input_grad_valid": 4, "weight_grad": 4},
         (5, 5): {"forward": 3, "input_grad": 3, "input_grad_valid": 3, "weight_grad": 3}}


def tile(x, kernel_size, strides, padding="valid", kind="forward"):
    """m of the Winograd F(m x m, r x r) a Conv2D pass on x takes, or None for im2col + GEMM:
    r x r in TILES, stride 1, at least MIN_CHANNELS channels in x (for kind="input_grad" x
    is dz, whose channels are the filters), on the chunked CPU path. The input gradient of a
    'valid' convolution ('full' padding, a ring of extra tiles) has its own entry,
    "input_grad_valid"."""
    by_kind = TILES.get(tuple(kernel_size))
    if (by_kind is None or tuple(strides) != (1, 1) or x.shape[-1] < MIN_CHANNELS
            or not _workers.threaded(x)):
        return None
    if kind == "input_grad" and padding != "same":
        kind = "input_grad_valid"
    return by_kind[kind]


def applies(x, kernel_size, strides):
    """Whether a Conv2D forward on x takes the Winograd path (`tile` is not None)."""
    return tile(x, kernel_size, strides) is not None


def applies_input_grad(dz, kernel_size, strides, padding):
    """Whether the input gradient of that convolution takes the Winograd path."""
    return tile(dz, kernel_size, strides, padding, "input_grad") is not None


def _geometry(x_shape, padding, m=2, r=3):
    n, h, w, _ = x_shape
    if padding == "full":  # the input gradient of a 'valid' convolution
        top = left = r - 1
        oh, ow = h + r - 1, w + r - 1
    else:
        if padding == "same":
            (top, _), (left, _) = same_padding(h, r, 1), same_padding(w, r, 1)
        else:
            top = left = 0
        oh, ow = conv_output_size(h, r, 1, padding), conv_output_size(w, r, 1, padding)
    if oh < 1 or ow < 1:
        raise ShapeError(f"winograd_conv: input {tuple(x_shape)} is smaller than the "
                         f"{r}x{r} kernel.")
    return top, left, oh, ow, -(-oh // m), -(-ow // m)


def winograd_weights(kernel, transpose=False, m=2):
    """(r, r, C, F) kernel -> U (n*n, C, F) = G g G^T per (c, f) for F(m x m, r x r),
    n = m + r - 1, in the kernel's dtype (m=2, r=3: (16, C, F)). transpose=True: the
    weights of the input gradient, (n*n, F, C) from the kernel rotated by 180 degrees with
    C and F swapped (dx = winograd_conv(dz, U, 'full' for a 'valid' forward, 'same' for
    'same', r=r))."""
    if kernel.ndim != 4 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] not in (3, 5):
        raise ShapeError(f"winograd_weights: expected a (3, 3, C, F) or (5, 5, C, F) kernel, "
                         f"got {kernel.shape}.")
    r = kernel.shape[0]
    xp = get_array_module(kernel)
    if transpose:
        kernel = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    c, f = kernel.shape[2], kernel.shape[3]
    k = xp.asarray(_kron_g(m, r), dtype=kernel.dtype)  # one small GEMM (einsum: ~0.2 ms)
    u = k @ xp.ascontiguousarray(kernel).reshape(r * r, c * f)
    return u.reshape(k.shape[0], c, f)


def input_grad_padding(padding):
    """The winograd_conv padding of the input gradient of an r x r stride-1 convolution
    (odd r: 'same' pads symmetrically, so its transpose is 'same' again)."""
    return "full" if padding == "valid" else "same"


def _check_dy(x, dy, oh, ow):
    want = (x.shape[0], oh, ow)
    if dy.ndim == 2 and dy.shape[0] == x.shape[0] * oh * ow:
        dy = dy.reshape(want + (dy.shape[1],))
    if dy.ndim != 4 or dy.shape[:3] != want:
        raise ShapeError(f"winograd_weight_grad: dy {dy.shape} is not the output gradient "
                         f"{want + ('F',)} of x {x.shape}.")
    return dy


def _check(x, u, out, oh, ow):
    if x.ndim != 4 or u.ndim != 3 or u.shape[1] != x.shape[3]:
        raise ShapeError(f"winograd_conv: x {x.shape} and U {u.shape} do not fit "
                         f"((N, H, W, C) and (n*n, C, F)).")
    want = (x.shape[0], oh, ow, u.shape[2])
    if out is not None and (out.shape != want or not out.flags.c_contiguous):
        raise ShapeError(f"winograd_conv: out must be C-contiguous of shape {want}, "
                         f"got {out.shape}.")
    return want


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def _reference_v(x, top, th, tw, left, m, r):
    """V = B^T d B of every tile, (n*n, N*TH*TW, C), by strided slicing and einsum."""
    xp = get_array_module(x)
    n, h, w, c = x.shape
    a = m + r - 1
    pad = ((0, 0), (top, m * th + r - 1 - h - top), (left, m * tw + r - 1 - w - left), (0, 0))
    xpad = xp.pad(x, pad)
    d = xp.empty((n, th, tw, a, a, c), dtype=x.dtype)
    for p in range(a):
        for q in range(a):
            d[:, :, :, p, q, :] = xpad[:, p:p + m * th:m, q:q + m * tw:m, :]
    bt = xp.asarray(transforms(m, r)[2], dtype=x.dtype)
    return xp.einsum("ap,ntspqc,bq->abntsc", bt, d, bt).reshape(a * a, n * th * tw, c)


def reference(x, u, padding="valid", out=None, bias=None, relu=False, r=3):
    """Pure NumPy/CuPy form: pad, n x n patches by strided slicing, einsum transforms."""
    mt = tile_of(u, r)
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, mt, r)
    want = _check(x, u, out, oh, ow)
    xp = get_array_module(x)
    n, a = x.shape[0], mt + r - 1
    v = _reference_v(x, top, th, tw, left, mt, r)
    u = u.astype(x.dtype, copy=False)
    m = xp.matmul(v, u).reshape(a, a, n, th, tw, -1)
    at = xp.asarray(transforms(mt, r)[0], dtype=x.dtype)
    y = xp.einsum("ra,abntsf,eb->ntrsef", at, m, at).reshape(n, mt * th, mt * tw, -1)
    y = y[:, :oh, :ow, :]
    if bias is not None:
        y = y + bias
    if relu:
        y = xp.maximum(y, 0)
    if out is None:
        return xp.ascontiguousarray(y, dtype=x.dtype).reshape(want)
    out[...] = y
    return out


@functools.lru_cache(maxsize=None)
def _kron_g(m, r):
    """kron(G, G) (n*n, r*r) in float64: dW[i, j] = sum over (p, q) of G[p, i] G[q, j] dU[p, q]."""
    g = numpy.asarray(transforms(m, r)[1], dtype=numpy.float64)
    return numpy.kron(g, g)


def _weights_from_transformed(du_t, dtype, m=2, r=3):
    """(n*n, F, C) gradients of U -> the (r, r, C, F) kernel gradient: G^T dU G, as one
    (r*r x n*n) @ (n*n x F*C) product (einsum took 0.2 ms a call, per worker task)."""
    xp = get_array_module(du_t)
    if du_t.ndim != 3 or du_t.shape[0] != (m + r - 1) ** 2:
        raise ShapeError(f"winograd_weight_grad_finish: a transformed gradient of F({m}x{m}, "
                         f"{r}x{r}) is ({(m + r - 1) ** 2}, F, C), got {du_t.shape}.")
    k = xp.asarray(_kron_g(m, r).T, dtype=dtype)
    f, c = du_t.shape[1], du_t.shape[2]
    dw = (k @ du_t.reshape(du_t.shape[0], f * c)).reshape(r, r, f, c)
    return xp.ascontiguousarray(dw.transpose(0, 1, 3, 2))


def finish_weight_grad(du_t, dtype, m, r, transformed):
    """The kernel gradient from the transformed one, or the transformed one itself (to be
    summed over batch slices first and finished once: `winograd_weight_grad_finish`)."""
    return du_t if transformed else _weights_from_transformed(du_t, dtype, m, r)


def reference_weight_grad(x, dy, padding="valid", m=2, r=3, transformed=False):
    """Pure NumPy/CuPy form: V and A dY A^T of every tile by einsum, n*n GEMMs, G^T . G."""
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, m, r)
    dy = _check_dy(x, dy, oh, ow)
    xp = get_array_module(x)
    v = _reference_v(x, top, th, tw, left, m, r)
    dm = _reference_dm(dy.astype(x.dtype, copy=False), th, tw, m, r)
    return finish_weight_grad(xp.matmul(dm.transpose(0, 2, 1), v), x.dtype, m, r, transformed)


def _reference_dm(dy, th, tw, m, r):
    """dM = A dY A^T of every output tile (zero outside the output), (n*n, N*TH*TW, F)."""
    xp = get_array_module(dy)
    n, oh, ow, f = dy.shape
    a = m + r - 1
    dyp = xp.zeros((n, m * th, m * tw, f), dtype=dy.dtype)
    dyp[:, :oh, :ow, :] = dy
    tiles = dyp.reshape(n, th, m, tw, m, f)  # (n, i, r, j, e, f)
    at = xp.asarray(transforms(m, r)[0], dtype=dy.dtype)
    return xp.einsum("rp,nirjef,eq->pqnijf", at, tiles, at).reshape(a * a, n * th * tw, f)


# ---------------------------------------------------------------- Numba CPU
# Straight-line kernels per tile, generated from `transforms` into `_winograd_tiles` by
# `winograd_codegen` (looping over the matrices instead, F(4x4, 3x3)'s transforms cost as
# much as the GEMMs they save). Tiles without generated kernels take the reference form.

# Tiles per block of images (the blocks' transformed data stay in L2). Measured per image,
# one thread, float32, batch 8, ms, blocks of 32 / 72 / 144 / 288 tiles: F(4, 3) forward at
# mnist conv2 .069/.063/.075/.072, CIFAR 32x32x32->32 .066/.068/.073/.075; weight gradient
# .104/.088/.095/.090 and .087/.080/.083/.093; F(2, 5) at seed 004's conv2 forward
# .064/.065/.079/.084, weight gradient .116/.102/.108/.115. Larger blocks also sum more
# tiles in float32 per GEMM (weight-gradient error 3.4e-6 at 32 tiles, 7.8e-6 at 288).
# Once the weight gradient's per-block sums became a loop (`add_into`: the array
# expression had cost a third of the time), blocks of 36 / 72 / 144 tiles gave
# .071/.072/.083 at mnist conv2, .071/.075/.084 at seed 004's conv2 (F(3, 5)) and
# .068/.072/.076 at CIFAR 32x32x32->32.
BLOCK_TILES = {"forward": 32, "weight_grad": 36}


def _buffer(x, name, shape):
    buf = _workers.scratch(x, name, shape, x.dtype)
    return numpy.empty(shape, x.dtype) if buf is None else buf


def _plane_rows(tiles, width, itemsize):
    """Rows per plane of a (planes, rows, width) buffer: at least `tiles`, padded so that the
    plane distance is not a multiple of 4 KiB (planes read/written together share L1 sets;
    measured 30x slower without)."""
    rows = tiles
    while (rows * width * itemsize) % 4096 == 0:
        rows += 1
    return rows


def _blocking(x, th, tw, kind):
    per_block = max(1, min(x.shape[0], -(-BLOCK_TILES[kind] // (th * tw))))
    return per_block, per_block * th * tw


def _generated(mt, r):
    """(forward, weight gradient) generated kernels of F(mt, r), or None."""
    from ._winograd_tiles import KERNELS
    return KERNELS.get((mt, r))


def forward_buffers(x, f, mt, r, th, tw):
    """(per_block, v, m): the generated forward drivers' blocking and their per-thread
    transform buffers."""
    a, c = mt + r - 1, x.shape[3]
    per_block, tiles = _blocking(x, th, tw, "forward")
    v = _buffer(x, "winograd_v", (a * a, _plane_rows(tiles, c, x.itemsize), c))
    m = _buffer(x, "winograd_m", (a * a, _plane_rows(tiles, f, x.itemsize), f))
    return per_block, v, m


def numba_cpu(x, u, padding="valid", out=None, bias=None, relu=False, r=3):
    """Numba CPU form: one GIL-free call; per block of images the input transform, n*n
    GEMMs and the output transform (+ bias, ReLU) run while the block is in cache."""
    mt = tile_of(u, r)
    kernel = _generated(mt, r)
    if kernel is None:  # (the dispatcher sends other dtypes to the reference)
        return reference(x, u, padding, out, bias, relu, r)
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, mt, r)
    want = _check(x, u, out, oh, ow)
    x = numpy.ascontiguousarray(x)
    f = u.shape[2]
    per_block, v, m = forward_buffers(x, f, mt, r, th, tw)
    out = numpy.empty(want, x.dtype) if out is None else out
    b = numpy.zeros(f, x.dtype) if bias is None else numpy.ascontiguousarray(bias, dtype=x.dtype)
    with _workers.one_blas_thread():
        kernel[0](x, numpy.ascontiguousarray(u, dtype=x.dtype), out, b, bias is not None,
                  bool(relu), top, left, th, tw, per_block, v, m)
    return out


def numba_cpu_weight_grad(x, dy, padding="valid", m=2, r=3, transformed=False):
    """Numba CPU form: one GIL-free call; per block of images both transforms and the n*n
    GEMMs, summed in block order; then G^T dU G."""
    kernel = _generated(m, r)
    if kernel is None:  # (the dispatcher sends other dtypes to the reference)
        return reference_weight_grad(x, dy, padding, m, r, transformed)
    a = m + r - 1
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, m, r)
    dy = numpy.ascontiguousarray(_check_dy(x, dy, oh, ow), dtype=x.dtype)
    x = numpy.ascontiguousarray(x)
    c, f = x.shape[3], dy.shape[3]
    per_block, tiles = _blocking(x, th, tw, "weight_grad")
    v = _buffer(x, "winograd_v", (a * a, _plane_rows(tiles, c, x.itemsize), c))
    dm = _buffer(x, "winograd_dm", (a * a, _plane_rows(tiles, f, x.itemsize), f))
    part = _buffer(x, "winograd_part", (f, c))
    du_t = numpy.empty((a * a, f, c), x.dtype)
    with _workers.one_blas_thread():
        kernel[1](x, dy, du_t, part, top, left, th, tw, per_block, v, dm)
    return finish_weight_grad(du_t, x.dtype, m, r, transformed)


# ---------------------------------------------------------------- Numba CUDA

@cuda_jit
def _input_cuda_g(x, v, bt, top, left, th, tw, mt, total):
    n, h, w, c = x.shape
    a = bt.shape[0]
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one (tile, channel) per thread
        ch = e % c
        t = e // c
        j = t % tw
        i = (t // tw) % th
        b = t // (tw * th)
        d = cuda.local.array((8, 8), numba_float64)
        s = cuda.local.array((8, 8), numba_float64)
        for p in range(a):
            y = mt * i - top + p
            for q in range(a):
                z = mt * j - left + q
                d[p, q] = x[b, y, z, ch] if 0 <= y < h and 0 <= z < w else 0
        for p in range(a):
            for q in range(a):
                acc = 0.0
                for k in range(a):
                    acc += bt[p, k] * d[k, q]
                s[p, q] = acc
        for p in range(a):
            for q in range(a):
                acc = 0.0
                for k in range(a):
                    acc += s[p, k] * bt[q, k]
                v[p * a + q, t, ch] = acc


@cuda_jit
def _output_cuda_g(m, out, at, bias, use_bias, relu, th, tw, total):
    n, oh, ow, f = out.shape
    mt, a = at.shape
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one (tile, filter) per thread
        k = e % f
        t = e // f
        j = t % tw
        i = (t // tw) % th
        b = t // (tw * th)
        s = cuda.local.array((8, 8), numba_float64)
        for r in range(mt):
            for q in range(a):
                acc = 0.0
                for p in range(a):
                    acc += at[r, p] * m[p * a + q, t, k]
                s[r, q] = acc
        for r in range(mt):
            y = mt * i + r
            for c2 in range(mt):
                z = mt * j + c2
                if y < oh and z < ow:
                    val = bias[k] if use_bias else 0.0
                    for q in range(a):
                        val += s[r, q] * at[c2, q]
                    if relu and val < 0:
                        val = 0
                    out[b, y, z, k] = val


@cuda_jit
def _dy_cuda_g(dy, dm, at, th, tw, total):
    n, oh, ow, f = dy.shape
    mt, a = at.shape
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one (tile, filter) per thread
        k = e % f
        t = e // f
        j = t % tw
        i = (t // tw) % th
        b = t // (tw * th)
        s = cuda.local.array((8, 8), numba_float64)
        for p in range(a):
            for c2 in range(mt):
                z = mt * j + c2
                acc = 0.0
                for r in range(mt):
                    y = mt * i + r
                    if y < oh and z < ow:
                        acc += at[r, p] * dy[b, y, z, k]
                s[p, c2] = acc
        for p in range(a):
            for q in range(a):
                acc = 0.0
                for c2 in range(mt):
                    acc += s[p, c2] * at[c2, q]
                dm[p * a + q, t, k] = acc


numba_float64 = None  # bound to numba.float64 before the CUDA kernels compile


def _bind_float64():
    global numba_float64
    if numba_float64 is None:
        import numba
        numba_float64 = numba.float64


def _cuda_v(x, mt, r, top, left, th, tw):
    xp = get_array_module(x)
    a = mt + r - 1
    t, c = x.shape[0] * th * tw, x.shape[3]
    v = xp.empty((a * a, t, c), x.dtype)
    bt = xp.asarray(transforms(mt, r)[2], dtype=numpy.float64)
    blocks, threads = grid_for(t * c)
    launch(_input_cuda_g, blocks, threads, x, v, bt, top, left, th, tw, mt, t * c)
    return v


def _cuda_g(x, u, padding, out, bias, relu, r):
    _bind_float64()
    mt = tile_of(u, r)
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, mt, r)
    want = _check(x, u, out, oh, ow)
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    t, f = x.shape[0] * th * tw, u.shape[2]
    v = _cuda_v(x, mt, r, top, left, th, tw)
    m = xp.matmul(v, xp.ascontiguousarray(u, dtype=x.dtype))
    out = xp.empty(want, x.dtype) if out is None else out
    b = xp.zeros(f, x.dtype) if bias is None else xp.ascontiguousarray(bias, dtype=x.dtype)
    at = xp.asarray(transforms(mt, r)[0], dtype=numpy.float64)
    blocks, threads = grid_for(t * f)
    launch(_output_cuda_g, blocks, threads, m, out, at, b, bias is not None, bool(relu), th,
           tw, t * f)
    return out


def _cuda_weight_grad_g(x, dy, padding, mt, r, transformed=False):
    _bind_float64()
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, mt, r)
    xp = get_array_module(x)
    dy = xp.ascontiguousarray(_check_dy(x, dy, oh, ow), dtype=x.dtype)
    x = xp.ascontiguousarray(x)
    v = _cuda_v(x, mt, r, top, left, th, tw)
    dm = _cuda_dm(dy, mt, r, th, tw)
    return finish_weight_grad(xp.matmul(dm.transpose(0, 2, 1), v), x.dtype, mt, r, transformed)


def _cuda_dm(dy, mt, r, th, tw):
    """dM = A dY A^T of every output tile of a C-contiguous dy, (n*n, N*TH*TW, F)."""
    _bind_float64()
    xp = get_array_module(dy)
    a, t, f = mt + r - 1, dy.shape[0] * th * tw, dy.shape[3]
    dm = xp.empty((a * a, t, f), dy.dtype)
    at = xp.asarray(transforms(mt, r)[0], dtype=numpy.float64)
    blocks, threads = grid_for(t * f)
    launch(_dy_cuda_g, blocks, threads, dy, dm, at, th, tw, t * f)
    return dm


def numba_cuda(x, u, padding="valid", out=None, bias=None, relu=False, r=3):
    """Numba CUDA form, any tile: one thread per (tile, channel) / (tile, filter) for the
    transforms; CuPy's matmul."""
    return _cuda_g(x, u, padding, out, bias, relu, r)


def numba_cuda_weight_grad(x, dy, padding="valid", m=2, r=3, transformed=False):
    """Numba CUDA form, any tile: both transforms one thread per (tile, channel/filter);
    CuPy's GEMMs."""
    return _cuda_weight_grad_g(x, dy, padding, m, r, transformed)


# ---------------------------------------------------------------- public

def winograd_conv(x, u, padding="valid", out=None, bias=None, relu=False, r=3):
    """r x r stride-1 convolution of (N, H, W, C) x with U = winograd_weights(kernel, m=m)
    (the tile m follows from U's shape)."""
    return _dispatch.form("winograd_conv", x, u)(x, u, padding, out, bias, relu, r)


def winograd_weight_grad(x, dy, padding="valid", m=2, r=3, transformed=False):
    """The (r, r, C, F) kernel gradient of an r x r stride-1 convolution of x whose output
    gradient is dy ((N, OH, OW, F) or (N*OH*OW, F)), by Winograd F(m x m, r x r).
    transformed=True returns the gradient of U instead, (n*n, F, C): it is linear in the
    data, so a caller summing slices' gradients sums these and finishes once
    (`winograd_weight_grad_finish`), instead of paying the (r*r x n*n x F*C) product per slice
    (seed 004's conv2: 54 us of a slice's ~1.2 ms, one thread)."""
    return _dispatch.form("winograd_weight_grad", x, dy)(x, dy, padding, m, r, transformed)


def winograd_weight_grad_finish(du_t, m=2, r=3):
    """The (r, r, C, F) kernel gradient from a sum of `transformed=True` gradients of U
    (n*n, F, C): G^T dU G."""
    return _weights_from_transformed(du_t, du_t.dtype, m, r)

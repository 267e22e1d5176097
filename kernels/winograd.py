"""Winograd F(m x m, r x r): an r x r stride-1 convolution with fewer multiplications.

    U = winograd_weights(kernel, m=2)          (n*n, C, F) from an (r, r, C, F) kernel
    winograd_conv(x, U, padding, out=None, bias=None, relu=False, r=3) -> (N, OH, OW, F)
    winograd_weight_grad(x, dy, padding, m=2, r=3) -> (r, r, C, F)

n = m + r - 1. On the CPU F(2x2, 3x3) (described below) has hand-written transforms; the others
(F(4x4, 3x3): 2.25 multiplies per output instead of 4; F(2x2, 5x5): 9 instead of 25) take
Toom-Cook matrices (`transforms`) in generic kernels of the same structure. Measured float32
error (max |err| / max |y|, N(0, 1) data, vs float64 direct): F(2, 3) 2.6e-7, F(4, 3)
4.8e-6, F(2, 5) 2.5e-6. `tile` is Conv2D's rule for which m to use per kernel and pass.

The output is cut into 2x2 tiles; each tile reads a 4x4 patch d of the (zero-padded) input,
transformed to V = B^T d B (16 values per channel); for each of the 16 positions the
channels are contracted with U = G g G^T by one GEMM (T tiles x C) @ (C x F); the output
transform A^T M A gives the 2x2 outputs (plus bias and ReLU when asked, in the same pass).
'same' padding is TensorFlow's (the odd pixel after). Results match the direct convolution
to float rounding (the transforms add and subtract; measured max relative error ~1e-6 in
float32). The Conv2D layer uses it per `tile` (`TILES`) on the threaded CPU path; elsewhere
im2col + GEMM is the general fallback. The CUDA forms use the generic transform kernels for
every tile (none has been measured on a device, and the GPU default is the reference).
Padding 'full' (2 on every side) gives the input gradient of a 'valid' convolution.
"""

import functools
import math
from fractions import Fraction

import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _dispatch, _workers
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit
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


MIN_CHANNELS = 16  # below, the 16 GEMMs are too thin (measured per 2-image chunk, one
# thread: 0.61-0.76x of im2col + GEMM + bias/ReLU at 32-64 channels, 0.82x at 16, 0.94x
# at 3, 8.8x slower at 1)


# The tile m of F(m x m, r x r) that Conv2D uses per kernel size and pass, None for im2col +
# GEMM (measured per image, one thread, float32, batch 8; ms, F(2,3) / F(4,3) / im2col):
#   3x3 mnist conv2 26x26x32->64 'valid': fwd .100/.113/.176, dx .113/.153/.167,
#       dW .156/.215/.203; CIFAR 32x32x32->32 'same': fwd .110/.139/.203, dx .108/.136/
#       .183, dW .133/.196/.273; 16x16x32->64: fwd .056/.055/.080, dx .053/.056/.075,
#       dW .091/.130/.092; 16x16x64->64: fwd .081/.080/.154, dx .079/.077/.142,
#       dW .135/.200/.176. F(4, 3) cuts the GEMMs ~2x but its 6x6 transforms cost as much,
#       so it ties at best: 3x3 stays on F(2, 3).
#   5x5 seed004 conv2 14x14x32->64 'same' (F(2,5) / im2col): fwd .121/.170, dx .128/.154,
#       dW .322/.189: F(2, 5) for the forward and the 'same' input gradient only.
TILES = {(3, 3): {"forward": 2, "input_grad": 2, "input_grad_valid": 2, "weight_grad": 2},
         (5, 5): {"forward": 2, "input_grad": 2, "input_grad_valid": None, "weight_grad": None}}


def tile(x, kernel_size, strides, padding="valid", kind="forward"):
    """m of the Winograd F(m x m, r x r) a Conv2D pass on x takes, or None for im2col + GEMM:
    r x r in TILES, stride 1, at least MIN_CHANNELS channels in x (for kind="input_grad" x
    is dz, whose channels are the filters), on the chunked CPU path. The input gradient of a
    'valid' convolution ('full' padding, a ring of extra tiles) has its own entry,
    "input_grad_valid": measured per image at mnist_cnn's conv2, one thread, F(2, 3) 0.113 ms
    against 0.167 for dz @ W^T + col2im (since the transforms became one GIL-free call)."""
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
    k = xp.asarray(_kron_g(m, r).T, dtype=dtype)
    f, c = du_t.shape[1], du_t.shape[2]
    dw = (k @ du_t.reshape(du_t.shape[0], f * c)).reshape(r, r, f, c)
    return xp.ascontiguousarray(dw.transpose(0, 1, 3, 2))


def reference_weight_grad(x, dy, padding="valid", m=2, r=3):
    """Pure NumPy/CuPy form: V and A dY A^T of every tile by einsum, n*n GEMMs, G^T . G."""
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, m, r)
    dy = _check_dy(x, dy, oh, ow)
    xp = get_array_module(x)
    n, f, a = x.shape[0], dy.shape[3], m + r - 1
    v = _reference_v(x, top, th, tw, left, m, r)
    dyp = xp.zeros((n, m * th, m * tw, f), dtype=x.dtype)
    dyp[:, :oh, :ow, :] = dy
    tiles = dyp.reshape(n, th, m, tw, m, f)  # (n, i, r, j, e, f)
    at = xp.asarray(transforms(m, r)[0], dtype=x.dtype)
    dm = xp.einsum("rp,nirjef,eq->pqnijf", at, tiles, at).reshape(a * a, n * th * tw, f)
    return _weights_from_transformed(xp.matmul(dm.transpose(0, 2, 1), v), x.dtype, m, r)


# ---------------------------------------------------------------- Numba CPU

@cpu_jit(nogil=True, inline="always")
def _input_block(x, v, b0, b1, top, left, th, tw):
    """V = B^T d B for the tiles of images b0..b1-1, into v[:, :tiles, :]."""
    n, h, w, c = x.shape
    d = numpy.empty((4, 4, c), dtype=x.dtype)
    for b in range(b0, b1):
        for i in range(th):
            for j in range(tw):
                t = ((b - b0) * th + i) * tw + j
                for p in range(4):
                    y = 2 * i - top + p
                    for q in range(4):
                        z = 2 * j - left + q
                        if 0 <= y < h and 0 <= z < w:
                            for ch in range(c):
                                d[p, q, ch] = x[b, y, z, ch]
                        else:
                            for ch in range(c):
                                d[p, q, ch] = 0
                for q in range(4):  # rows: B^T d  (in place, column q)
                    for ch in range(c):
                        d0, d1, d2, d3 = d[0, q, ch], d[1, q, ch], d[2, q, ch], d[3, q, ch]
                        d[0, q, ch] = d0 - d2
                        d[1, q, ch] = d1 + d2
                        d[2, q, ch] = d2 - d1
                        d[3, q, ch] = d1 - d3
                for p in range(4):  # columns: (B^T d) B
                    for ch in range(c):
                        e0, e1, e2, e3 = d[p, 0, ch], d[p, 1, ch], d[p, 2, ch], d[p, 3, ch]
                        v[4 * p + 0, t, ch] = e0 - e2
                        v[4 * p + 1, t, ch] = e1 + e2
                        v[4 * p + 2, t, ch] = e2 - e1
                        v[4 * p + 3, t, ch] = e1 - e3


@cpu_jit(nogil=True, inline="always")
def _output_block(m, out, b0, b1, bias, use_bias, relu, th, tw):
    """out[b0:b1] = A^T M A (+ bias, ReLU) from m[:, :tiles, :]."""
    n, oh, ow, f = out.shape
    s = numpy.empty((2, 4, f), dtype=out.dtype)
    for b in range(b0, b1):
        for i in range(th):
            for j in range(tw):
                t = ((b - b0) * th + i) * tw + j
                for q in range(4):  # A^T m: rows
                    for k in range(f):
                        m0, m1 = m[q, t, k], m[4 + q, t, k]
                        m2, m3 = m[8 + q, t, k], m[12 + q, t, k]
                        s[0, q, k] = m0 + m1 + m2
                        s[1, q, k] = m1 - m2 - m3
                for r in range(2):
                    y = 2 * i + r
                    if y >= oh:
                        continue
                    for e in range(2):
                        z = 2 * j + e
                        if z >= ow:
                            continue
                        for k in range(f):
                            if e == 0:
                                val = s[r, 0, k] + s[r, 1, k] + s[r, 2, k]
                            else:
                                val = s[r, 1, k] - s[r, 2, k] - s[r, 3, k]
                            if use_bias:
                                val += bias[k]
                            if relu and val < 0:
                                val = 0
                            out[b, y, z, k] = val


@cpu_jit(nogil=True)
def _winograd_cpu(x, u, out, bias, use_bias, relu, top, left, th, tw, per_block, v, m):
    """The whole convolution in one call without the GIL: per block of `per_block` images,
    input transform, 16 GEMMs (BLAS through np.dot), output transform, while in cache."""
    n = x.shape[0]
    for b0 in range(0, n, per_block):
        b1 = min(b0 + per_block, n)
        tiles = (b1 - b0) * th * tw
        _input_block(x, v, b0, b1, top, left, th, tw)
        for k in range(16):
            numpy.dot(v[k, :tiles], u[k], m[k, :tiles])
        _output_block(m, out, b0, b1, bias, use_bias, relu, th, tw)


@cpu_jit(nogil=True, inline="always")
def _dy_block(dy, dm, b0, b1, th, tw):
    """dM = A dY A^T (4x4 from each 2x2 output-gradient tile, zero outside the output) for
    the tiles of images b0..b1-1, into dm[:, :tiles, :]. One pass per row p of A writes 4
    of the 16 planes: 16 concurrent write streams whose distance is a multiple of 4 KiB
    thrash the L1 sets (measured 30x slower)."""
    n, oh, ow, f = dy.shape
    zero = dy.dtype.type(0)
    for p in range(4):  # row p of A (y0, y1): y0, y0 + y1, y0 - y1, -y1
        w0 = 0 if p == 3 else 1
        w1 = 0 if p == 0 else (1 if p == 1 else -1)
        for b in range(b0, b1):
            for i in range(th):
                y1ok = 2 * i + 1 < oh
                for j in range(tw):
                    t = ((b - b0) * th + i) * tw + j
                    x1ok = 2 * j + 1 < ow
                    for k in range(f):
                        y00 = dy[b, 2 * i, 2 * j, k]
                        y01 = dy[b, 2 * i, 2 * j + 1, k] if x1ok else zero
                        y10 = dy[b, 2 * i + 1, 2 * j, k] if y1ok else zero
                        y11 = dy[b, 2 * i + 1, 2 * j + 1, k] if y1ok and x1ok else zero
                        u0 = w0 * y00 + w1 * y10 if p != 3 else -y10
                        u1 = w0 * y01 + w1 * y11 if p != 3 else -y11
                        dm[4 * p + 0, t, k] = u0
                        dm[4 * p + 1, t, k] = u0 + u1
                        dm[4 * p + 2, t, k] = u0 - u1
                        dm[4 * p + 3, t, k] = -u1


@cpu_jit(nogil=True)
def _weight_grad_cpu(x, dy, du_t, part, top, left, th, tw, per_block, v, dm):
    """du_t[k] (F, C) = sum over tiles of dM[k]^T V[k], block by block in order."""
    n = x.shape[0]
    for b0 in range(0, n, per_block):
        b1 = min(b0 + per_block, n)
        tiles = (b1 - b0) * th * tw
        _input_block(x, v, b0, b1, top, left, th, tw)
        _dy_block(dy, dm, b0, b1, th, tw)
        for k in range(16):
            if b0 == 0:
                numpy.dot(dm[k, :tiles].T, v[k, :tiles], du_t[k])
            else:
                numpy.dot(dm[k, :tiles].T, v[k, :tiles], part)
                du_t[k] += part


BLOCK_TILES = 128  # tiles per GEMM block: at least this many rows (measured: fewer make the
# 16 GEMMs thin), else one image per block so V and M stay in L2


def _buffer(x, name, shape):
    buf = _workers.scratch(x, name, shape, x.dtype)
    return numpy.empty(shape, x.dtype) if buf is None else buf


def numba_cpu(x, u, padding="valid", out=None, bias=None, relu=False, r=3):
    """Numba CPU form: one GIL-free call; per block of images the input transform, 16
    GEMMs and the output transform (+ bias, ReLU) run while the block is in cache.
    F(2, 3) has hand-written transforms; other tiles take the generic kernels."""
    if r != 3 or tile_of(u, r) != 2:
        return _cpu_g(x, u, padding, out, bias, relu, r)
    top, left, oh, ow, th, tw = _geometry(x.shape, padding)
    want = _check(x, u, out, oh, ow)
    x = numpy.ascontiguousarray(x)
    c, f = x.shape[3], u.shape[2]
    per_block = max(1, min(x.shape[0], -(-BLOCK_TILES // (th * tw))))
    tiles = per_block * th * tw
    v, m = _buffer(x, "winograd_v", (16, tiles, c)), _buffer(x, "winograd_m", (16, tiles, f))
    out = numpy.empty(want, x.dtype) if out is None else out
    b = numpy.zeros(f, x.dtype) if bias is None else numpy.ascontiguousarray(bias, dtype=x.dtype)
    with _workers.one_blas_thread():
        _winograd_cpu(x, numpy.ascontiguousarray(u, dtype=x.dtype), out, b, bias is not None,
                      bool(relu), top, left, th, tw, per_block, v, m)
    return out


def numba_cpu_weight_grad(x, dy, padding="valid", m=2, r=3):
    """Numba CPU form: one GIL-free call; per block of images both transforms and the 16
    GEMMs, summed in block order; then G^T dU G."""
    if (m, r) != (2, 3):
        return _cpu_weight_grad_g(x, dy, padding, m, r)
    top, left, oh, ow, th, tw = _geometry(x.shape, padding)
    dy = numpy.ascontiguousarray(_check_dy(x, dy, oh, ow), dtype=x.dtype)
    x = numpy.ascontiguousarray(x)
    c, f = x.shape[3], dy.shape[3]
    per_block = max(1, min(x.shape[0], -(-BLOCK_TILES // (th * tw))))
    tiles = per_block * th * tw
    v, dm = _buffer(x, "winograd_v", (16, tiles, c)), _buffer(x, "winograd_dm", (16, tiles, f))
    part = _buffer(x, "winograd_part", (f, c))
    du_t = numpy.empty((16, f, c), x.dtype)
    with _workers.one_blas_thread():
        _weight_grad_cpu(x, dy, du_t, part, top, left, th, tw, per_block, v, dm)
    return _weights_from_transformed(du_t, x.dtype)


# ---------------------------------------------------------------- Numba CPU, any F(m, r)
# The same loop structure for the other tiles (F(4x4, 3x3), F(2x2, 5x5): 6x6 input tiles),
# with the transforms as small matrices (zeros skipped) and every inner loop running over
# channels/filters, one plane of v/m/dm written per loop (see _dy_block on L1 sets).

@cpu_jit(nogil=True, inline="always")
def _input_block_g(x, v, bt, b0, b1, top, left, th, tw, mt):
    """V = B^T d B (n x n) for the tiles (stride mt) of images b0..b1-1, into v."""
    n_, h, w, c = x.shape
    a = bt.shape[0]
    d = numpy.empty((a, a, c), dtype=x.dtype)
    s = numpy.zeros((a, a, c), dtype=x.dtype)
    acc = numpy.empty(c, dtype=x.dtype)
    for b in range(b0, b1):
        for i in range(th):
            for j in range(tw):
                t = ((b - b0) * th + i) * tw + j
                for p in range(a):
                    y = mt * i - top + p
                    for q in range(a):
                        z = mt * j - left + q
                        if 0 <= y < h and 0 <= z < w:
                            for ch in range(c):
                                d[p, q, ch] = x[b, y, z, ch]
                        else:
                            for ch in range(c):
                                d[p, q, ch] = 0
                for p in range(a):  # s = B^T d
                    for q in range(a):
                        for ch in range(c):
                            acc[ch] = 0
                        for k in range(a):
                            coef = bt[p, k]
                            if coef != 0:
                                for ch in range(c):
                                    acc[ch] += coef * d[k, q, ch]
                        for ch in range(c):
                            s[p, q, ch] = acc[ch]
                for p in range(a):  # v = s B
                    for q in range(a):
                        for ch in range(c):
                            acc[ch] = 0
                        for k in range(a):
                            coef = bt[q, k]
                            if coef != 0:
                                for ch in range(c):
                                    acc[ch] += coef * s[p, k, ch]
                        for ch in range(c):
                            v[p * a + q, t, ch] = acc[ch]


@cpu_jit(nogil=True, inline="always")
def _output_block_g(m, out, at, b0, b1, bias, use_bias, relu, th, tw):
    """out[b0:b1] = A^T M A (mt x mt per tile, + bias, ReLU) from m."""
    n_, oh, ow, f = out.shape
    mt, a = at.shape
    s = numpy.empty((mt, a, f), dtype=out.dtype)
    acc = numpy.empty(f, dtype=out.dtype)
    for b in range(b0, b1):
        for i in range(th):
            for j in range(tw):
                t = ((b - b0) * th + i) * tw + j
                for r in range(mt):  # s = A^T m
                    for q in range(a):
                        for k in range(f):
                            acc[k] = 0
                        for p in range(a):
                            coef = at[r, p]
                            if coef != 0:
                                for k in range(f):
                                    acc[k] += coef * m[p * a + q, t, k]
                        for k in range(f):
                            s[r, q, k] = acc[k]
                for r in range(mt):
                    y = mt * i + r
                    if y >= oh:
                        continue
                    for e in range(mt):
                        z = mt * j + e
                        if z >= ow:
                            continue
                        for k in range(f):
                            acc[k] = bias[k] if use_bias else 0
                        for q in range(a):
                            coef = at[e, q]
                            if coef != 0:
                                for k in range(f):
                                    acc[k] += coef * s[r, q, k]
                        for k in range(f):
                            val = acc[k]
                            if relu and val < 0:
                                val = 0
                            out[b, y, z, k] = val


@cpu_jit(nogil=True, inline="always")
def _dy_block_g(dy, dm, at, b0, b1, th, tw):
    """dM = A dY A^T (n x n from each mt x mt output-gradient tile, zero outside)."""
    n_, oh, ow, f = dy.shape
    mt, a = at.shape
    s = numpy.empty((a, mt, f), dtype=dy.dtype)
    acc = numpy.empty(f, dtype=dy.dtype)
    for b in range(b0, b1):
        for i in range(th):
            for j in range(tw):
                t = ((b - b0) * th + i) * tw + j
                for p in range(a):  # s[p, e] = sum_r A^T[r, p] dy[r, e]
                    for e in range(mt):
                        for k in range(f):
                            acc[k] = 0
                        z = mt * j + e
                        if z < ow:
                            for r in range(mt):
                                y = mt * i + r
                                coef = at[r, p]
                                if coef != 0 and y < oh:
                                    for k in range(f):
                                        acc[k] += coef * dy[b, y, z, k]
                        for k in range(f):
                            s[p, e, k] = acc[k]
                for p in range(a):  # dm[p, q] = sum_e s[p, e] A^T[e, q]
                    for q in range(a):
                        for k in range(f):
                            acc[k] = 0
                        for e in range(mt):
                            coef = at[e, q]
                            if coef != 0:
                                for k in range(f):
                                    acc[k] += coef * s[p, e, k]
                        for k in range(f):
                            dm[p * a + q, t, k] = acc[k]


@cpu_jit(nogil=True)
def _winograd_cpu_g(x, u, out, bias, use_bias, relu, bt, at, top, left, th, tw, per_block,
                    v, m):
    """As _winograd_cpu for any tile: per block, input transform, n*n GEMMs, output."""
    n = x.shape[0]
    mt, a = at.shape
    for b0 in range(0, n, per_block):
        b1 = min(b0 + per_block, n)
        tiles = (b1 - b0) * th * tw
        _input_block_g(x, v, bt, b0, b1, top, left, th, tw, mt)
        for k in range(a * a):
            numpy.dot(v[k, :tiles], u[k], m[k, :tiles])
        _output_block_g(m, out, at, b0, b1, bias, use_bias, relu, th, tw)


@cpu_jit(nogil=True)
def _weight_grad_cpu_g(x, dy, du_t, part, bt, at, top, left, th, tw, per_block, v, dm):
    """du_t[k] (F, C) = sum over tiles of dM[k]^T V[k], block by block in order."""
    n = x.shape[0]
    mt, a = at.shape
    for b0 in range(0, n, per_block):
        b1 = min(b0 + per_block, n)
        tiles = (b1 - b0) * th * tw
        _input_block_g(x, v, bt, b0, b1, top, left, th, tw, mt)
        _dy_block_g(dy, dm, at, b0, b1, th, tw)
        for k in range(a * a):
            if b0 == 0:
                numpy.dot(dm[k, :tiles].T, v[k, :tiles], du_t[k])
            else:
                numpy.dot(dm[k, :tiles].T, v[k, :tiles], part)
                du_t[k] += part


BLOCK_TILES_G = 32  # tiles per GEMM block for the 6x6 tiles (each 2.25-4x the F(2, 3) data)


def _plane_rows(tiles, width, itemsize):
    """Rows per plane of a (planes, rows, width) buffer: at least `tiles`, padded so that the
    plane distance is not a multiple of 4 KiB (planes read/written together share L1 sets)."""
    rows = tiles
    while (rows * width * itemsize) % 4096 == 0:
        rows += 1
    return rows


def _cpu_g(x, u, padding, out, bias, relu, r):
    mt = tile_of(u, r)
    a = mt + r - 1
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, mt, r)
    want = _check(x, u, out, oh, ow)
    x = numpy.ascontiguousarray(x)
    c, f = x.shape[3], u.shape[2]
    per_block = max(1, min(x.shape[0], -(-BLOCK_TILES_G // (th * tw))))
    tiles = per_block * th * tw
    v = _buffer(x, "winograd_v", (a * a, _plane_rows(tiles, c, x.itemsize), c))
    m = _buffer(x, "winograd_m", (a * a, _plane_rows(tiles, f, x.itemsize), f))
    out = numpy.empty(want, x.dtype) if out is None else out
    b = numpy.zeros(f, x.dtype) if bias is None else numpy.ascontiguousarray(bias, dtype=x.dtype)
    at, _, bt = (numpy.asarray(t, x.dtype) for t in transforms(mt, r))
    with _workers.one_blas_thread():
        _winograd_cpu_g(x, numpy.ascontiguousarray(u, dtype=x.dtype), out, b, bias is not None,
                        bool(relu), bt, at, top, left, th, tw, per_block, v, m)
    return out


def _cpu_weight_grad_g(x, dy, padding, mt, r):
    a = mt + r - 1
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, mt, r)
    dy = numpy.ascontiguousarray(_check_dy(x, dy, oh, ow), dtype=x.dtype)
    x = numpy.ascontiguousarray(x)
    c, f = x.shape[3], dy.shape[3]
    per_block = max(1, min(x.shape[0], -(-BLOCK_TILES_G // (th * tw))))
    tiles = per_block * th * tw
    v = _buffer(x, "winograd_v", (a * a, _plane_rows(tiles, c, x.itemsize), c))
    dm = _buffer(x, "winograd_dm", (a * a, _plane_rows(tiles, f, x.itemsize), f))
    part = _buffer(x, "winograd_part", (f, c))
    du_t = numpy.empty((a * a, f, c), x.dtype)
    at, _, bt = (numpy.asarray(t, x.dtype) for t in transforms(mt, r))
    with _workers.one_blas_thread():
        _weight_grad_cpu_g(x, dy, du_t, part, bt, at, top, left, th, tw, per_block, v, dm)
    return _weights_from_transformed(du_t, x.dtype, mt, r)


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


def _cuda_weight_grad_g(x, dy, padding, mt, r):
    _bind_float64()
    top, left, oh, ow, th, tw = _geometry(x.shape, padding, mt, r)
    xp = get_array_module(x)
    dy = xp.ascontiguousarray(_check_dy(x, dy, oh, ow), dtype=x.dtype)
    x = xp.ascontiguousarray(x)
    a, t, f = mt + r - 1, x.shape[0] * th * tw, dy.shape[3]
    v = _cuda_v(x, mt, r, top, left, th, tw)
    dm = xp.empty((a * a, t, f), x.dtype)
    at = xp.asarray(transforms(mt, r)[0], dtype=numpy.float64)
    blocks, threads = grid_for(t * f)
    launch(_dy_cuda_g, blocks, threads, dy, dm, at, th, tw, t * f)
    return _weights_from_transformed(xp.matmul(dm.transpose(0, 2, 1), v), x.dtype, mt, r)


def numba_cuda(x, u, padding="valid", out=None, bias=None, relu=False, r=3):
    """Numba CUDA form, any tile: one thread per (tile, channel) / (tile, filter) for the
    transforms; CuPy's matmul."""
    return _cuda_g(x, u, padding, out, bias, relu, r)


def numba_cuda_weight_grad(x, dy, padding="valid", m=2, r=3):
    """Numba CUDA form, any tile: both transforms one thread per (tile, channel/filter);
    CuPy's GEMMs."""
    return _cuda_weight_grad_g(x, dy, padding, m, r)


# ---------------------------------------------------------------- public

def winograd_conv(x, u, padding="valid", out=None, bias=None, relu=False, r=3):
    """r x r stride-1 convolution of (N, H, W, C) x with U = winograd_weights(kernel, m=m)
    (the tile m follows from U's shape)."""
    return _dispatch.form("winograd_conv", x, u)(x, u, padding, out, bias, relu, r)


def winograd_weight_grad(x, dy, padding="valid", m=2, r=3):
    """The (r, r, C, F) kernel gradient of an r x r stride-1 convolution of x whose output
    gradient is dy ((N, OH, OW, F) or (N*OH*OW, F)), by Winograd F(m x m, r x r)."""
    return _dispatch.form("winograd_weight_grad", x, dy)(x, dy, padding, m, r)

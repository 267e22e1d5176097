"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution with 2.25x fewer multiplications.

    U = winograd_weights(kernel)                       (16, C, F) from a (3, 3, C, F) kernel
    winograd_conv(x, U, padding, out=None, bias=None, relu=False) -> (N, OH, OW, F)

The output is cut into 2x2 tiles; each tile reads a 4x4 patch d of the (zero-padded) input,
transformed to V = B^T d B (16 values per channel); for each of the 16 positions the
channels are contracted with U = G g G^T by one GEMM (T tiles x C) @ (C x F); the output
transform A^T M A gives the 2x2 outputs (plus bias and ReLU when asked, in the same pass).
'same' padding is TensorFlow's (the odd pixel after). Results match the direct convolution
to float rounding (the transforms add and subtract; measured max relative error ~1e-6 in
float32). The Conv2D layer uses it for 3x3 stride-1 kernels on the chunked CPU path
(`applies`), forward and input gradient; elsewhere im2col + GEMM is the general fallback.
Padding 'full' (2 on every side) gives the input gradient of a 'valid' convolution.
"""

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


MIN_CHANNELS = 16  # below, the 16 GEMMs are too thin (measured per 2-image chunk, one
# thread: 0.61-0.76x of im2col + GEMM + bias/ReLU at 32-64 channels, 0.82x at 16, 0.94x
# at 3, 8.8x slower at 1)


def applies(x, kernel_size, strides):
    """Whether a Conv2D call on x takes the Winograd path: 3x3, stride 1, at least
    MIN_CHANNELS input channels, on the chunked CPU path (the bench's measured rule)."""
    return (tuple(kernel_size) == (3, 3) and tuple(strides) == (1, 1)
            and x.shape[-1] >= MIN_CHANNELS and _workers.threaded(x))


def applies_input_grad(dz, kernel_size, strides, padding):
    """Whether the input gradient of that convolution takes the Winograd path: as `applies`
    (dz's channels are the filters), for 'same' padding only (measured per 2-image chunk:
    0.75-0.81x of dz @ W^T + col2im for 'same'; 0.98x for 'valid', whose 'full' padding
    adds a ring of tiles)."""
    return padding == "same" and applies(dz, kernel_size, strides)


def _geometry(x_shape, padding):
    n, h, w, _ = x_shape
    if padding == "full":  # the input gradient of a 'valid' convolution
        top = left = 2
        oh, ow = h + 2, w + 2
    else:
        if padding == "same":
            (top, _), (left, _) = same_padding(h, 3, 1), same_padding(w, 3, 1)
        else:
            top = left = 0
        oh, ow = conv_output_size(h, 3, 1, padding), conv_output_size(w, 3, 1, padding)
    if oh < 1 or ow < 1:
        raise ShapeError(f"winograd_conv: input {tuple(x_shape)} is smaller than the 3x3 kernel.")
    return top, left, oh, ow, -(-oh // 2), -(-ow // 2)


def winograd_weights(kernel, transpose=False):
    """(3, 3, C, F) kernel -> U (16, C, F) = G g G^T per (c, f), in the kernel's dtype.
    transpose=True: the weights of the input gradient, (16, F, C) from the kernel rotated
    by 180 degrees with C and F swapped (dx = winograd_conv(dz, U, 'full' for a 'valid'
    forward, 'same' for 'same'))."""
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
        raise ShapeError(f"winograd_weights: expected a (3, 3, C, F) kernel, got {kernel.shape}.")
    xp = get_array_module(kernel)
    if transpose:
        kernel = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    g = xp.asarray(G, dtype=kernel.dtype)
    u = xp.einsum("ai,ijcf,bj->abcf", g, kernel, g)
    return xp.ascontiguousarray(u.reshape(16, kernel.shape[2], kernel.shape[3]))


def input_grad_padding(padding):
    """The winograd_conv padding of the input gradient of a 3x3 stride-1 convolution."""
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
    if x.ndim != 4 or u.ndim != 3 or u.shape[0] != 16 or u.shape[1] != x.shape[3]:
        raise ShapeError(f"winograd_conv: x {x.shape} and U {u.shape} do not fit "
                         f"((N, H, W, C) and (16, C, F)).")
    want = (x.shape[0], oh, ow, u.shape[2])
    if out is not None and (out.shape != want or not out.flags.c_contiguous):
        raise ShapeError(f"winograd_conv: out must be C-contiguous of shape {want}, "
                         f"got {out.shape}.")
    return want


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def _reference_v(x, top, th, tw, left):
    """V = B^T d B of every tile, (16, N*TH*TW, C), by strided slicing and einsum."""
    xp = get_array_module(x)
    n, h, w, c = x.shape
    pad = ((0, 0), (top, 2 * th + 2 - h - top), (left, 2 * tw + 2 - w - left), (0, 0))
    xpad = xp.pad(x, pad)
    d = xp.empty((n, th, tw, 4, 4, c), dtype=x.dtype)
    for p in range(4):
        for q in range(4):
            d[:, :, :, p, q, :] = xpad[:, p:p + 2 * th:2, q:q + 2 * tw:2, :]
    bt = xp.asarray(BT, dtype=x.dtype)
    return xp.einsum("ap,ntspqc,bq->abntsc", bt, d, bt).reshape(16, n * th * tw, c)


def reference(x, u, padding="valid", out=None, bias=None, relu=False):
    """Pure NumPy/CuPy form: pad, 4x4 patches by strided slicing, einsum transforms."""
    top, left, oh, ow, th, tw = _geometry(x.shape, padding)
    want = _check(x, u, out, oh, ow)
    xp = get_array_module(x)
    n = x.shape[0]
    v = _reference_v(x, top, th, tw, left)
    u = u.astype(x.dtype, copy=False)
    m = xp.matmul(v, u).reshape(4, 4, n, th, tw, -1)
    at = xp.asarray(AT, dtype=x.dtype)
    y = xp.einsum("ra,abntsf,eb->ntrsef", at, m, at).reshape(n, 2 * th, 2 * tw, -1)
    y = y[:, :oh, :ow, :]
    if bias is not None:
        y = y + bias
    if relu:
        y = xp.maximum(y, 0)
    if out is None:
        return xp.ascontiguousarray(y, dtype=x.dtype).reshape(want)
    out[...] = y
    return out


def _weights_from_transformed(du_t, dtype):
    """(16, F, C) gradients of U -> the (3, 3, C, F) kernel gradient: G^T dU G."""
    xp = get_array_module(du_t)
    g = xp.asarray(G, dtype=dtype)
    f, c = du_t.shape[1], du_t.shape[2]
    return xp.ascontiguousarray(xp.einsum("ai,abfc,bj->ijcf", g, du_t.reshape(4, 4, f, c), g))


def reference_weight_grad(x, dy, padding="valid"):
    """Pure NumPy/CuPy form: V and A dY A^T of every tile by einsum, 16 GEMMs, G^T . G."""
    top, left, oh, ow, th, tw = _geometry(x.shape, padding)
    dy = _check_dy(x, dy, oh, ow)
    xp = get_array_module(x)
    n, f = x.shape[0], dy.shape[3]
    v = _reference_v(x, top, th, tw, left)
    dyp = xp.zeros((n, 2 * th, 2 * tw, f), dtype=x.dtype)
    dyp[:, :oh, :ow, :] = dy
    tiles = dyp.reshape(n, th, 2, tw, 2, f)  # (n, i, r, j, e, f)
    at = xp.asarray(AT, dtype=x.dtype)
    dm = xp.einsum("rp,nirjef,eq->pqnijf", at, tiles, at).reshape(16, n * th * tw, f)
    return _weights_from_transformed(xp.matmul(dm.transpose(0, 2, 1), v), x.dtype)


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


def numba_cpu(x, u, padding="valid", out=None, bias=None, relu=False):
    """Numba CPU form: one GIL-free call; per block of images the input transform, 16
    GEMMs and the output transform (+ bias, ReLU) run while the block is in cache."""
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


def numba_cpu_weight_grad(x, dy, padding="valid"):
    """Numba CPU form: one GIL-free call; per block of images both transforms and the 16
    GEMMs, summed in block order; then G^T dU G."""
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


# ---------------------------------------------------------------- Numba CUDA

@cuda_jit
def _input_cuda(x, v, top, left, th, tw, total):
    n, h, w, c = x.shape
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one (tile, channel) per thread
        ch = e % c
        t = e // c
        j = t % tw
        i = (t // tw) % th
        b = t // (tw * th)
        d = cuda.local.array((4, 4), numba_float64)
        for p in range(4):
            y = 2 * i - top + p
            for q in range(4):
                z = 2 * j - left + q
                d[p, q] = x[b, y, z, ch] if 0 <= y < h and 0 <= z < w else 0
        for q in range(4):
            d0, d1, d2, d3 = d[0, q], d[1, q], d[2, q], d[3, q]
            d[0, q] = d0 - d2
            d[1, q] = d1 + d2
            d[2, q] = d2 - d1
            d[3, q] = d1 - d3
        for p in range(4):
            e0, e1, e2, e3 = d[p, 0], d[p, 1], d[p, 2], d[p, 3]
            v[4 * p + 0, t, ch] = e0 - e2
            v[4 * p + 1, t, ch] = e1 + e2
            v[4 * p + 2, t, ch] = e2 - e1
            v[4 * p + 3, t, ch] = e1 - e3


@cuda_jit
def _output_cuda(m, out, bias, use_bias, relu, th, tw, total):
    n, oh, ow, f = out.shape
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one (tile, filter) per thread
        k = e % f
        t = e // f
        j = t % tw
        i = (t // tw) % th
        b = t // (tw * th)
        for r in range(2):
            y = 2 * i + r
            if y < oh:
                if r == 0:  # row r of A^T M, for the 4 columns
                    s0 = m[0, t, k] + m[4, t, k] + m[8, t, k]
                    s1 = m[1, t, k] + m[5, t, k] + m[9, t, k]
                    s2 = m[2, t, k] + m[6, t, k] + m[10, t, k]
                    s3 = m[3, t, k] + m[7, t, k] + m[11, t, k]
                else:
                    s0 = m[4, t, k] - m[8, t, k] - m[12, t, k]
                    s1 = m[5, t, k] - m[9, t, k] - m[13, t, k]
                    s2 = m[6, t, k] - m[10, t, k] - m[14, t, k]
                    s3 = m[7, t, k] - m[11, t, k] - m[15, t, k]
                for c2 in range(2):
                    z = 2 * j + c2
                    if z < ow:
                        val = s0 + s1 + s2 if c2 == 0 else s1 - s2 - s3
                        if use_bias:
                            val += bias[k]
                        if relu and val < 0:
                            val = 0
                        out[b, y, z, k] = val


@cuda_jit
def _dy_cuda(dy, dm, th, tw, total):
    n, oh, ow, f = dy.shape
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one (tile, filter) per thread
        k = e % f
        t = e // f
        j = t % tw
        i = (t // tw) % th
        b = t // (tw * th)
        y1ok, x1ok = 2 * i + 1 < oh, 2 * j + 1 < ow
        y00 = dy[b, 2 * i, 2 * j, k]
        y01 = dy[b, 2 * i, 2 * j + 1, k] if x1ok else 0
        y10 = dy[b, 2 * i + 1, 2 * j, k] if y1ok else 0
        y11 = dy[b, 2 * i + 1, 2 * j + 1, k] if y1ok and x1ok else 0
        for p in range(4):
            if p == 0:
                u0, u1 = y00, y01
            elif p == 1:
                u0, u1 = y00 + y10, y01 + y11
            elif p == 2:
                u0, u1 = y00 - y10, y01 - y11
            else:
                u0, u1 = -y10, -y11
            dm[4 * p + 0, t, k] = u0
            dm[4 * p + 1, t, k] = u0 + u1
            dm[4 * p + 2, t, k] = u0 - u1
            dm[4 * p + 3, t, k] = -u1


numba_float64 = None  # bound to numba.float64 when the CUDA input kernel is compiled


def numba_cuda(x, u, padding="valid", out=None, bias=None, relu=False):
    """Numba CUDA form: one thread per (tile, channel) / (tile, filter); CuPy's matmul."""
    global numba_float64
    if numba_float64 is None:
        import numba
        numba_float64 = numba.float64
    top, left, oh, ow, th, tw = _geometry(x.shape, padding)
    want = _check(x, u, out, oh, ow)
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    t, c, f = x.shape[0] * th * tw, x.shape[3], u.shape[2]
    v = xp.empty((16, t, c), x.dtype)
    blocks, threads = grid_for(t * c)
    launch(_input_cuda, blocks, threads, x, v, top, left, th, tw, t * c)
    m = xp.matmul(v, xp.ascontiguousarray(u, dtype=x.dtype))
    out = xp.empty(want, x.dtype) if out is None else out
    b = xp.zeros(f, x.dtype) if bias is None else xp.ascontiguousarray(bias, dtype=x.dtype)
    blocks, threads = grid_for(t * f)
    launch(_output_cuda, blocks, threads, m, out, b, bias is not None, bool(relu), th, tw, t * f)
    return out


def numba_cuda_weight_grad(x, dy, padding="valid"):
    """Numba CUDA form: both transforms one thread per (tile, channel/filter); CuPy's GEMMs."""
    global numba_float64
    if numba_float64 is None:
        import numba
        numba_float64 = numba.float64
    top, left, oh, ow, th, tw = _geometry(x.shape, padding)
    xp = get_array_module(x)
    dy = xp.ascontiguousarray(_check_dy(x, dy, oh, ow), dtype=x.dtype)
    x = xp.ascontiguousarray(x)
    t, c, f = x.shape[0] * th * tw, x.shape[3], dy.shape[3]
    v = xp.empty((16, t, c), x.dtype)
    blocks, threads = grid_for(t * c)
    launch(_input_cuda, blocks, threads, x, v, top, left, th, tw, t * c)
    dm = xp.empty((16, t, f), x.dtype)
    blocks, threads = grid_for(t * f)
    launch(_dy_cuda, blocks, threads, dy, dm, th, tw, t * f)
    return _weights_from_transformed(xp.matmul(dm.transpose(0, 2, 1), v), x.dtype)


# ---------------------------------------------------------------- public

def winograd_conv(x, u, padding="valid", out=None, bias=None, relu=False):
    """3x3 stride-1 convolution of (N, H, W, C) x with U = winograd_weights(kernel)."""
    return _dispatch.form("winograd_conv", x, u)(x, u, padding, out,
                                                                         bias, relu)


def winograd_weight_grad(x, dy, padding="valid"):
    """The (3, 3, C, F) kernel gradient of a 3x3 stride-1 convolution of x whose output
    gradient is dy ((N, OH, OW, F) or (N*OH*OW, F)), by Winograd F(2x2, 3x3)."""
    return _dispatch.form("winograd_weight_grad", x, dy)(x, dy, padding)

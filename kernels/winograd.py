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
from ._jit import cpu_jit, prange
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

def reference(x, u, padding="valid", out=None, bias=None, relu=False):
    """Pure NumPy/CuPy form: pad, 4x4 patches by strided slicing, einsum transforms."""
    top, left, oh, ow, th, tw = _geometry(x.shape, padding)
    want = _check(x, u, out, oh, ow)
    xp = get_array_module(x)
    n, h, w, c = x.shape
    pad = ((0, 0), (top, 2 * th + 2 - h - top), (left, 2 * tw + 2 - w - left), (0, 0))
    xpad = xp.pad(x, pad)
    d = xp.empty((n, th, tw, 4, 4, c), dtype=x.dtype)
    for p in range(4):
        for q in range(4):
            d[:, :, :, p, q, :] = xpad[:, p:p + 2 * th:2, q:q + 2 * tw:2, :]
    bt = xp.asarray(BT, dtype=x.dtype)
    v = xp.einsum("ap,ntspqc,bq->abntsc", bt, d, bt).reshape(16, n * th * tw, c)
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


# ---------------------------------------------------------------- Numba CPU

@cpu_jit(nogil=True)
def _input_cpu(x, v, top, left, th, tw):
    n, h, w, c = x.shape
    d = numpy.zeros((4, 4, c), dtype=x.dtype)
    for b in range(n):
        for i in range(th):
            for j in range(tw):
                t = (b * th + i) * tw + j
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


@cpu_jit(nogil=True)
def _output_cpu(m, out, bias, use_bias, relu, th, tw):
    n, oh, ow, f = out.shape
    s = numpy.empty((2, 4, f), dtype=out.dtype)
    for b in range(n):
        for i in range(th):
            for j in range(tw):
                t = (b * th + i) * tw + j
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


def _gemm(v, u, m):
    with _workers.one_blas_thread():  # thin GEMMs: BLAS threads only spin (and collapse
        for k in range(16):           # under load); one (T x C) @ (C x F) per position
            numpy.matmul(v[k], u[k], out=m[k])


def numba_cpu(x, u, padding="valid", out=None, bias=None, relu=False):
    """Numba CPU form: input transform, 16 GEMMs, output transform (+ bias, ReLU)."""
    top, left, oh, ow, th, tw = _geometry(x.shape, padding)
    want = _check(x, u, out, oh, ow)
    x = numpy.ascontiguousarray(x)
    t, c, f = x.shape[0] * th * tw, x.shape[3], u.shape[2]
    v = _workers.scratch(x, "winograd_v", (16, t, c), x.dtype)
    v = numpy.empty((16, t, c), x.dtype) if v is None else v
    m = _workers.scratch(x, "winograd_m", (16, t, f), x.dtype)
    m = numpy.empty((16, t, f), x.dtype) if m is None else m
    _input_cpu(x, v, top, left, th, tw)
    _gemm(v, numpy.ascontiguousarray(u, dtype=x.dtype), m)
    out = numpy.empty(want, x.dtype) if out is None else out
    b = numpy.zeros(f, x.dtype) if bias is None else numpy.ascontiguousarray(bias, dtype=x.dtype)
    _output_cpu(m, out, b, bias is not None, bool(relu), th, tw)
    return out


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


# ---------------------------------------------------------------- public

def winograd_conv(x, u, padding="valid", out=None, bias=None, relu=False):
    """3x3 stride-1 convolution of (N, H, W, C) x with U = winograd_weights(kernel)."""
    return _dispatch.form("winograd_conv", x, u)(x, u, padding, out,
                                                                         bias, relu)

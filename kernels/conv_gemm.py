"""Convolution as im2col + GEMM, each pass over a batch (or a task's slice of it) in one call.

    conv_forward(x, w2, kernel_size, stride, padding, out=None, bias=None, relu=False)
        -> z (N, OH, OW, F) = im2col(x) @ w2 (+ bias, then ReLU when asked)
    conv_weight_grad(x, dz, kernel_size, stride, padding) -> dw2 (KH*KW*C, F) = im2col(x)^T @ dz
    conv_input_grad(dz, w2, x_shape, kernel_size, stride, padding, out=None)
        -> dx = col2im(dz @ w2^T)

with w2 the Keras kernel (KH, KW, C, F) reshaped to (KH*KW*C, F) and dz (N*OH*OW, F) or
(N, OH, OW, F). The Numba CPU forms run the whole pass without the GIL: per block of images
(a few hundred rows of columns, so the columns stay in L2) im2col, the GEMM through BLAS
(`np.dot`, SciPy's BLAS, one thread) and the epilogue; a layer's worker threads each make one
such call per task instead of a dozen Python-level calls per chunk, which serialised on the
GIL (measured: two threads ran slower than one). conv_weight_grad adds the blocks' products
in block order, so results depend on the input only. The reference forms are the same math
on the whole input with NumPy/CuPy; the CUDA forms use the numba-cuda im2col/col2im kernels
and CuPy's GEMM.
"""
import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _dispatch, _workers
from . import im2col as _im2col
from ._jit import cpu_jit
from ._loops import add_into
from .im2col import _col2im_cpu, _geometry, _im2col_cpu, _im2col_t_cpu

BLOCK_ROWS = 256  # column rows per block: at least one image (measured: 256-576 rows keep
# the columns in L2; fewer make the GEMMs thin)
COLUMNS_T_MAX_CHANNELS = 1  # up to this many input channels the Numba CPU forward and weight
# gradient build the columns transposed (`im2col._im2col_t_cpu`: contiguous runs instead of
# a few scattered values per output position) and multiply by them transposed. Measured
# per image, one thread, float32, batch 32, same bits: seed 004's conv1 (C = 1, 5x5 'same',
# 28x28) forward 27.5 -> 17.5 us, weight gradient 26.8 -> 18.8; mnist_cnn's conv1 (C = 1,
# 3x3 'valid') 13.4 -> 8.5 and 12.3 -> 8.5; at C = 3 (CIFAR's conv1) no faster (strided reads).


def _w2_check(w2, g, c, who):
    kh, kw = g[0], g[1]
    if w2.ndim != 2 or w2.shape[0] != kh * kw * c:
        raise ShapeError(f"{who}: w2 must be (KH*KW*C, F) = ({kh * kw * c}, F), got {w2.shape}.")


def _dz2(dz, rows, who):
    if dz.size % max(rows, 1) or dz.ndim not in (2, 4):
        raise ShapeError(f"{who}: dz of shape {dz.shape} does not hold {rows} output rows.")
    return dz.reshape(rows, -1)


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def _columns_forward(to_cols, x, w2, kernel_size, stride, padding, out, bias, relu):
    """im2col of the whole input by `to_cols`, one GEMM, bias, ReLU (NumPy or CuPy)."""
    g = _geometry(x.shape, kernel_size, stride, padding, "conv_forward")
    _w2_check(w2, g, x.shape[3], "conv_forward")
    xp = get_array_module(x)
    shape = (x.shape[0], g[4], g[5], w2.shape[1])
    z = to_cols(x, kernel_size, stride, padding) @ w2
    if bias is not None:
        z += bias
    if relu:
        xp.maximum(z, 0, out=z)
    if out is None:
        return z.reshape(shape)
    out[...] = z.reshape(shape)
    return out


def _columns_weight_grad(to_cols, x, dz, kernel_size, stride, padding):
    g = _geometry(x.shape, kernel_size, stride, padding, "conv_weight_grad")
    dz = _dz2(dz, x.shape[0] * g[4] * g[5], "conv_weight_grad")
    return to_cols(x, kernel_size, stride, padding).T @ dz


def _columns_input_grad(to_image, dz, w2, x_shape, kernel_size, stride, padding, out):
    g = _geometry(x_shape, kernel_size, stride, padding, "conv_input_grad")
    _w2_check(w2, g, x_shape[3], "conv_input_grad")
    dz = _dz2(dz, x_shape[0] * g[4] * g[5], "conv_input_grad")
    return to_image(dz @ w2.T, x_shape, kernel_size, stride, padding, out)


def reference_forward(x, w2, kernel_size, stride=1, padding="valid", out=None, bias=None,
                      relu=False):
    """Pure NumPy/CuPy form: im2col of the whole input, one GEMM, bias, ReLU."""
    return _columns_forward(_im2col.reference_im2col, x, w2, kernel_size, stride, padding, out,
                            bias, relu)


def reference_weight_grad(x, dz, kernel_size, stride=1, padding="valid"):
    """Pure NumPy/CuPy form: im2col(x)^T @ dz."""
    return _columns_weight_grad(_im2col.reference_im2col, x, dz, kernel_size, stride, padding)


def reference_input_grad(dz, w2, x_shape, kernel_size, stride=1, padding="valid", out=None):
    """Pure NumPy/CuPy form: col2im(dz @ w2^T)."""
    return _columns_input_grad(_im2col.reference_col2im, dz, w2, x_shape, kernel_size, stride,
                               padding, out)


# ---------------------------------------------------------------- Numba CPU

@cpu_jit(nogil=True)
def _forward_cpu(x, w2, z, bias, use_bias, relu, kh, kw, sh, sw, top, left, oh, ow, per_block,
                 cols):
    n, k = x.shape[0], w2.shape[0]
    f = w2.shape[1]
    transposed = x.shape[3] <= COLUMNS_T_MAX_CHANNELS
    for b0 in range(0, n, per_block):
        b1 = min(b0 + per_block, n)
        rows = (b1 - b0) * oh * ow
        zb = z[b0 * oh * ow:b1 * oh * ow]
        if transposed:
            cols_t = cols.reshape(-1)[:k * rows].reshape((k, rows))
            _im2col_t_cpu(x[b0:b1], cols_t, kh, kw, sh, sw, top, left, oh, ow)
            numpy.dot(cols_t.T, w2, zb)
        else:
            _im2col_cpu(x[b0:b1], cols[:rows], kh, kw, sh, sw, top, left, oh, ow)
            numpy.dot(cols[:rows], w2, zb)
        if use_bias or relu:
            for r in range(rows):
                for j in range(f):
                    v = zb[r, j] + bias[j] if use_bias else zb[r, j]
                    zb[r, j] = 0 if relu and v < 0 else v


@cpu_jit(nogil=True)
def _weight_grad_cpu(x, dz, dw, kh, kw, sh, sw, top, left, oh, ow, per_block, cols, part):
    """dw (K, F) = cols^T @ dz, block by block. This orientation measured faster than
    dz^T @ cols at every shape tried (one thread, slices of 8 images, us): K = 9 (mnist
    conv1) 65.8 / 72.2, K = 25 (seed 004 conv1) 202 / 224, K = 27 (CIFAR conv1) 263 / 287,
    K = 288 (mnist conv2) 1230 / 1636, K = 800 (seed 004 conv2) 1174 / 1385; same bits."""
    n, k = x.shape[0], dw.shape[0]
    transposed = x.shape[3] <= COLUMNS_T_MAX_CHANNELS
    for b0 in range(0, n, per_block):  # blocks in order: a fixed summation order
        b1 = min(b0 + per_block, n)
        rows = (b1 - b0) * oh * ow
        target = dw if b0 == 0 else part
        if transposed:
            cols_t = cols.reshape(-1)[:k * rows].reshape((k, rows))
            _im2col_t_cpu(x[b0:b1], cols_t, kh, kw, sh, sw, top, left, oh, ow)
            numpy.dot(cols_t, dz[b0 * oh * ow:b1 * oh * ow], target)
        else:
            _im2col_cpu(x[b0:b1], cols[:rows], kh, kw, sh, sw, top, left, oh, ow)
            numpy.dot(cols[:rows].T, dz[b0 * oh * ow:b1 * oh * ow], target)
        if b0 != 0:
            add_into(dw, part)


@cpu_jit(nogil=True)
def _input_grad_cpu(dz, w2t, dx, kh, kw, sh, sw, top, left, oh, ow, per_block, cols):
    n = dx.shape[0]
    for b0 in range(0, n, per_block):
        b1 = min(b0 + per_block, n)
        rows = (b1 - b0) * oh * ow
        numpy.dot(dz[b0 * oh * ow:b1 * oh * ow], w2t, cols[:rows])
        _col2im_cpu(cols[:rows], dx[b0:b1], kh, kw, sh, sw, top, left, oh, ow)


def _per_block(g, n):
    return max(1, min(n, BLOCK_ROWS // max(g[4] * g[5], 1)))


def _buffer(like, name, shape, dtype):
    buf = _workers.scratch(like, name, shape, dtype)
    return numpy.empty(shape, dtype) if buf is None else buf


def numba_cpu_forward(x, w2, kernel_size, stride=1, padding="valid", out=None, bias=None,
                      relu=False):
    """Numba CPU form: one GIL-free call; per block of images im2col, GEMM, bias + ReLU."""
    g = _geometry(x.shape, kernel_size, stride, padding, "conv_forward")
    _w2_check(w2, g, x.shape[3], "conv_forward")
    kh, kw, sh, sw, oh, ow, (top, _), (left, _) = g
    x = numpy.ascontiguousarray(x)
    n, f = x.shape[0], w2.shape[1]
    shape = (n, oh, ow, f)
    z = _im2col._out(out, shape, x.dtype, numpy, "conv_forward")
    per_block = _per_block(g, n)
    cols = _buffer(x, "conv_cols", (per_block * oh * ow, kh * kw * x.shape[3]), x.dtype)
    b = numpy.zeros(f, x.dtype) if bias is None else numpy.ascontiguousarray(bias, dtype=x.dtype)
    with _workers.one_blas_thread():
        _forward_cpu(x, numpy.ascontiguousarray(w2, dtype=x.dtype), z.reshape(-1, f), b,
                     bias is not None, bool(relu), kh, kw, sh, sw, top, left, oh, ow, per_block,
                     cols)
    return z


def numba_cpu_weight_grad(x, dz, kernel_size, stride=1, padding="valid"):
    """Numba CPU form: one GIL-free call; the blocks' im2col^T @ dz summed in block order."""
    g = _geometry(x.shape, kernel_size, stride, padding, "conv_weight_grad")
    kh, kw, sh, sw, oh, ow, (top, _), (left, _) = g
    x = numpy.ascontiguousarray(x)
    dz = numpy.ascontiguousarray(_dz2(dz, x.shape[0] * oh * ow, "conv_weight_grad"),
                                 dtype=x.dtype)
    k, f = kh * kw * x.shape[3], dz.shape[1]
    per_block = _per_block(g, x.shape[0])
    cols = _buffer(x, "conv_cols", (per_block * oh * ow, k), x.dtype)
    part = _buffer(x, "conv_dw_part", (k, f), x.dtype)
    dw = numpy.empty((k, f), x.dtype)
    with _workers.one_blas_thread():
        _weight_grad_cpu(x, dz, dw, kh, kw, sh, sw, top, left, oh, ow, per_block, cols, part)
    return dw


def numba_cpu_input_grad(dz, w2, x_shape, kernel_size, stride=1, padding="valid", out=None):
    """Numba CPU form: one GIL-free call; per block of images dz @ w2^T, then col2im."""
    x_shape = tuple(int(v) for v in x_shape)
    g = _geometry(x_shape, kernel_size, stride, padding, "conv_input_grad")
    _w2_check(w2, g, x_shape[3], "conv_input_grad")
    kh, kw, sh, sw, oh, ow, (top, _), (left, _) = g
    dz = numpy.ascontiguousarray(_dz2(dz, x_shape[0] * oh * ow, "conv_input_grad"))
    dx = _im2col._out(out, x_shape, dz.dtype, numpy, "conv_input_grad")
    per_block = _per_block(g, x_shape[0])
    cols = _buffer(dz, "conv_dcols", (per_block * oh * ow, w2.shape[0]), dz.dtype)
    with _workers.one_blas_thread():
        _input_grad_cpu(dz, numpy.ascontiguousarray(w2.T, dtype=dz.dtype), dx, kh, kw, sh, sw,
                        top, left, oh, ow, per_block, cols)
    return dx


# ---------------------------------------------------------------- Numba CUDA

def numba_cuda_forward(x, w2, kernel_size, stride=1, padding="valid", out=None, bias=None,
                       relu=False):
    """Numba CUDA form: the numba-cuda im2col kernel, CuPy's GEMM, bias + ReLU."""
    return _columns_forward(_im2col.numba_cuda_im2col, x, w2, kernel_size, stride, padding, out,
                            bias, relu)


def numba_cuda_weight_grad(x, dz, kernel_size, stride=1, padding="valid"):
    """Numba CUDA form: the numba-cuda im2col kernel, then CuPy's GEMM."""
    return _columns_weight_grad(_im2col.numba_cuda_im2col, x, dz, kernel_size, stride, padding)


def numba_cuda_input_grad(dz, w2, x_shape, kernel_size, stride=1, padding="valid", out=None):
    """Numba CUDA form: CuPy's GEMM, then the numba-cuda col2im kernel."""
    return _columns_input_grad(_im2col.numba_cuda_col2im, dz, w2, x_shape, kernel_size, stride,
                               padding, out)


# ---------------------------------------------------------------- public

def conv_forward(x, w2, kernel_size, stride=1, padding="valid", out=None, bias=None, relu=False):
    """(N, H, W, C) x convolved with w2 (KH*KW*C, F) -> (N, OH, OW, F) (+ bias, ReLU)."""
    hint = x.shape[-1] if getattr(x, "ndim", 0) == 4 else None  # channels: the im2col rule
    return _dispatch.form("conv_forward", x, w2, size_hint=hint)(x, w2, kernel_size, stride,
                                                                 padding, out, bias, relu)


def conv_weight_grad(x, dz, kernel_size, stride=1, padding="valid"):
    """The kernel gradient (KH*KW*C, F) of that convolution, from x and the output grad dz."""
    hint = x.shape[-1] if getattr(x, "ndim", 0) == 4 else None  # channels: the im2col rule
    return _dispatch.form("conv_weight_grad", x, dz, size_hint=hint)(x, dz, kernel_size, stride,
                                                                     padding)


def conv_input_grad(dz, w2, x_shape, kernel_size, stride=1, padding="valid", out=None):
    """The input gradient (x_shape) of that convolution, from dz and w2."""
    return _dispatch.form("conv_input_grad", dz, w2)(dz, w2, x_shape, kernel_size, stride,
                                                     padding, out)

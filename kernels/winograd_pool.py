"""A Winograd convolution and the max pooling after it, one block of images at a time.

    pooled, argmax = winograd_conv_pool(x, u, pool_size, strides, padding="valid",
                                        pool_padding="valid", bias=None, relu=False, r=3,
                                        out=None, argmax=None)
    dw, bias_grad, dx = winograd_pool_grads(x, grad, argmax, pooled, u, pool_size, strides,
                                            padding="valid", pool_padding="valid", out=None,
                                            r=3, u_t=None, transformed=False)

The forward is `winograd_conv` (+ bias, ReLU) then `max_pool`; the backward is
`max_pool_relu_grad` (the pooled gradient scattered to the winners where the ReLU passed,
and the bias gradient, float64 summed row by row) then `winograd_grads` (both gradients from
one transform of dz). Same bits as those kernels in a row.

Why (issue 13): Conv2D's fused pooling ran them per batch slice (8 images), so the slice's
whole convolution output (1.2 MB at mnist_cnn's conv2) went out of L2 between the
convolution and the pooling, and dz likewise between the pooling backward and the
gradients. The Numba CPU form runs both per Winograd block of images (one image there), the
block's output or dz staying in cache (`_winograd_pool_cpu_M_R` / `_pool_grads_cpu_M_R`,
generated). mnist_cnn's step (`train_on_batch`, 2 cores, 5 rounds of 40 steps, the two
commits' processes alternated): min 26.9 / 26.2 / 25.4 / 29.2 / 31.1 ms before, 24.2 / 24.3
/ 24.9 / 28.1 / 27.8 after; seed 004 (the forward only: a 'same' backward took two passes) within noise; with both gradients from one transform there too (Conv2D takes them
so for every pooled layer), seed 004's step min 21.0 -> 20.2 ms, median 22.8 -> 21.4 (mean
of 5 alternated rounds of 40 steps).

Forms: `reference` (the array-op references of the four kernels) and `numba_cpu`; the
"numba-cuda" entry runs the two kernels' CUDA forms one after the other (Conv2D fuses pooling
only on the CPU's worker threads, so no GPU model reaches it).
"""
import numpy

from ..errors import ShapeError
from . import _dispatch, _workers
from .im2col import _geometry as _pool_geometry
from .max_pool import _outputs, _relu_grad_geometry
from .max_pool import numba_cuda as _pool_cuda, numba_cuda_relu_grad as _relu_grad_cuda
from .max_pool import reference as _pool_reference, reference_relu_grad as _relu_grad_reference
from .winograd import _buffer, _check, _generated, finish_weight_grad, forward_buffers, tile_of
from .winograd import _geometry as _conv_geometry
from .winograd import numba_cuda as _conv_cuda, reference as _conv_reference
from .winograd_grads import numba_cuda as _grads_cuda, reference as _grads_reference
from .winograd_grads import cpu_buffers, transposed


def _conv_shape(x, u, padding, r):
    top, left, oh, ow, th, tw = _conv_geometry(x.shape, padding, tile_of(u, r), r)
    return (x.shape[0], oh, ow, u.shape[2]), (top, left, th, tw)


def _check_pooled(grad, x, u, padding, r):
    if x.ndim != 4 or u.ndim != 3 or u.shape[1] != x.shape[3] or grad.ndim != 4:
        raise ShapeError(f"winograd_pool_grads: x {x.shape}, grad {grad.shape} and U "
                         f"{u.shape} do not fit ((N, H, W, C), (N, PH, PW, F), (n*n, C, F)).")
    return _conv_shape(x, u, padding, r)


# ---------------------------------------------------------------- reference and CUDA

def _composed(conv, pool):
    def forward(x, u, pool_size, strides, padding="valid", pool_padding="valid", bias=None,
                relu=False, r=3, out=None, argmax=None):
        z = conv(x, u, padding, None, bias, relu, r)
        return pool(z, pool_size, strides, pool_padding, out, argmax)
    return forward


def _composed_grads(relu_grad, grads):
    def backward(x, grad, argmax, pooled, u, pool_size, strides, padding="valid",
                 pool_padding="valid", out=None, r=3, u_t=None, transformed=False):
        z_shape, _ = _check_pooled(grad, x, u, padding, r)
        dz, bias_grad = relu_grad(grad, argmax, pooled, z_shape, pool_size, strides,
                                  pool_padding)
        dw, dx = grads(x, dz, u, padding, out, r, u_t, transformed)
        return dw, bias_grad, dx
    return backward


reference = _composed(_conv_reference, _pool_reference)
reference_grads = _composed_grads(_relu_grad_reference, _grads_reference)
numba_cuda = _composed(_conv_cuda, _pool_cuda)
numba_cuda_grads = _composed_grads(_relu_grad_cuda, _grads_cuda)


# ---------------------------------------------------------------- Numba CPU

def numba_cpu(x, u, pool_size, strides, padding="valid", pool_padding="valid", bias=None,
              relu=False, r=3, out=None, argmax=None):
    """Numba CPU form: one GIL-free call; per block of images the convolution into a
    one-block buffer, pooled from there."""
    mt = tile_of(u, r)
    kernel = _generated(mt, r)
    if kernel is None:  # (the dispatcher sends other dtypes to the reference)
        return reference(x, u, pool_size, strides, padding, pool_padding, bias, relu, r, out,
                         argmax)
    (n, oh, ow, f), (top, left, th, tw) = _conv_shape(x, u, padding, r)
    _check(x, u, None, oh, ow)
    kh, kw, sh, sw, ph, pw, pad_h, pad_w = _pool_geometry((n, oh, ow, f), pool_size, strides,
                                                          pool_padding, "max_pool")
    out, argmax = _outputs(numpy, (n, ph, pw, f), x.dtype, kh, kw, out, argmax)
    x = numpy.ascontiguousarray(x)
    per_block, v, m = forward_buffers(x, f, mt, r, th, tw)
    block = _buffer(x, "winograd_block", (per_block, oh, ow, f))
    b = numpy.zeros(f, x.dtype) if bias is None else numpy.ascontiguousarray(bias, dtype=x.dtype)
    with _workers.one_blas_thread():
        kernel[3](x, numpy.ascontiguousarray(u, dtype=x.dtype), block, b, bias is not None,
                  bool(relu), top, left, th, tw, per_block, v, m, out, argmax, kh, kw, sh, sw,
                  pad_h[0], pad_w[0])
    return out, argmax


def numba_cpu_grads(x, grad, argmax, pooled, u, pool_size, strides, padding="valid",
                    pool_padding="valid", out=None, r=3, u_t=None, transformed=False):
    """Numba CPU form: one GIL-free call; per block of images dz into a one-block buffer,
    then both gradients from it."""
    mt = tile_of(u, r)
    kernel = _generated(mt, r)
    if kernel is None:
        return reference_grads(x, grad, argmax, pooled, u, pool_size, strides, padding,
                               pool_padding, out, r, u_t, transformed)
    z_shape, (top, left, th, tw) = _check_pooled(grad, x, u, padding, r)
    _, g = _relu_grad_geometry(grad, argmax, pooled, z_shape, pool_size, strides, pool_padding)
    kh, kw, sh, sw, _, _, pad_h, pad_w = g
    if out is not None and (out.shape != x.shape or not out.flags.c_contiguous):
        raise ShapeError(f"winograd_pool_grads: out must be C-contiguous of shape {x.shape}, "
                         f"got {out.shape}.")
    x = numpy.ascontiguousarray(x)
    n, oh, ow, f = z_shape
    per_block, v, dm, mp, part, du_t = cpu_buffers(x, f, mt, r, th, tw)
    block = _buffer(x, "winograd_block", (per_block, oh, ow, f))
    acc = numpy.empty(f, numpy.float64)
    out = numpy.empty(x.shape, x.dtype) if out is None else out
    with _workers.one_blas_thread():
        u_t = transposed(u) if u_t is None else u_t
        kernel[4](x, numpy.ascontiguousarray(grad, dtype=x.dtype), numpy.ascontiguousarray(argmax),
                  numpy.ascontiguousarray(pooled, dtype=x.dtype), block, acc,
                  numpy.ascontiguousarray(u_t, dtype=x.dtype), du_t, part, out, top, left, th,
                  tw, per_block, v, dm, mp, kh, kw, sh, sw, pad_h[0], pad_w[0])
    return finish_weight_grad(du_t, x.dtype, mt, r, transformed), acc, out


# ---------------------------------------------------------------- public

def winograd_conv_pool(x, u, pool_size, strides, padding="valid", pool_padding="valid",
                       bias=None, relu=False, r=3, out=None, argmax=None):
    """(pooled (N, PH, PW, F), argmax): `max_pool` of `winograd_conv(x, u, padding, bias=bias,
    relu=relu, r=r)`, into `out` / `argmax` when given."""
    return _dispatch.form("winograd_conv_pool", x, u)(x, u, pool_size, strides, padding,
                                                      pool_padding, bias, relu, r, out, argmax)


def winograd_pool_grads(x, grad, argmax, pooled, u, pool_size, strides, padding="valid",
                        pool_padding="valid", out=None, r=3, u_t=None, transformed=False):
    """(kernel gradient, bias gradient float64 (F,), input gradient in `out` if given) of a
    Winograd convolution + bias + ReLU + max pooling (`winograd_conv_pool`'s forward) from
    the pooled output's gradient `grad`; as `winograd_grads` for `u_t` and `transformed`."""
    return _dispatch.form("winograd_pool_grads", x, grad, u)(
        x, grad, argmax, pooled, u, pool_size, strides, padding, pool_padding, out, r, u_t,
        transformed)

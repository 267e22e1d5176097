"""Inverted dropout with a counter-based hash mask: no random array is drawn.

    dropout(x, key, rate) -> (y, mask)     y = x / (1 - rate) where kept, else 0;
                                           mask: uint8, 1 = kept (x's shape)
    dropout_backward(grad, mask, rate) -> dx = grad / (1 - rate) where kept, else 0

Element i (flat, row-major) is kept when bits 40..63 of splitmix64(key + (i + 1) * golden
ratio) are >= round(rate * 2**24): a pure function of (key, i), so every form draws the
same mask bit for bit, in one pass, without a float array of random numbers (the mask is
uint8, a quarter of a float32 mask). `key` is a 2-element float64 array holding two
integers in [0, 2**32), drawn by the caller from the backend's generator (2 numbers per
call, so seeding reproduces the masks and no host read is needed on the GPU).
"""
import sys

import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _dispatch
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit, prange

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled

U64 = numpy.uint64
GOLDEN = U64(0x9E3779B97F4A7C15)
MIX1 = U64(0xBF58476D1CE4E5B9)
MIX2 = U64(0x94D049BB133111EB)
S30, S27, S31, S40, S32 = U64(30), U64(27), U64(31), U64(40), U64(32)


def threshold(rate):
    """Elements whose 24-bit hash is below this are dropped."""
    return int(round(float(rate) * (1 << 24)))


def scale(rate, dtype):
    return numpy.dtype(dtype).type(1.0 / (1.0 - float(rate)))


def _check_key(key):
    if getattr(key, "shape", None) != (2,):
        raise ShapeError(f"dropout: key must be a 2-element float64 array, got {key!r}.")


def _check_mask(grad, mask):
    if grad.shape != mask.shape:
        raise ShapeError(f"dropout_backward: grad {grad.shape} and mask {mask.shape} differ.")


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def reference_mask(key, size, rate, xp):
    """uint8 mask of `size` elements from the hash, with array operations."""
    k = (key[0].astype(U64) << S32) | key[1].astype(U64)
    with numpy.errstate(over="ignore"):  # uint64 arithmetic wraps, as intended
        z = k + (xp.arange(1, size + 1, dtype=U64) * GOLDEN)
        z = (z ^ (z >> S30)) * MIX1
        z = (z ^ (z >> S27)) * MIX2
        z = z ^ (z >> S31)
    return ((z >> S40) >= U64(threshold(rate))).astype(numpy.uint8)


def reference(x, key, rate):
    """Pure NumPy/CuPy form."""
    _check_key(key)
    xp = get_array_module(x)
    mask = reference_mask(key, x.size, rate, xp).reshape(x.shape)
    return x * (mask * scale(rate, x.dtype)), mask


def reference_backward(grad, mask, rate):
    _check_mask(grad, mask)
    return grad * (mask * scale(rate, grad.dtype))


# ---------------------------------------------------------------- Numba CPU

@cpu_jit(parallel=False, inline="always")
def _keep(k, i, cut):
    z = k + U64(i + 1) * GOLDEN
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    z = z ^ (z >> S31)
    return (z >> S40) >= cut


@cpu_jit(nogil=True)
def _dropout_cpu(x, y, mask, k, cut, s):
    for i in prange(x.size):
        if _keep(k, i, cut):
            mask[i] = 1
            y[i] = x[i] * s
        else:
            mask[i] = 0
            y[i] = 0


@cpu_jit(nogil=True)
def _dropout_backward_cpu(grad, mask, dx, s):
    for i in prange(grad.size):
        dx[i] = grad[i] * s if mask[i] else 0


def _key64(key):
    return U64((int(key[0]) << 32) | int(key[1]))


def numba_cpu(x, key, rate):
    """Numba CPU form: the mask and the output in one pass."""
    _check_key(key)
    flat = numpy.ascontiguousarray(x).reshape(-1)
    y = numpy.empty(flat.shape, dtype=x.dtype)
    mask = numpy.empty(flat.shape, dtype=numpy.uint8)
    _dropout_cpu(flat, y, mask, _key64(key), U64(threshold(rate)), scale(rate, x.dtype))
    return y.reshape(x.shape), mask.reshape(x.shape)


def numba_cpu_backward(grad, mask, rate):
    _check_mask(grad, mask)
    flat = numpy.ascontiguousarray(grad).reshape(-1)
    dx = numpy.empty(flat.shape, dtype=grad.dtype)
    _dropout_backward_cpu(flat, numpy.ascontiguousarray(mask).reshape(-1), dx,
                          scale(rate, grad.dtype))
    return dx.reshape(grad.shape)


# ---------------------------------------------------------------- Numba CUDA

@cuda_jit
def _dropout_cuda(x, y, mask, key, cut, s, n):
    k = (U64(key[0]) << S32) | U64(key[1])  # the key stays on the device: no host read
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        z = k + U64(i + 1) * GOLDEN
        z = (z ^ (z >> S30)) * MIX1
        z = (z ^ (z >> S27)) * MIX2
        z = z ^ (z >> S31)
        if (z >> S40) >= cut:
            mask[i] = 1
            y[i] = x[i] * s
        else:
            mask[i] = 0
            y[i] = 0


@cuda_jit
def _dropout_backward_cuda(grad, mask, dx, s, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        dx[i] = grad[i] * s if mask[i] else 0


def numba_cuda(x, key, rate):
    """Numba CUDA form: one thread per element (grid-stride)."""
    _check_key(key)
    xp = get_array_module(x)
    flat = xp.ascontiguousarray(x).reshape(-1)
    y = xp.empty(flat.shape, dtype=x.dtype)
    mask = xp.empty(flat.shape, dtype=numpy.uint8)
    if flat.size:
        blocks, threads = grid_for(flat.size)
        launch(_dropout_cuda, blocks, threads, flat, y, mask, key, U64(threshold(rate)),
               scale(rate, x.dtype), flat.size)
    return y.reshape(x.shape), mask.reshape(x.shape)


def numba_cuda_backward(grad, mask, rate):
    _check_mask(grad, mask)
    xp = get_array_module(grad)
    flat = xp.ascontiguousarray(grad).reshape(-1)
    dx = xp.empty(flat.shape, dtype=grad.dtype)
    if flat.size:
        blocks, threads = grid_for(flat.size)
        keep = xp.ascontiguousarray(mask).reshape(-1)
        launch(_dropout_backward_cuda, blocks, threads, flat, keep, dx, scale(rate, grad.dtype),
               flat.size)
    return dx.reshape(grad.shape)


# ---------------------------------------------------------------- public

class _Backward:
    reference = staticmethod(reference_backward)
    numba_cpu = staticmethod(numba_cpu_backward)
    numba_cuda = staticmethod(numba_cuda_backward)


def dropout(x, key, rate):
    """(y, uint8 mask): inverted dropout of x with the hash mask of `key`."""
    return _dispatch.form("dropout", sys.modules[__name__], x)(x, key, rate)


def dropout_backward(grad, mask, rate):
    """grad / (1 - rate) where mask is 1, else 0."""
    return _dispatch.form("dropout", _Backward, grad)(grad, mask, rate)

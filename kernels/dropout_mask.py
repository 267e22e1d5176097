"""Dropout mask: a scaled keep mask from a counter-based hash, the same on every device.

mask[i] = scale if hash(i, key) >= threshold else 0, with hash = murmur3's 32-bit
finalizer of (i * 0x9E3779B9 + key) mod 2**32 and threshold = round(rate * 2**32): each
element is kept with probability 1 - rate. All arithmetic is uint32 modulo 2**32, which
NumPy, CuPy and Numba compute identically, so a (key, shape) gives bit-identical masks on
CPU and GPU and in every form; the key (from the seed, epoch and call) is the only state,
which is what makes a resumed run draw the masks of an uninterrupted one. One pass writes
the mask in the input's dtype (no uniform floats, no separate compare and scale passes).

`dropout_mask(like, shape, key, rate, x=x)` (x of that shape) returns (mask, x * mask): the
Numba CPU form writes both in the same pass (Dropout's forward).
"""
import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _dispatch, _workers
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit, prange

cuda = None  # bound to numba.cuda when the CUDA kernel is first compiled
M32 = 0xFFFFFFFF


def threshold_for(rate):
    """uint32 threshold: P(hash >= threshold) = 1 - rate (to 2**-32)."""
    return min(int(round(float(rate) * 2.0 ** 32)), M32)


def _check_x(x, shape):
    if x is not None and tuple(x.shape) != tuple(shape):
        raise ShapeError(f"dropout_mask: x has shape {x.shape}, the mask {tuple(shape)}.")


def _applied(mask, x):
    """mask, or (mask, x * mask) when x is given."""
    if x is None:
        return mask
    _check_x(x, mask.shape)
    return mask, x * mask


def reference(like, shape, key, rate, x=None):
    """Pure NumPy/CuPy form, in uint32 arrays (several passes)."""
    return _applied(_reference_mask(like, shape, key, rate), x)


def _reference_mask(like, shape, key, rate):
    xp = get_array_module(like)
    n = int(numpy.prod(shape, dtype=numpy.int64))
    h = xp.arange(n, dtype=xp.uint32)
    h *= xp.uint32(0x9E3779B9)
    h += xp.uint32(key & M32)
    h ^= h >> xp.uint32(16)
    h *= xp.uint32(0x85EBCA6B)
    h ^= h >> xp.uint32(13)
    h *= xp.uint32(0xC2B2AE35)
    h ^= h >> xp.uint32(16)
    keep = h >= xp.uint32(threshold_for(rate))
    return (keep.astype(like.dtype) * like.dtype.type(1.0 / (1.0 - rate))).reshape(shape)


@cpu_jit(inline="always", parallel=False)
def _hash(i, key):
    h = (i * numpy.uint64(0x9E3779B9) + key) & numpy.uint64(M32)
    h ^= h >> numpy.uint64(16)
    h = (h * numpy.uint64(0x85EBCA6B)) & numpy.uint64(M32)
    h ^= h >> numpy.uint64(13)
    h = (h * numpy.uint64(0xC2B2AE35)) & numpy.uint64(M32)
    h ^= h >> numpy.uint64(16)
    return h


@cpu_jit(nogil=True)
def _mask_cpu(out, start, key, threshold, scale):
    """out[j] for the elements start + j of the whole mask."""
    for j in prange(out.size):
        if _hash(numpy.uint64(start + j), key) >= threshold:
            out[j] = scale
        else:
            out[j] = 0


@cpu_jit(nogil=True)
def _mask_apply_cpu(x, out, y, start, key, threshold, scale):
    """As _mask_cpu, and y[j] = x[j] * out[j] in the same pass."""
    for j in prange(out.size):
        if _hash(numpy.uint64(start + j), key) >= threshold:
            out[j] = scale
        else:
            out[j] = 0
        y[j] = x[j] * out[j]


def numba_cpu(like, shape, key, rate, x=None):
    """Numba CPU form: one pass, 64-bit arithmetic masked to 32 bits (large masks split
    over the worker threads: each element's value depends on its index only); with x,
    x * mask in the same pass (Dropout's forward at mnist_cnn's (128, 12, 12, 64), 2 cores,
    min of 50: 0.91 ms as the mask then NumPy's multiply, 0.54 ms in one pass)."""
    shape = tuple(int(d) for d in shape)
    _check_x(x, shape)
    out = numpy.empty(int(numpy.prod(shape, dtype=numpy.int64)), dtype=like.dtype)
    args = (numpy.uint64(key & M32), numpy.uint64(threshold_for(rate)),
            like.dtype.type(1.0 / (1.0 - rate)))
    if x is None or x.dtype != like.dtype or not x.flags.c_contiguous:
        _workers.split_batch(out, out.size,
                             lambda a, b: _mask_cpu(out[a:b], numpy.uint64(a), *args))
        return _applied(out.reshape(shape), x)
    flat, y = x.reshape(-1), numpy.empty(x.shape, dtype=x.dtype)
    y_flat = y.reshape(-1)
    _workers.split_batch(out, out.size, lambda a, b: _mask_apply_cpu(
        flat[a:b], out[a:b], y_flat[a:b], numpy.uint64(a), *args))
    return out.reshape(shape), y


@cuda_jit
def _mask_cuda(out, key, threshold, scale, n):
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    m = numpy.uint64(M32)
    for i in range(start, n, step):
        h = (numpy.uint64(i) * numpy.uint64(0x9E3779B9) + key) & m
        h ^= h >> numpy.uint64(16)
        h = (h * numpy.uint64(0x85EBCA6B)) & m
        h ^= h >> numpy.uint64(13)
        h = (h * numpy.uint64(0xC2B2AE35)) & m
        h ^= h >> numpy.uint64(16)
        if h >= threshold:
            out[i] = scale
        else:
            out[i] = 0


def numba_cuda(like, shape, key, rate, x=None):
    """Numba CUDA form: grid-stride loop, one element per thread per step (x * mask by
    CuPy)."""
    return _applied(_cuda_mask(like, shape, key, rate), x)


def _cuda_mask(like, shape, key, rate):
    xp = get_array_module(like)
    n = int(numpy.prod(shape, dtype=numpy.int64))
    out = xp.empty(n, dtype=like.dtype)
    if n:
        blocks, threads = grid_for(n)
        launch(_mask_cuda, blocks, threads, out, numpy.uint64(key & M32),
               numpy.uint64(threshold_for(rate)), like.dtype.type(1.0 / (1.0 - rate)), n)
    return out.reshape(shape)


def dropout_mask(like, shape, key, rate, x=None):
    """Mask of `shape` in `like`'s dtype and device: 1/(1-rate) where kept, else 0; with
    x (of that shape), (mask, x * mask)."""
    return _dispatch.form("dropout_mask", like)(like, shape, key, rate, x)

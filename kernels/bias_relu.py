"""Fused bias + ReLU for a layer's (rows, F) pre-activation, and its backward.

    bias_relu(z, bias) -> z            z = max(z + bias, 0), in place (one pass instead of two)
    relu_bias_grad(dy, y, out=None) -> (dz, bias_grad)
                                       dz = dy where y > 0 else 0, and bias_grad = dz summed
                                       over the rows (one pass instead of two)

`z`/`dy`/`y` are C-contiguous 2-D arrays (rows, F) with F = bias.size (a convolution's
output reshaped to (N*OH*OW, F) is one). NaN stays NaN in the forward, as with
`maximum(z, 0)`. `bias_grad` is float64 (sums over many rows; the caller casts or adds it
to other chunks' sums in a fixed order, so results are deterministic). The Numba CPU form
sums the rows in order per column; the CUDA form sums chunks of 64 rows in parallel, then
the chunks (kernels._cuda_reduce); both agree with the reference (a pairwise NumPy sum) to
rounding.
"""

import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _cuda_reduce, _dispatch
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit, prange

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled


def _check(name, a, f):
    if a.ndim != 2 or a.shape[1] != f:
        raise ShapeError(f"{name}: expected a 2-D (rows, {f}) array, got shape {a.shape}.")


def _check_grad(dy, y, out):
    if dy.ndim != 2 or dy.shape != y.shape:
        raise ShapeError(f"relu_bias_grad: dy {dy.shape} and y {y.shape} must be the same "
                         f"2-D (rows, features) shape.")
    if out is not None and out.shape != dy.shape:
        raise ShapeError(f"relu_bias_grad: out has shape {out.shape}, expected {dy.shape}.")


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def reference(z, bias):
    """Pure NumPy/CuPy form: two in-place passes."""
    _check("bias_relu", z, bias.size)
    xp = get_array_module(z)
    z += bias
    return xp.maximum(z, 0, out=z)


def reference_grad(dy, y, out=None):
    """Pure NumPy/CuPy form: mask, then a float64 column sum."""
    _check_grad(dy, y, out)
    xp = get_array_module(dy, y)
    keep = y > 0
    dz = out if out is not None else xp.empty_like(dy)
    if dz is not dy:
        xp.copyto(dz, dy)
    xp.copyto(dz, 0, where=~keep)  # dy = inf/NaN where y <= 0 gives 0, not NaN
    return dz, dz.sum(axis=0, dtype=numpy.float64)


# ---------------------------------------------------------------- Numba CPU

@cpu_jit(nogil=True)
def _bias_relu_cpu(z, bias):
    rows, f = z.shape
    for r in prange(rows):
        for j in range(f):
            v = z[r, j] + bias[j]
            z[r, j] = 0 if v < 0 else v


@cpu_jit(nogil=True)
def _relu_bias_grad_cpu(dy, y, dz, acc):
    """dz = dy where y > 0, else 0; acc = dz's column sums, row after row (a fixed order),
    zeros added too, as the reference's and max_pool_relu_grad's sums do: branch-free,
    so the loop vectorises (measured (128, 512), one thread: 18.0 -> 15.7 us; same bits)."""
    rows, f = dy.shape
    zero = dy.dtype.type(0)
    for j in range(f):
        acc[j] = 0
    for r in range(rows):  # serial over rows: a fixed summation order
        for j in range(f):
            v = dy[r, j] if y[r, j] > 0 else zero
            dz[r, j] = v
            acc[j] += v


def numba_cpu(z, bias):
    """Numba CPU form: one in-place pass."""
    _check("bias_relu", z, bias.size)
    if not z.flags.c_contiguous:
        return reference(z, bias)
    _bias_relu_cpu(z, numpy.ascontiguousarray(bias, dtype=z.dtype))
    return z


def numba_cpu_grad(dy, y, out=None):
    """Numba CPU form: one pass writes dz and accumulates the column sums (float64)."""
    _check_grad(dy, y, out)
    dy, y = numpy.ascontiguousarray(dy), numpy.ascontiguousarray(y)
    dz = out if out is not None and out.flags.c_contiguous else numpy.empty_like(dy)
    acc = numpy.empty(dy.shape[1], dtype=numpy.float64)
    _relu_bias_grad_cpu(dy, y, dz, acc)
    if out is not None and dz is not out:
        out[...] = dz
        dz = out
    return dz, acc


# ---------------------------------------------------------------- Numba CUDA

@cuda_jit
def _bias_relu_cuda(z, bias, total):
    f = bias.size
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):
        r = e // f
        j = e - r * f
        v = z[r, j] + bias[j]
        z[r, j] = 0 if v < 0 else v


@cuda_jit
def _relu_mask_partials_cuda(dy, y, dz, part, chunk_rows):
    """The mask and the first level of its column sums (kernels._cuda_reduce) in one pass."""
    rows, f = dy.shape
    for e in range(cuda.grid(1), part.shape[0] * f, cuda.gridsize(1)):
        k = e // f
        j = e - k * f
        s = part[k, j]  # 0, as a float64 (a literal 0.0 would be float32 in the simulator)
        for r in range(k * chunk_rows, min(rows, (k + 1) * chunk_rows)):
            v = dy[r, j] if y[r, j] > 0 else 0
            dz[r, j] = v
            s += v
        part[k, j] = s


def numba_cuda(z, bias):
    """Numba CUDA form: one thread per element, in place."""
    _check("bias_relu", z, bias.size)
    xp = get_array_module(z)
    if not z.flags.c_contiguous:
        return reference(z, bias)
    if z.size:
        blocks, threads = grid_for(z.size)
        launch(_bias_relu_cuda, blocks, threads, z, xp.ascontiguousarray(bias, dtype=z.dtype),
               z.size)
    return z


def numba_cuda_grad(dy, y, out=None):
    """Numba CUDA form: the mask and the first level of its column sums in one pass (one
    thread per chunk of rows of a column), then the partials summed (kernels._cuda_reduce)."""
    _check_grad(dy, y, out)
    xp = get_array_module(dy, y)
    dy, y = xp.ascontiguousarray(dy), xp.ascontiguousarray(y)
    dz = out if out is not None and out.flags.c_contiguous else xp.empty_like(dy)
    acc = xp.zeros(dy.shape[1], dtype=numpy.float64)
    if dy.size:
        part = _cuda_reduce.zeros(xp, *dy.shape)
        launch(_relu_mask_partials_cuda, *grid_for(part.size), dy, y, dz, part,
               _cuda_reduce.CHUNK_ROWS)
        _cuda_reduce.finish(xp, part, acc)
    if out is not None and dz is not out:
        out[...] = dz
        dz = out
    return dz, acc


# ---------------------------------------------------------------- public

def bias_relu(z, bias):
    """z = max(z + bias, 0) in place for a (rows, F) array; returns z."""
    return _dispatch.form("bias_relu", z, bias)(z, bias)


def relu_bias_grad(dy, y, out=None):
    """(dz, bias_grad float64): ReLU's backward from its output y, and dz's column sums."""
    return _dispatch.form("relu_bias_grad", dy, y)(dy, y, out)

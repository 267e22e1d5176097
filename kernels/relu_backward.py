"""ReLU backward: dx = dy where x > 0, else 0 (0 at x == 0 and where x is NaN).

One elementwise pass instead of `dy * (x > 0)` (which also turns dy = inf/NaN at
x <= 0 into NaN). Any shape; the result has dy's dtype; `out` may be dy itself.
"""

import numpy

from ..backend import get_array_module
from ..errors import InvalidArgumentError, ShapeError
from . import _dispatch
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit, prange

cuda = None  # bound to numba.cuda when the CUDA kernel is first compiled


def _check(dy, x, out):
    if dy.shape != x.shape:
        raise ShapeError(f"relu_backward: dy has shape {dy.shape} but x has shape {x.shape}.")
    if out is not None:
        if out.shape != dy.shape:
            raise ShapeError(f"relu_backward: out has shape {out.shape}, expected {dy.shape}.")
        if out.dtype != dy.dtype:
            raise InvalidArgumentError(f"relu_backward: out has dtype {out.dtype}, "
                                       f"expected dy's dtype {dy.dtype}.")


def reference(dy, x, out=None):
    """Pure NumPy/CuPy form."""
    _check(dy, x, out)
    xp = get_array_module(dy, x)
    keep = x > 0
    if out is None:
        return xp.where(keep, dy, xp.zeros((), dtype=dy.dtype))
    if out is not dy:
        xp.copyto(out, dy)
    xp.copyto(out, 0, where=~keep)
    return out


def _flat_inputs(dy, x, out, xp):
    """Contiguous 1-D views (copies only when needed) and a flat result buffer."""
    d = xp.ascontiguousarray(dy).reshape(-1)
    m = xp.ascontiguousarray(x).reshape(-1)
    direct = out is not None and out.flags.c_contiguous
    res = out.reshape(-1) if direct else xp.empty(d.shape, dtype=dy.dtype)
    return d, m, res, direct


def _finish(res, dy, out, direct):
    if out is None:
        return res.reshape(dy.shape)
    if not direct:
        out[...] = res.reshape(out.shape)
    return out


@cpu_jit()
def _relu_backward_cpu(dy, x, dx):
    for i in prange(dy.size):
        if x[i] > 0:
            dx[i] = dy[i]
        else:
            dx[i] = 0


def numba_cpu(dy, x, out=None):
    """Numba CPU form: one parallel pass over the flattened arrays."""
    _check(dy, x, out)
    d, m, res, direct = _flat_inputs(dy, x, out, numpy)
    _relu_backward_cpu(d, m, res)
    return _finish(res, dy, out, direct)


@cuda_jit
def _relu_backward_cuda(dy, x, dx, n):
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for i in range(start, n, step):
        if x[i] > 0:
            dx[i] = dy[i]
        else:
            dx[i] = 0


def numba_cuda(dy, x, out=None):
    """Numba CUDA form: grid-stride loop, one element per thread per step."""
    _check(dy, x, out)
    xp = get_array_module(dy, x)
    d, m, res, direct = _flat_inputs(dy, x, out, xp)
    n = d.size
    if n:
        blocks, threads = grid_for(n)
        launch(_relu_backward_cuda, blocks, threads, d, m, res, n)
    return _finish(res, dy, out, direct)


def relu_backward(dy, x, out=None):
    """dx = dy where x > 0 else 0, in dy's dtype (into `out` when given)."""
    return _dispatch.form("relu_backward", dy, x)(dy, x, out)

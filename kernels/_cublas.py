"""cuBLAS's GEMM with alpha and beta for CuPy arrays (`cupy.cublas.gemm`): out = alpha * a @ b
+ beta * out in one call, where CuPy's `matmul` would need a product, a scaling and an addition
(three launches and a temporary). `kernels._workers.matmul` tries it after MKL, so Dense's
folded SGD update (kernel -= lr * x^T dz inside the weight-gradient GEMM) is one cuBLAS call
on the GPU too (`gemm_accumulates`).

It applies to CuPy float32/float64 2-D arrays of one dtype whose operands are C- or
F-contiguous and whose out is C-contiguous and shares no memory with them (CuPy then calls
cuBLAS directly, no copies); not under ACCELNET_KERNELS=reference (the plain CuPy ops there,
as MKL steps aside on the CPU). Elsewhere `gemm` returns None and the caller multiplies as
before.
"""
import importlib

import numpy

from ..backend import get_array_module, is_device_array
from . import _dispatch

_modules = {}  # array module name -> its cublas module, or None where it has none
_FLOATS = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))


def _cublas(array):
    module = type(array).__module__.split(".")[0]
    if module not in _modules:
        try:
            _modules[module] = importlib.import_module(module + ".cublas")
        except Exception:  # an array module without cuBLAS bindings
            _modules[module] = None
    return _modules[module]


def applies(array):
    """Whether products on arrays like `array` can take alpha/beta inside cuBLAS."""
    return (is_device_array(array) and array.dtype in _FLOATS
            and _dispatch._requested() != "reference" and _cublas(array) is not None)


def _contiguous(array):
    flags = array.flags
    return flags.c_contiguous or flags.f_contiguous


def gemm(a, b, out, alpha=1.0, beta=0.0):
    """out = alpha * a @ b + beta * out by cuBLAS, or None where that does not apply (see the
    module docstring; out None takes a new C-ordered array when beta is 0)."""
    if not applies(a) or not is_device_array(b) or a.ndim != 2 or b.ndim != 2:
        return None
    if a.dtype != b.dtype or a.shape[1] != b.shape[0] or not (_contiguous(a) and _contiguous(b)):
        return None
    xp = get_array_module(a)
    if out is None:
        if beta != 0:
            return None
        out = xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    elif (not is_device_array(out) or out.shape != (a.shape[0], b.shape[1])
          or out.dtype != a.dtype or not out.flags.c_contiguous
          or xp.may_share_memory(out, a) or xp.may_share_memory(out, b)):
        return None
    alpha = alpha if is_device_array(alpha) else float(alpha)
    beta = beta if is_device_array(beta) else float(beta)
    return _cublas(a).gemm("N", "N", a, b, out=out, alpha=alpha, beta=beta)


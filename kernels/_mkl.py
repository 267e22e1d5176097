"""Intel MKL's GEMM for CPU matrix products, where the `mkl` wheel is installed.

On the bench's 2-core Sapphire Rapids, OpenBLAS 0.3.31 (NumPy's) ran the MLP's products
(128 x 784 x 512 and its kin) at 140-170 GFLOPS a core against MKL's ~193 (MKL, called
here, and PyTorch's MKL alike): the five float32 GEMMs of one MLP step took 1.43 ms in NumPy
against 1.10 ms in MKL on two threads (min of 200, hot). So where `libmkl_rt` can be loaded
(`pip install accelnet[mkl]`), `gemm` hands float32/float64 products to `cblas_?gemm`;
elsewhere it answers None and the caller runs NumPy's matmul. MKL runs on the GNU OpenMP
runtime (PyTorch's too, so one thread pool serves both in one process); without libgomp, or
with ACCELNET_MKL=0 or ACCELNET_KERNELS=reference (read at every call), it is not used (it
is still loaded where installed: uninstall the wheel to keep it out of the process).
`gemm` also takes alpha and beta (out = alpha a @ b + beta out): the SGD update folded into
the weight gradient's product (Dense.backward) needs that, and NumPy's matmul has neither.

Threads: threadpoolctl sees MKL as a BLAS library (accelnet.backend loads it first), so
`worker_step` and `adaptive_blas_threads` set its thread count together with OpenBLAS's.
Bits: MKL and OpenBLAS round differently; a given MKL, CPU and thread count repeat them.
A child process made by fork() leaves MKL alone (`_forked`): its OpenMP threads stay behind.
"""
import ctypes
import ctypes.util
import os
import sys

import numpy

from . import _dispatch

ENV_VAR = "ACCELNET_MKL"
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
_INT_MAX = 2 ** 31 - 1
_state = []  # [None] (unavailable) or [(library, {dtype: cblas function})]
_GEMM_ARGS = [ctypes.c_int] * 6 + [None, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                   ctypes.c_int, None, ctypes.c_void_p, ctypes.c_int]


def _candidates():
    """Where libmkl_rt may be: the environment's lib folder (the wheel's place), the loader's path."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for version in ("3", "2"):
            yield os.path.join(prefix, "lib", f"libmkl_rt.so.{version}")
    found = ctypes.util.find_library("mkl_rt")
    if found:
        yield found


def _load():
    try:  # MKL's GNU threading layer needs libgomp in the process (PyTorch's, if loaded)
        ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None
    for path in _candidates():
        if not os.path.exists(path) and os.sep in path:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if lib.MKL_Set_Threading_Layer(3) != 3:  # MKL_THREADING_GNU
            return None
        functions = {}
        for dtype, name, scalar in ((numpy.float32, "cblas_sgemm", ctypes.c_float),
                                    (numpy.float64, "cblas_dgemm", ctypes.c_double)):
            fn = getattr(lib, name)
            fn.restype = None
            fn.argtypes = [scalar if t is None else t for t in _GEMM_ARGS]
            functions[numpy.dtype(dtype)] = fn
        lib.MKL_Set_Num_Threads_Local.restype = ctypes.c_int
        lib.MKL_Set_Num_Threads_Local.argtypes = [ctypes.c_int]
        return lib, functions
    return None


def library():
    """The loaded MKL and its GEMMs, or None where it cannot be loaded (found once)."""
    if not _state:
        _state.append(_load())
        if _state[0] is not None and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_forked)
    return _state[0]


def _forked():
    """In a child made by fork(): GNU OpenMP's threads did not come along, and the first
    parallel product would wait for them forever (measured: a hang). The child's products
    go to NumPy instead."""
    _state[:] = [None]


def enabled():
    """Whether `gemm` may run MKL: loadable, and neither ACCELNET_MKL=0 nor reference kernels."""
    value = _dispatch._environment_value(ENV_VAR)
    if value is not None and value.strip() == "0":
        return False
    if _dispatch._requested() == "reference":
        return False
    if not _state:
        from ..backend import _blas_controller
        _blas_controller()  # loads MKL before threadpoolctl looks, so it controls MKL's threads
    return library() is not None


def sgemm_address():
    """The address of the loaded MKL's cblas_sgemm (kernels.dense_step calls it from
    compiled code); None where MKL is not loaded."""
    lib = library()
    return None if lib is None else ctypes.cast(lib[0].cblas_sgemm, ctypes.c_void_p).value


def _operand(array):
    """(transpose flag, leading dimension) of a 2-D array as row-major BLAS sees it, or None
    when neither axis is contiguous (or the data is unaligned)."""
    rows, cols = array.shape
    step0, step1 = array.strides
    size = array.itemsize
    if not array.flags.aligned:
        return None
    if cols == 1 or step1 == size:
        lead = step0 // size if rows > 1 else cols
        if step0 % size == 0 and lead >= cols:
            return _NO_TRANS, lead
    if rows == 1 or step0 == size:
        lead = step1 // size if cols > 1 else rows
        if step1 % size == 0 and lead >= rows:
            return _TRANS, lead
    return None


def gemm(a, b, out=None, alpha=1.0, beta=0.0, threads=None):
    """out = alpha * a @ b + beta * out by MKL (out allocated when None; beta needs out) for
    2-D NumPy float32/float64 arrays of one dtype, on `threads` threads for this call where
    given (MKL's thread-local setting, which outranks the process-wide limit that
    `worker_step` sets), else on MKL's current count; None where MKL does not apply (not
    `enabled`, another dtype or device, an empty product, an operand with no contiguous axis,
    out not row-contiguous or read-only, a dimension past 32-bit BLAS): the caller falls back
    to NumPy."""
    if (type(a) is not numpy.ndarray or type(b) is not numpy.ndarray or a.ndim != 2
            or b.ndim != 2 or a.dtype != b.dtype or not enabled()):
        return None
    fn = _state[0][1].get(a.dtype)
    m, k = a.shape
    n = b.shape[1]
    if fn is None or b.shape[0] != k or min(m, n, k) == 0:
        return None
    op_a, op_b = _operand(a), _operand(b)
    if op_a is None or op_b is None:
        return None
    if out is not None and (numpy.may_share_memory(out, a) or numpy.may_share_memory(out, b)):
        return None  # BLAS reads its operands while it writes out
    if out is None:
        if beta != 0:
            return None
        out = numpy.empty((m, n), a.dtype)
    elif (type(out) is not numpy.ndarray or out.shape != (m, n) or out.dtype != a.dtype
          or not out.flags.aligned or not out.flags.writeable
          or (n > 1 and out.strides[1] != out.itemsize)
          or out.strides[0] % out.itemsize or (m > 1 and out.strides[0] < n * out.itemsize)):
        return None  # NumPy's matmul then writes it, or says why it cannot
    ldc = out.strides[0] // out.itemsize if m > 1 else n
    if max(m, n, k, op_a[1], op_b[1], ldc) > _INT_MAX:  # cblas takes 32-bit ints
        return None
    args = (_ROW_MAJOR, op_a[0], op_b[0], m, n, k, alpha, a.ctypes.data, op_a[1],
            b.ctypes.data, op_b[1], beta, out.ctypes.data, ldc)
    if threads is None:
        fn(*args)
        return out
    set_local = _state[0][0].MKL_Set_Num_Threads_Local
    previous = set_local(int(threads))  # 0: this thread follows the process-wide count
    try:
        fn(*args)
    finally:
        set_local(previous)
    return out

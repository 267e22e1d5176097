"""A cheaper numba-cuda kernel launch (on by default; ACCELNET_CUDA_FAST_LAUNCH=0 turns it off).

On an H100 a numba-cuda launch from accelnet costs ~0.28 ms of host time through numba's own
launch and ~0.06 ms through this one, against ~0.05 for a CuPy op
(bench/results/gpu_check_vm_20261127-043300, smoke `launch_overhead_us`); with it the all-numba
training arm is the fastest on the MLP and mnist_cnn at batch 128 and 1024. numba wraps
every CuPy argument in a device-array view, types it, looks up the overload and marshals the
parameters in Python at each call. Here the first launch of a kernel for a given argument
signature goes through numba as usual (it compiles and checks); we then keep that overload's
cuda.core kernel and argument types, keyed by what we can read off the arguments cheaply
(dtype, ndim and contiguity of each array; the type of each scalar), and later launches build
numba's parameter list directly and call the same cuda.core `launch` numba calls.

numba-cuda's kernel ABI for an array argument (numba_cuda's `_Kernel._prepare_args`, 0.30):
meminfo, parent (both 0), nitems, itemsize, data pointer, shape[ndim], strides[ndim] in bytes;
integers as ctypes of their numba type, float32/float64 as c_float/c_double, booleans as they are.
A kernel compiled in debug mode, cooperative, with argument extensions, specialised by launch
configuration, or with an argument type outside that list keeps numba's own launch. Because that
ABI is numba-cuda's internals, the GPU backend checks it once per process when it starts
(`kernels._cuda.check_fast_launch`: a strided array and both scalar kinds, numba's launch then
this one, results compared); if the check fails, this path stays off with a warning that says why.
"""
import ctypes
import os

from ..backend import is_device_array

ENV_VAR = "ACCELNET_CUDA_FAST_LAUNCH"

_entries = {}  # (id(dispatcher), signature key) -> (kernel, argument types) or None
_core_streams = {}  # id(numba stream) -> (numba stream, cuda.core stream)


_check = {}  # "problem": why the start-up check turned the direct launch off (None: it passed)


def enabled():
    """Whether launches take the fast path: unless ACCELNET_CUDA_FAST_LAUNCH=0 (read at every
    call) or the start-up check failed."""
    return os.environ.get(ENV_VAR, "1").strip() != "0" and _check.get("problem") is None


def record_check(problem):
    """Keep the start-up check's verdict (None: passed; else why, which turns this path off)."""
    _check["problem"] = problem
    if problem:
        _entries.clear()


def check_problem():
    """Why the start-up check turned the direct launch off (None: it passed or never ran)."""
    return _check.get("problem")


def _layout(a):
    flags = a.flags
    return "C" if flags.c_contiguous else "F" if flags.f_contiguous else "A"


def signature_key(args):
    """What identifies numba's overload for these arguments, read without numba's typing."""
    key = []
    for a in args:
        if is_device_array(a):  # by type: CuPy's __cuda_array_interface__ builds a dict
            key.append((a.dtype.str, a.ndim, _layout(a)))
        else:
            key.append(type(a) if not hasattr(a, "dtype") else (type(a), a.dtype.str))
    return tuple(key)


def array_params(a):
    """numba-cuda's kernel parameters for a device array (meminfo, parent, nitems, itemsize,
    data, shape..., strides in bytes...)."""
    return [0, 0, a.size, a.dtype.itemsize, a.data.ptr, *a.shape, *a.strides]


def scalar_param(ty, value):
    """numba-cuda's kernel parameter for a scalar of numba type `ty` (None: not handled here)."""
    from numba.core import types
    if isinstance(ty, types.Boolean):
        return value
    if isinstance(ty, types.Integer):
        return getattr(ctypes, f"c_{ty}")(value)
    if ty == types.float64:
        return ctypes.c_double(value)
    if ty == types.float32:
        return ctypes.c_float(value)
    return None


def params(argument_types, args):
    """The full parameter list, or None when an argument type is not one handled here."""
    from numba.core import types
    out = []
    for ty, value in zip(argument_types, args):
        if isinstance(ty, types.Array):
            out.extend(array_params(value))
            continue
        param = scalar_param(ty, value)
        if param is None:
            return None
        out.append(param)
    return out


def remember(dispatcher, key, converted_args):
    """After numba's own launch: keep the overload it used for `key`, if the fast path can
    launch it (else remember that it cannot)."""
    entry = None
    try:
        argtypes = tuple(dispatcher.typeof_pyval(a) for a in converted_args)
        kernel = dispatcher.overloads.get(argtypes)
        if (kernel is not None and not kernel.debug and not kernel.cooperative
                and not kernel.extensions and not getattr(kernel, "launch_config_sensitive", False)
                and not getattr(dispatcher, "_launch_config_sensitive", False)):
            entry = (kernel._codelibrary.get_cufunc().kernel, tuple(kernel.argument_types))
    except Exception:  # another numba-cuda's internals: numba's launch stays
        entry = None
    _entries[(id(dispatcher), key)] = entry


def try_launch(dispatcher, key, grid, block, stream, args):
    """Launch through the remembered overload; False when there is none (numba launches)."""
    entry = _entries.get((id(dispatcher), key), False)
    if not entry:
        return False
    kernel, argument_types = entry
    values = params(argument_types, args)
    if values is None:
        _entries[(id(dispatcher), key)] = None
        return False
    from numba.cuda import dispatcher as numba_dispatcher
    if numba_dispatcher.CUDA_CORE_GE_1_0:
        config = numba_dispatcher.LaunchConfig(grid=grid, block=block, shmem_size=0,
                                               is_cooperative=False)
    else:
        config = numba_dispatcher.LaunchConfig(grid=grid, block=block, shmem_size=0,
                                               cooperative_launch=False)
    numba_dispatcher.launch(core_stream(stream), config, kernel, *values)
    return True


def core_stream(stream):
    """The cuda.core stream numba's launch makes of a numba stream (`_to_core_stream`), once
    per numba stream instead of once per launch."""
    found = _core_streams.get(id(stream))
    if found is None or found[0] is not stream:
        from numba.cuda.cudadrv import driver
        found = _core_streams[id(stream)] = (stream, driver._to_core_stream(stream))
    return found[1]


def known(dispatcher, key):
    """Whether `key` was seen for this kernel (remembered as launchable or not)."""
    return (id(dispatcher), key) in _entries

"""CUDA plumbing for the kernels; the only module that imports `numba.cuda` (lazily).

- `cuda_jit(fn)`: lazy `numba.cuda.jit`; compiled per argument types on first launch.
  Kernel sources refer to a module-level name `cuda` (set to None in their module);
  it is bound to `numba.cuda` when the kernel is first compiled.
- `launch(kernel, grid, block, *args)`: runs on CuPy's current stream (ordered with the
  surrounding CuPy work, no host sync); CuPy arrays are wrapped without a copy and without
  a stream object of their own (one cached stream per CuPy stream, not one per argument).
  Repeat launches skip numba's per-call wrapping and typing (`_cuda_launch`; off with
  ACCELNET_CUDA_FAST_LAUNCH=0).
- `probe_toolchain(xp)`: compile and launch a one-element kernel once, when the GPU
  backend starts, then check the direct launch against numba's (`check_fast_launch`).
  numba-cuda installed without its `[cu12]`/`[cu13]` extra (no NVVM/NVRTC) fails there, not
  inside `fit`: we warn once, naming the extra, and the dispatcher runs the reference forms
  (`toolchain_problem()`).
- Under Numba's CUDA simulator (`NUMBA_ENABLE_CUDASIM=1`) "device arrays" are NumPy
  arrays: kernels launch plainly, on tiny grids (the simulator runs each thread in Python);
  objects with `__cuda_array_interface__` (the test suite's CuPy stand-in) are viewed as
  the host arrays they are there.

A missing or broken numba-cuda raises ImportError: the CUDA forms never silently degrade.
NumPy 2.5 removed `np.row_stack`, which numba-cuda 0.30.x (maintenance mode, NVIDIA/numba-cuda#907)
still overloads at import: `cuda_module()` restores that one alias (to `np.vstack`, what it always
was) before the import, so numba-cuda's kernels run on NumPy 2.5 too.
"""
import math
import threading

from . import _cuda_launch

_lock = threading.Lock()
_streams = {}


# aliases NumPy removed that numba-cuda still registers overloads for at import time
_REMOVED_NUMPY_ALIASES = {"row_stack": "vstack"}


def restore_numpy_aliases():
    """Put back NumPy aliases numba-cuda's import needs (each exactly the function it named)."""
    import numpy
    restored = []
    for alias, target in _REMOVED_NUMPY_ALIASES.items():
        if not hasattr(numpy, alias):
            setattr(numpy, alias, getattr(numpy, target))
            restored.append(alias)
    return restored


def cuda_module():
    """`numba.cuda`, imported on first use."""
    try:
        restore_numpy_aliases()
        from numba import cuda
    except Exception as exc:
        raise ImportError(f"accelnet's CUDA kernels need numba-cuda, whose import failed "
                          f"({type(exc).__name__}: {exc}); install it with "
                          f"pip install 'accelnet[gpu-cuda12]' (or gpu-cuda13).") from exc
    return cuda


def simulator():
    """True when Numba runs CUDA kernels in its Python simulator."""
    import numba
    return bool(numba.config.ENABLE_CUDASIM)


class LazyCudaKernel:
    """A kernel source that becomes a `numba.cuda.jit` dispatcher on first use."""

    def __init__(self, fn):
        self.py_func = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._dispatcher = None

    def dispatcher(self):
        if self._dispatcher is None:
            with _lock:
                if self._dispatcher is None:
                    cuda = cuda_module()
                    if self.py_func.__globals__.get("cuda") is None:
                        self.py_func.__globals__["cuda"] = cuda
                    self._dispatcher = cuda.jit(self.py_func)
        return self._dispatcher


def cuda_jit(fn):
    """Decorator: compile `fn` with `numba.cuda.jit` when first launched."""
    return LazyCudaKernel(fn)


class _Interface:
    """An array interface without the producer's stream: we launch on CuPy's current
    stream ourselves, so Numba need not build a stream object for every argument."""

    def __init__(self, cai, owner, key):
        self.owner = owner  # keeps the memory alive while Numba's view exists
        setattr(self, key, {k: v for k, v in cai.items() if k != "stream"})


def as_cuda(a):
    """A CuPy array as a Numba device array (a view, no copy, no stream sync). In the
    simulator, an object with `__cuda_array_interface__` becomes the host view it is there.
    NumPy arrays (the simulator's device arrays) and scalars pass through."""
    cai = getattr(a, "__cuda_array_interface__", None)
    if cai is None:
        return a
    if simulator():
        import numpy
        return numpy.asarray(_Interface(cai, a, "__array_interface__"))
    return cuda_module().as_cuda_array(_Interface(cai, a, "__cuda_array_interface__"),
                                       sync=False)


def grid_for(total, threads=256):
    """(blocks, threads) for a grid-stride loop over `total` items."""
    if simulator():
        threads = 8
        return max(1, min(math.ceil(total / threads), 4)), threads
    return max(1, min(math.ceil(total / threads), 1 << 20)), threads


def _current_stream(cuda):
    import cupy

    ptr = cupy.cuda.get_current_stream().ptr
    key = (cupy.cuda.Device().id, ptr)
    stream = _streams.get(key)
    if stream is None:
        stream = _streams[key] = cuda.external_stream(ptr)
    return stream


def launch(kernel, grid, block, *args):
    """Launch `kernel[grid, block]` on CuPy's current stream (plainly in the simulator)."""
    dispatcher = kernel.dispatcher() if isinstance(kernel, LazyCudaKernel) else kernel
    if simulator():
        dispatcher[grid, block](*[as_cuda(a) for a in args])
        return
    cuda = cuda_module()
    stream = _current_stream(cuda)
    if _cuda_launch.enabled():  # numba's launch once per argument signature, then a direct one
        key = _cuda_launch.signature_key(args)
        if _cuda_launch.try_launch(dispatcher, key, grid, block, stream, args):
            return
        converted = [as_cuda(a) for a in args]
        dispatcher[grid, block, stream](*converted)
        if not _cuda_launch.known(dispatcher, key):
            _cuda_launch.remember(dispatcher, key, converted)
        return
    dispatcher[grid, block, stream](*[as_cuda(a) for a in args])


_toolchain = {}


@cuda_jit
def _probe_kernel(out):
    out[0] = 1.0


def probe_toolchain(xp):
    """Compile and launch a one-element kernel on `xp` (CuPy) once per process; on
    failure warn once and make `toolchain_problem()` report why. Returns the problem."""
    if "problem" not in _toolchain:
        try:
            out = xp.zeros(1, dtype=xp.float32)
            launch(_probe_kernel, 1, 1, out)
            problem = None if float(out[0]) == 1.0 else "the probe kernel wrote nothing"
        except Exception as exc:  # ImportError, CudaSupportError, DynamicLibNotFoundError, ...
            problem = f"{type(exc).__name__}: {str(exc)[:300]}"
        _toolchain["problem"] = problem
        if not problem and not simulator():
            check_fast_launch(xp)
        if problem:
            import warnings
            warnings.warn(
                f"accelnet: numba-cuda cannot compile or launch kernels here ({problem}); "
                f"the GPU runs the CuPy reference forms of every kernel. Install numba-cuda "
                f"with its compiler libraries: pip install 'numba-cuda[cu13]' (CUDA 13) or "
                f"'numba-cuda[cu12]' (CUDA 12), or the CUDA toolkit.", RuntimeWarning,
                stacklevel=3)
    return _toolchain["problem"]


@cuda_jit
def _probe_params_kernel(out, x, shift, scale):
    for i in range(x.shape[0]):  # one thread: every parameter kind, no grid arithmetic
        for j in range(x.shape[1]):
            out[i, j] = x[i, j] * scale + shift


def check_fast_launch(xp):
    """Launch a kernel with a strided 2-D array, an integer and a float through numba, then
    with other shapes and values through `_cuda_launch`, and compare with CuPy's result; a
    mismatch or error turns the direct launch off for the process, with a warning. Returns
    the problem (None: passed)."""
    problem = None
    try:
        dispatcher = _probe_params_kernel.dispatcher()
        stream = _current_stream(cuda_module())
        calls = []
        for rows, shift, scale in ((3, 1, 2.0), (5, -3, 0.5)):
            x = xp.arange(rows * 4, dtype=xp.float32).reshape(rows, 4)[:, ::2]  # strided
            calls.append((xp.zeros((rows, 2), dtype=xp.float32), x, shift, scale))
        key = _cuda_launch.signature_key(calls[0])
        converted = [as_cuda(a) for a in calls[0]]
        dispatcher[1, 1, stream](*converted)
        _cuda_launch.remember(dispatcher, key, converted)
        if _cuda_launch.signature_key(calls[1]) != key or not _cuda_launch.try_launch(
                dispatcher, key, 1, 1, stream, calls[1]):
            problem = "this numba-cuda's kernel could not be launched directly"
        else:
            for out, x, shift, scale in calls:
                if not bool(xp.array_equal(out, x * xp.float32(scale) + xp.float32(shift))):
                    problem = (f"the direct launch gave a wrong result for a ({x.shape[0]}, 2) "
                               f"strided array")
    except Exception as exc:  # another numba-cuda's internals
        problem = f"{type(exc).__name__}: {str(exc)[:300]}"
    _cuda_launch.record_check(problem)
    if problem:
        import warnings
        warnings.warn(f"accelnet: numba-cuda's launches take numba's own (slower) path: the "
                      f"direct launch's start-up check failed ({problem}).", RuntimeWarning,
                      stacklevel=3)
    return problem


def toolchain_problem():
    """Why numba-cuda forms cannot run (None when they can or were never probed)."""
    return _toolchain.get("problem")

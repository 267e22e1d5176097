"""CUDA plumbing for the kernels; the only module that imports `numba.cuda` (lazily).

- `cuda_jit(fn)`: lazy `numba.cuda.jit`; compiled per argument types on first launch.
  Kernel sources refer to a module-level name `cuda` (set to None in their module);
  it is bound to `numba.cuda` when the kernel is first compiled.
- `launch(kernel, grid, block, *args)`: runs on CuPy's current stream (ordered with the
  surrounding CuPy work, no host sync); CuPy arrays are wrapped without a copy.
- Under Numba's CUDA simulator (`NUMBA_ENABLE_CUDASIM=1`) "device arrays" are NumPy
  arrays: kernels launch plainly, on tiny grids (the simulator runs each thread in Python).

A missing or broken numba-cuda raises ImportError: the CUDA forms never silently degrade.
"""
import math
import threading

_lock = threading.Lock()
_streams = {}


def cuda_module():
    """`numba.cuda`, imported on first use."""
    try:
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


def as_cuda(a):
    """A CuPy array as a Numba device array (a view, no copy, no stream sync).
    NumPy arrays (the simulator's device arrays) and scalars pass through."""
    if hasattr(a, "__cuda_array_interface__") and not simulator():
        # sync=False: we launch on the producer's (CuPy's current) stream ourselves.
        return cuda_module().as_cuda_array(a, sync=False)
    return a


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
        dispatcher[grid, block](*args)
        return
    cuda = cuda_module()
    dispatcher[grid, block, _current_stream(cuda)](*[as_cuda(a) for a in args])

"""Lazy CPU JIT: `cpu_jit()` wraps a kernel in `numba.njit(cache=True)` — serial by
default, `parallel=True` with ACCELNET_NUMBA_PARALLEL=1 (see `parallel_enabled`) — compiled
on its first call, never at import (importing Numba alone costs ~0.3 s).

Caching: compiled code goes to `__pycache__` next to the source, else Numba's user-wide
cache, or to `NUMBA_CACHE_DIR` when set. When no cache location is writable (read-only
install), Numba refuses `cache=True`; we then compile with `cache=False` instead of failing.
`fastmath` is never used: the kernels must match the NumPy references (NaN/inf included).

Threads: `prange` loops run on Numba's thread pool, sized by `NUMBA_NUM_THREADS` (read at
Numba import) and limited at run time by `numba.set_num_threads(n)`. Our code never runs a
`prange` region concurrently with a BLAS call (kernels and GEMMs alternate on the calling
thread), so the two pools do not oversubscribe the cores; limit BLAS separately
(e.g. threadpoolctl / OMP_NUM_THREADS) if you want a hard cap. On a machine already busy
with other processes, GNU OpenMP's spin-waiting (Numba's default "omp" layer on Linux)
can stall every prange call for a time slice (measured: 0.2 ms -> 3 ms per im2col call);
`OMP_WAIT_POLICY=PASSIVE`, `NUMBA_NUM_THREADS=1`, or, for single-threaded callers only,
`NUMBA_THREADING_LAYER=workqueue` avoid it. We leave these global settings to the user.

Kernel sources use the module-level name `prange`, imported from here as plain `range`
(so a kernel also runs as ordinary Python); at compile time it is rebound to
`numba.prange` in the kernel's module, which is what turns the loop parallel. A kernel
may call helpers that are themselves `cpu_jit(parallel=False, inline="always")`
functions of its module: they are compiled first and bound in their place.
"""
import functools
import os
import threading
import types
import warnings

prange = range  # placeholder, rebound to numba.prange in kernel modules when compiling

_lock = threading.RLock()  # re-entrant: compiling a kernel compiles its helpers
_warned = False


class LazyCpuKernel:
    """A Python function that becomes a Numba dispatcher on its first call."""

    def __init__(self, fn, opts):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self._opts = opts
        self._dispatcher = None

    def dispatcher(self):
        """The compiled Numba dispatcher (created on first use)."""
        if self._dispatcher is None:
            with _lock:
                if self._dispatcher is None:
                    self._dispatcher = _njit(self.py_func, self._opts)
        return self._dispatcher

    def __call__(self, *args):
        dispatcher = self._dispatcher
        if dispatcher is None:
            dispatcher = self.dispatcher()
        return dispatcher(*args)


def serial_dispatcher(kernel):
    """A serial build of a `cpu_jit` kernel, for calling from another compiled function.
    A caller's cached machine code has its callees compiled into it, and the cache does not
    know which build a callee was: a callee built parallel in one process
    (ACCELNET_NUMBA_PARALLEL=1) ended up in a cache that a serial process then loaded, and
    crashed (kernels.dense_step, found by the busy bench). Serial callees are always safe."""
    return serial_kernel(kernel).dispatcher()


def serial_kernel(kernel):
    """A lazy serial build of a `cpu_jit` kernel (see `serial_dispatcher`), to bind as a
    module-level name that other kernels of that module call: compiled with its first caller."""
    return LazyCpuKernel(kernel.py_func, dict(getattr(kernel, "_opts", {}), parallel=False))


def _njit(fn, opts):
    import numba

    if fn.__globals__.get("prange") is range:
        fn.__globals__["prange"] = numba.prange
    for name in fn.__code__.co_names:  # helpers called by the kernel: compile them first
        helper = fn.__globals__.get(name)
        if isinstance(helper, LazyCpuKernel):
            fn.__globals__[name] = helper.dispatcher()
    opts = dict(opts)
    opts.pop("fastmath", None)
    opts.setdefault("parallel", parallel_enabled())
    if not opts["parallel"]:
        fn = _serial_twin(fn)
    try:
        return numba.njit(cache=True, **opts)(fn)
    except (RuntimeError, OSError) as exc:  # "cannot cache function ...: no locator available"
        _warn_once(f"accelnet.kernels: no writable Numba cache ({exc}); compiling without "
                   f"one (set NUMBA_CACHE_DIR to a writable directory to enable caching).")
        return numba.njit(cache=False, **opts)(fn)


def parallel_enabled():
    """Whether CPU kernels compile with `parallel=True` (`ACCELNET_NUMBA_PARALLEL=1`).

    Off by default: the kernels run between BLAS calls that already use every core, and
    after each parallel region Numba's OpenMP workers spin-wait, stealing cycles from the
    next GEMM (measured: the Fashion-MNIST MLP trained slower with parallel kernels on 2
    cores; see bench/results). Serial kernels are memory-bound loops that stay fast."""
    return os.environ.get("ACCELNET_NUMBA_PARALLEL", "0").strip() == "1"


def _serial_twin(fn):
    """A copy of `fn` under another qualified name, so its cached serial machine code
    never collides with the parallel build in Numba's on-disk cache (keyed by name)."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "__serial"
    twin.__module__ = fn.__module__
    twin.__doc__ = fn.__doc__
    return twin


def _warn_once(message):
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(message, RuntimeWarning, stacklevel=5)


def cpu_jit(**opts):
    """Decorator factory: lazy `numba.njit(cache=True, **opts)`, serial unless
    ACCELNET_NUMBA_PARALLEL=1 (or `parallel=` given)."""
    def decorate(fn):
        return LazyCpuKernel(fn, opts)
    return decorate

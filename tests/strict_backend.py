"""Old names of the strict CuPy-like test backend, which is now the CuPy stand-in
(tests/cupy_standin) under accelnet's real GpuBackend (see tests/gpu_standin.py).

`StrictBackend()` is a fresh GpuBackend over the stand-in (not made active); arrays are
the stand-in's `cupy.ndarray`; `syncs()`/`reset_syncs()` count its host reads. The stand-in
is installed on first use, not at import, so a module importing these names still runs its
other tests on a machine with a real CuPy (where the stand-in's are skipped)."""
import warnings

from accelnet import backend as an_backend

from gpu_standin import install


def __getattr__(name):
    """StrictArray, syncs, reset_syncs: the stand-in's, installed on first access."""
    if name == "StrictArray":
        return install().ndarray
    if name in ("syncs", "reset_syncs"):
        return getattr(install(), name)
    raise AttributeError(name)


def StrictBackend():
    install()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the toolchain probe's warning
        return an_backend.GpuBackend()

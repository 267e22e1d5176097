"""Old names of the strict CuPy-like test backend, which is now the CuPy stand-in
(tests/cupy_standin) under accelnet's real GpuBackend (see tests/gpu_standin.py).

`StrictBackend()` is a fresh GpuBackend over the stand-in (not made active); arrays are
the stand-in's `cupy.ndarray`; `syncs()`/`reset_syncs()` count its host reads."""
import warnings

from accelnet import backend as an_backend

from gpu_standin import install

_cupy = install()
StrictArray = _cupy.ndarray
syncs = _cupy.syncs
reset_syncs = _cupy.reset_syncs


def StrictBackend():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the toolchain probe's warning
        return an_backend.GpuBackend()

"""Run accelnet's real GPU backend on the CuPy stand-in (tests/cupy_standin/cupy).

`install()` puts the stand-in on `sys.path` and imports it as `cupy` (once per process; it
then stays, as a real CuPy would). Where a real CuPy is installed (tests/conftest.py imports it
first) the stand-in cannot be `cupy` too: the test or module that asks for it is skipped, and
the `gpu`-marked tests run on the real device instead. `gpu_backend(**env)` makes a fresh
`GpuBackend` over it the active backend for a `with` block: `_import_cupy`, device binding and the numba-cuda
toolchain probe all run for real. Environment keys (`STANDIN_CUPY_DEVICES`, `..._DRIVER`,
`..._RUNTIME`, `..._BROKEN`) configure the stand-in for that block.
"""
import contextlib
import os
import sys

import pytest

import accelnet as an
from accelnet import backend as an_backend

STANDIN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cupy_standin")
REAL_CUPY_REASON = ("a real CuPy is installed and imported here: the CuPy stand-in cannot share "
                    "the process (its tests run where CuPy is absent, as on CI)")


def install():
    """Import the stand-in as `cupy`; skip the caller where a real CuPy is imported."""
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        if not getattr(cupy, "STANDIN", False):
            pytest.skip(REAL_CUPY_REASON, allow_module_level=True)
        return cupy
    sys.path.insert(0, STANDIN_PATH)
    try:
        import cupy
    finally:
        sys.path.remove(STANDIN_PATH)
    return cupy


@contextlib.contextmanager
def environment(**env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def gpu_backend(**env):
    """A fresh GpuBackend on the stand-in, active for the block; the previous backend after."""
    cupy = install()
    previous = an_backend.get_backend()
    with environment(**env):
        an_backend._created.pop("gpu", None)
        cupy.cuda._reset_current()
        try:
            yield an.use("gpu")
        finally:
            an_backend._created.pop("gpu", None)
            cupy.cuda._reset_current()
            an.use(previous)

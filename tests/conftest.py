"""Shared pytest setup.

- tests/cudasim/ runs only under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set
  before Numba is imported); tests/test_cuda_simulator.py launches it in a subprocess.
- Tests marked `gpu` are skipped, with the reason, when CuPy cannot use a CUDA device
  (the test suite's CuPy stand-in, tests/cupy_standin, never counts as one). A real CuPy is
  imported in `pytest_configure`, before any test module: the stand-in then never shadows
  it, and the stand-in's own tests skip on that machine (tests/gpu_standin.py).
- `standin_gpu`: the real GpuBackend on the CuPy stand-in, with reference kernels unless
  the test runs under the CUDA simulator (see tests/gpu_standin.py).
"""
import importlib.util
import os

import pytest

collect_ignore_glob = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ["cudasim/*"]

GPU_SKIP_REASON = "needs a CUDA GPU with CuPy (cupy.is_available() is False or CuPy missing)"
_gpu = {}


def _cupy_available():
    if "ok" not in _gpu:
        if importlib.util.find_spec("cupy") is None:
            _gpu["ok"] = False
            return False
        try:
            import cupy
            _gpu["ok"] = bool(cupy.is_available()) and not getattr(cupy, "STANDIN", False)
        except Exception:  # ImportError, or a broken CUDA install underneath
            _gpu["ok"] = False
    return _gpu["ok"]


def real_gpu_available():
    return _cupy_available()


@pytest.fixture
def standin_gpu():
    """The real GpuBackend over the CuPy stand-in, active for the test."""
    from gpu_standin import gpu_backend
    with gpu_backend() as backend:
        yield backend


def pytest_configure(config):
    _cupy_available()  # a real CuPy, if installed, is `cupy` before any test module imports


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_items and not _cupy_available():
        skip = pytest.mark.skip(reason=GPU_SKIP_REASON)
        for item in gpu_items:
            item.add_marker(skip)

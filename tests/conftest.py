"""Shared pytest setup.

- tests/cudasim/ runs only under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set
  before Numba is imported); tests/test_cuda_simulator.py launches it in a subprocess.
- Tests marked `gpu` are skipped, with the reason, when CuPy cannot use a CUDA device.
"""
import os

import pytest

collect_ignore_glob = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ["cudasim/*"]

GPU_SKIP_REASON = "needs a CUDA GPU with CuPy (cupy.is_available() is False or CuPy missing)"
_gpu = {}


def _cupy_available():
    if "ok" not in _gpu:
        try:
            import cupy
            _gpu["ok"] = bool(cupy.is_available())
        except Exception:  # ImportError, or a broken CUDA install underneath
            _gpu["ok"] = False
    return _gpu["ok"]


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    if gpu_items and not _cupy_available():
        skip = pytest.mark.skip(reason=GPU_SKIP_REASON)
        for item in gpu_items:
            item.add_marker(skip)

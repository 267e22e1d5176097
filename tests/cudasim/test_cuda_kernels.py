"""Simulator-specific cases of the Numba CUDA forms (the parity bodies shared by every
form are in tests/test_kernel_parity.py), under Numba's CUDA simulator.

Run by tests/test_cuda_simulator.py with NUMBA_ENABLE_CUDASIM=1 (the simulator runs each
GPU thread in Python, so shapes are tiny). In the simulator the "device arrays" are NumPy
arrays, which the CUDA forms accept there. Tolerances as in tests/test_kernels_*.py.
"""
import importlib
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("run with NUMBA_ENABLE_CUDASIM=1 (tests/test_cuda_simulator.py does)",
                allow_module_level=True)

import numba  # noqa: E402
import numba.cuda  # noqa: E402,F401  (an import failure must fail, not skip)

from accelnet import kernels  # noqa: E402
from accelnet.errors import InvalidArgumentError  # noqa: E402

sce = importlib.import_module("accelnet.kernels.softmax_cross_entropy")
relu = importlib.import_module("accelnet.kernels.relu_backward")
im = importlib.import_module("accelnet.kernels.im2col")
TOL = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-15)}


def test_simulator_is_active():
    assert numba.config.ENABLE_CUDASIM


def test_softmax_cross_entropy_minus_inf_row():
    logits = np.full((2, 3), -np.inf, dtype=np.float32)
    logits[0, 1] = 2.0
    logits[1] = [1.0, 2.0, 3.0]
    loss, grad = sce.numba_cuda(logits, np.array([1, 2]))
    want_loss, want_grad = sce.reference(logits, np.array([1, 2]))
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-7)


def test_bad_label_sets_the_device_flag_and_check_errors_raises_once():
    kernels.check_errors()
    logits = np.zeros((4, 3), dtype=np.float32)
    loss, grad = sce.numba_cuda(logits, np.array([0, 3, 1, 2]))  # no exception here
    assert not grad[1].any()
    sce.numba_cuda(logits, np.array([-1, 0, 1, 2]))  # the first bad label is kept
    with pytest.raises(InvalidArgumentError, match=r"label 3 at index 1 .*3 classes"):
        kernels.check_errors()
    kernels.check_errors()  # reset
    sce.numba_cuda(logits, np.array([0, 1, 2, -1]))
    with pytest.raises(InvalidArgumentError, match=r"label -1 at index 3"):
        kernels.check_errors()

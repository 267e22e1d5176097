"""The Numba CUDA forms against the references, under Numba's CUDA simulator.

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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("n,c", [(1, 1), (3, 5), (4, 2)])
def test_softmax_cross_entropy(dtype, soft, n, c):
    rng = np.random.default_rng(n * 10 + c)
    logits = (rng.standard_normal((n, c)) * 5).astype(dtype)
    logits[0, 0] = 1e4 if dtype == np.float32 else logits[0, 0]
    labels = rng.dirichlet(np.ones(c), n) if soft else rng.integers(0, c, n)
    want_loss, want_grad = sce.reference(logits, labels)
    loss, grad = sce.numba_cuda(np.asfortranarray(logits), labels)
    assert loss.shape == () and loss.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(loss, want_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, want_grad, **TOL[dtype])


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4), (1,), (0, 3)])
def test_relu_backward(dtype, shape):
    rng = np.random.default_rng(len(shape))
    dy = rng.standard_normal(shape).astype(dtype)
    x = rng.choice([-1.0, 0.0, 1.0, np.nan], size=shape).astype(dtype)
    want = relu.reference(dy, x)
    got = relu.numba_cuda(dy, x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    strided = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2]
    assert relu.numba_cuda(dy, x, out=strided) is strided
    np.testing.assert_array_equal(strided, want)
    assert relu.numba_cuda(dy, x, out=dy) is dy
    np.testing.assert_array_equal(dy, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel,stride,padding", [
    (3, 1, "valid"), (3, 2, "same"), (2, 1, "same"), ((3, 2), (1, 2), "valid"),
    ((3, 2), 2, "same"), (2, 3, "valid"), (1, (2, 3), "same")])
def test_im2col_col2im(dtype, kernel, stride, padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 2)).astype(dtype)
    cols = im.reference_im2col(x, kernel, stride, padding)
    got = im.numba_cuda_im2col(x.transpose(0, 2, 1, 3).copy().transpose(0, 2, 1, 3),
                               kernel, stride, padding)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, cols)
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    want = im.reference_col2im(dcols, x.shape, kernel, stride, padding)
    got = im.numba_cuda_col2im(dcols, x.shape, kernel, stride, padding)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.vdot(cols, dcols), np.vdot(x, got), rtol=1e-5)

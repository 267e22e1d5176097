"""The kernels on CuPy arrays at realistic shapes: numba-cuda vs the CuPy reference vs the
NumPy (Numba CPU) result. Skipped, with the reason, without a CUDA GPU and CuPy.

Tolerances as in tests/test_kernels_*.py (float32 softmax-CE rtol 1e-5; relu and im2col
exact; col2im rtol 1e-6).
"""
import importlib

import numpy as np
import pytest

from accelnet import kernels
from accelnet.errors import InvalidArgumentError

pytestmark = pytest.mark.gpu

sce = importlib.import_module("accelnet.kernels.softmax_cross_entropy")
relu = importlib.import_module("accelnet.kernels.relu_backward")
im = importlib.import_module("accelnet.kernels.im2col")
TOL = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-15)}


@pytest.fixture
def cp():
    import cupy
    return cupy


def close(got, want, **tol):
    np.testing.assert_allclose(got.get() if hasattr(got, "get") else got, want, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("n,c", [(256, 10), (64, 1000), (1, 3)])
def test_softmax_cross_entropy(cp, dtype, soft, n, c):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((n, c)) * 4).astype(dtype)
    labels = rng.dirichlet(np.ones(c), n) if soft else rng.integers(0, c, n)
    want_loss, want_grad = sce.numba_cpu(logits, labels)
    d_logits, d_labels = cp.asarray(logits), cp.asarray(labels)
    assert kernels.current_implementation("softmax_cross_entropy", d_logits) in (
        "numba-cuda", "reference")
    for form in (sce.numba_cuda, sce.reference, kernels.softmax_cross_entropy):
        loss, grad = form(d_logits, d_labels)
        assert isinstance(loss, cp.ndarray) and loss.shape == () and loss.dtype == dtype
        assert isinstance(grad, cp.ndarray) and grad.dtype == dtype
        close(loss, want_loss, **TOL[dtype])
        close(grad, want_grad, **TOL[dtype])
    kernels.check_errors()


@pytest.mark.parametrize("form", ["numba_cuda", "reference"])
def test_bad_labels_are_reported_by_check_errors(cp, form):
    kernels.check_errors()
    logits = cp.zeros((8, 4), dtype=cp.float32)
    labels = cp.asarray([0, 1, 2, 3, 0, 9, 1, 2])
    loss, grad = getattr(sce, form)(logits, labels)  # no host sync, no exception yet
    assert not bool(grad[5].any())
    with pytest.raises(InvalidArgumentError, match=r"label 9 at index 5 .*4 classes"):
        kernels.check_errors()
    kernels.check_errors()


def test_runs_on_cupys_current_stream(cp):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 64, 32)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        got = relu.numba_cuda(cp.asarray(dy), cp.asarray(x))
        total = got.sum()
    stream.synchronize()
    np.testing.assert_allclose(float(total), np.where(x > 0, dy, 0).sum(dtype=np.float64),
                               rtol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward(cp, dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 26, 26, 32)).astype(dtype)
    x[0, 0, 0, :4] = [0, np.nan, -0.0, np.inf]
    dy = rng.standard_normal(x.shape).astype(dtype)
    want = relu.numba_cpu(dy, x)
    d_dy, d_x = cp.asarray(dy), cp.asarray(x)
    for form in (relu.numba_cuda, relu.reference, kernels.relu_backward):
        got = form(d_dy, d_x)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got.get(), want)
    out = d_dy.copy()
    assert relu.numba_cuda(out, d_x, out=out) is out
    np.testing.assert_array_equal(out.get(), want)
    strided = cp.asarray(dy.transpose(0, 2, 1, 3).copy()).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(relu.numba_cuda(strided, d_x).get(), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((32, 28, 28, 1), 3, 1, "valid"), ((16, 14, 14, 32), 3, 1, "same"),
    ((8, 15, 15, 8), (3, 2), 2, "same"), ((4, 32, 32, 16), 2, 2, "valid")])
def test_im2col_col2im(cp, dtype, shape, kernel, stride, padding):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    cols = im.numba_cpu_im2col(x, kernel, stride, padding)
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    dx = im.numba_cpu_col2im(dcols, shape, kernel, stride, padding)
    d_x, d_dcols = cp.asarray(x), cp.asarray(dcols)
    for to_cols, to_image in ((im.numba_cuda_im2col, im.numba_cuda_col2im),
                              (im.reference_im2col, im.reference_col2im),
                              (kernels.im2col, kernels.col2im)):
        got = to_cols(d_x, kernel, stride, padding)
        assert isinstance(got, cp.ndarray) and got.dtype == dtype
        np.testing.assert_array_equal(got.get(), cols)
        got = to_image(d_dcols, shape, kernel, stride, padding)
        assert isinstance(got, cp.ndarray) and got.dtype == dtype
        close(got, dx, rtol=1e-6, atol=1e-6)

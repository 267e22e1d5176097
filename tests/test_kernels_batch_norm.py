"""batch_norm_forward / batch_norm_backward on every form (tests/kernel_forms.py), against
float64 NumPy math written here; plus the Numba CPU form's determinism over its blocks and
worker threads. Shapes stay tiny: tests/test_cuda_simulator.py runs this file under the
CUDA simulator too.

Tolerance: float64 1e-12 relative; float32 1e-5 relative plus a small absolute term (y and
dx are rounded to float32, the references normalize in float32).
"""
import importlib

import numpy as np
import pytest

from accelnet import kernels
from accelnet.errors import ShapeError

from kernel_forms import ALL_FORMS, SIM

bn = importlib.import_module("accelnet.kernels.batch_norm")
EPS = 1e-3
TOL = {np.float32: dict(rtol=1e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


@pytest.fixture(params=ALL_FORMS)
def form(request):
    return request.param


def _data(rows, c, dtype, offset=0.0, seed=0):
    rng = np.random.default_rng(seed + rows * 10 + c)
    x = (rng.standard_normal((rows, c)) * rng.uniform(0.5, 3, c) + offset).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal((rows, c)).astype(dtype)
    return x, gamma, beta, dy


def _forward_math(x, gamma, beta, mean=None, var=None):
    x = x.astype(np.float64)
    mean = x.mean(axis=0) if mean is None else mean.astype(np.float64)
    var = x.var(axis=0) if var is None else var.astype(np.float64)
    inv_std = 1 / np.sqrt(var + EPS)
    y = (x - mean) * inv_std
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y, mean, var, inv_std


def _backward_math(dy, x, gamma, mean, inv_std, training):
    dy, x = dy.astype(np.float64), x.astype(np.float64)
    xhat = (x - mean) * inv_std
    dbeta, dgamma = dy.sum(axis=0), (dy * xhat).sum(axis=0)
    a = inv_std * (1 if gamma is None else gamma.astype(np.float64))
    if training:
        n = len(x)
        return a * (dy - dbeta / n - xhat * dgamma / n), dgamma, dbeta
    return a * dy, dgamma, dbeta


def _run_forward(form, x, gamma, beta, mean=None, var=None):
    dev = [None if a is None else form.device(a) for a in (x, gamma, beta, mean, var)]
    with form.running():
        assert kernels.current_implementation("batch_norm_forward", dev[0]) == form.expected
        out = kernels.batch_norm_forward(dev[0], dev[1], dev[2], EPS, dev[3], dev[4])
    assert all(form.is_device_array(a) for a in out)
    return [form.host(a) for a in out]


def _run_backward(form, dy, x, gamma, mean, inv_std, training):
    dev = [None if a is None else form.device(a) for a in (dy, x, gamma, mean, inv_std)]
    with form.running():
        assert kernels.current_implementation("batch_norm_backward", dev[0]) == form.expected
        out = kernels.batch_norm_backward(*dev, training=training)
    assert all(form.is_device_array(a) for a in out)
    return [form.host(a) for a in out]


AFFINE = [(True, True), (False, False), (True, False), (False, True)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,c", [(1, 1), (5, 3), (37, 4)])
@pytest.mark.parametrize("scale,center", AFFINE)
def test_batch_norm_forward_is_the_math(form, dtype, rows, c, scale, center):
    x, gamma, beta, _ = _data(rows, c, dtype)
    gamma, beta = (gamma if scale else None), (beta if center else None)
    want = _forward_math(x, gamma, beta)
    y, mean, var, inv_std = _run_forward(form, x, gamma, beta)
    assert y.dtype == dtype and y.shape == (rows, c)
    assert all(a.dtype == np.float64 and a.shape == (c,) for a in (mean, var, inv_std))
    np.testing.assert_allclose(y, want[0], **TOL[dtype])
    for got, expected in zip((mean, var, inv_std), want[1:]):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_forward_with_given_statistics(form, dtype):
    x, gamma, beta, _ = _data(6, 3, dtype)
    mean = np.array([0.5, -1.0, 2.0], dtype)
    var = np.array([1.5, 0.25, 4.0], dtype)
    want = _forward_math(x, gamma, beta, mean, var)
    y, got_mean, got_var, inv_std = _run_forward(form, x, gamma, beta, mean, var)
    np.testing.assert_allclose(y, want[0], **TOL[dtype])
    np.testing.assert_array_equal(got_mean, mean.astype(np.float64))
    np.testing.assert_array_equal(got_var, var.astype(np.float64))
    np.testing.assert_allclose(inv_std, want[3], rtol=1e-15)


def test_batch_norm_large_mean_offset_keeps_precision(form):
    """x = 100 + noise in float32: the statistics stay float64-exact (no cancellation), y
    is off by at most the rounding of the mean to float32 (6e-6 at 100) in the references."""
    x, gamma, beta, dy = _data(40, 3, np.float32, offset=100.0)
    want = _forward_math(x, gamma, beta)
    y, mean, var, inv_std = _run_forward(form, x, gamma, beta)
    np.testing.assert_allclose(mean, want[1], rtol=1e-13)
    np.testing.assert_allclose(var, want[2], rtol=1e-11)
    np.testing.assert_allclose(y, want[0], rtol=1e-5, atol=5e-5)
    want_dx, want_dgamma, want_dbeta = _backward_math(dy, x, gamma, mean, inv_std, True)
    dx, dgamma, dbeta = _run_backward(form, dy, x, gamma, mean, inv_std, True)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-4, atol=5e-5)
    np.testing.assert_allclose(dgamma, want_dgamma, rtol=1e-4, atol=5e-4)
    np.testing.assert_allclose(dbeta, want_dbeta, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,c", [(1, 2), (5, 3), (37, 4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("scale", [True, False])
def test_batch_norm_backward_is_the_math(form, dtype, rows, c, training, scale):
    x, gamma, _, dy = _data(rows, c, dtype, seed=7)
    gamma = gamma if scale else None
    rng = np.random.default_rng(rows)
    mean = x.astype(np.float64).mean(axis=0) + (0 if training else rng.standard_normal(c))
    inv_std = 1 / np.sqrt(x.astype(np.float64).var(axis=0) + EPS + (0 if training else 1))
    want = _backward_math(dy, x, gamma, mean, inv_std, training)
    dx, dgamma, dbeta = _run_backward(form, dy, x, gamma, mean, inv_std, training)
    assert dx.dtype == dtype and dx.shape == (rows, c)
    assert dgamma.dtype == dbeta.dtype == np.float64 and dgamma.shape == dbeta.shape == (c,)
    tol = TOL[dtype]
    np.testing.assert_allclose(dx, want[0], rtol=tol["rtol"], atol=10 * tol["atol"])
    np.testing.assert_allclose(dgamma, want[1], rtol=tol["rtol"], atol=10 * tol["atol"])
    np.testing.assert_allclose(dbeta, want[2], rtol=1e-12, atol=1e-12)


def test_batch_norm_shape_errors(form):
    x = form.device(np.zeros((4, 3), np.float32))
    with form.running():
        with pytest.raises(ShapeError, match="batch_norm_forward"):
            kernels.batch_norm_forward(form.device(np.zeros(4, np.float32)), None, None, EPS)
        with pytest.raises(ShapeError, match="gamma"):
            kernels.batch_norm_forward(x, form.device(np.ones(2, np.float32)), None, EPS)
        with pytest.raises(ShapeError, match="both mean and var"):
            kernels.batch_norm_forward(x, None, None, EPS, form.device(np.zeros(3)))
        with pytest.raises(ShapeError, match="batch_norm_backward"):
            kernels.batch_norm_backward(form.device(np.zeros((3, 4), np.float32)), x, None,
                                        form.device(np.zeros(3)), form.device(np.ones(3)))


# ---------------------------------------------------------------- Numba CPU specifics

main_only = pytest.mark.skipif(SIM, reason="CPU-form details; the main test process runs them")


@main_only
@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_numba_cpu_is_deterministic_over_blocks_and_threads(monkeypatch, threads):
    """Many blocks (and a ragged last one): every thread count gives the same bits, and
    float64 math within rounding."""
    monkeypatch.setattr(bn, "BLOCK_ELEMENTS", 12)  # 4 rows per block at C = 3
    monkeypatch.setattr(bn, "MIN_THREADED_BYTES", 0)
    x, gamma, beta, dy = _data(1001, 3, np.float32, offset=50.0)
    with kernels.implementation("numba"):
        monkeypatch.setenv("ACCELNET_NUM_THREADS", "1")
        base = kernels.batch_norm_forward(x, gamma, beta, EPS)
        base_grad = kernels.batch_norm_backward(dy, x, gamma, base[1], base[3])
        monkeypatch.setenv("ACCELNET_NUM_THREADS", threads)
        assert len(bn._block_tasks(x, 251)) == (int(threads) if kernels.threaded(x) else 1)
        out = kernels.batch_norm_forward(x, gamma, beta, EPS)
        grad = kernels.batch_norm_backward(dy, x, gamma, out[1], out[3])
    for a, b in zip(base + base_grad, out + grad):
        np.testing.assert_array_equal(a, b)
    want = _forward_math(x, gamma, beta)
    np.testing.assert_allclose(out[1], want[1], rtol=1e-13)
    np.testing.assert_allclose(out[2], want[2], rtol=1e-12)
    np.testing.assert_allclose(out[0], want[0], rtol=1e-5, atol=1e-6)
    want_grad = _backward_math(dy, x, gamma, out[1], out[3], True)
    np.testing.assert_allclose(grad[0], want_grad[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad[1], want_grad[1], rtol=1e-12)
    np.testing.assert_allclose(grad[2], want_grad[2], rtol=1e-12, atol=1e-12)


@main_only
@pytest.mark.parametrize("family", ["numba", "reference"])
def test_empty_batch_gives_nan_statistics(family):
    x = np.zeros((0, 3), np.float32)
    with kernels.implementation(family), np.errstate(all="ignore"), \
            pytest.warns(RuntimeWarning):
        y, mean, var, _ = kernels.batch_norm_forward(x, None, None, EPS)
    assert y.shape == (0, 3) and np.isnan(mean).all() and np.isnan(var).all()


@main_only
def test_numba_cpu_accepts_non_contiguous_input():
    x, gamma, beta, dy = _data(8, 6, np.float64)
    xs, dys = x[:, ::2], dy[:, ::2]
    want = _forward_math(xs, gamma[:3], beta[:3])
    with kernels.implementation("numba"):
        y, mean, _, inv_std = kernels.batch_norm_forward(xs, gamma[:3], beta[:3], EPS)
        dx = kernels.batch_norm_backward(dys, xs, gamma[:3], mean, inv_std)[0]
    np.testing.assert_allclose(y, want[0], rtol=1e-12)
    np.testing.assert_allclose(dx, _backward_math(dys, xs, gamma[:3], mean, inv_std, True)[0],
                               rtol=1e-10, atol=1e-13)

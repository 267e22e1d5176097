"""The Numba CUDA forms of the convolution-path kernels (max_pool, ...) against their
references, under Numba's CUDA simulator (run by tests/test_cuda_simulator.py)."""
import importlib
import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("run with NUMBA_ENABLE_CUDASIM=1 (tests/test_cuda_simulator.py does)",
                allow_module_level=True)

import numba.cuda  # noqa: E402,F401  (an import failure must fail, not skip)

mp = importlib.import_module("accelnet.kernels.max_pool")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,pool,strides,padding", [
    ((2, 4, 4, 2), (2, 2), (2, 2), "valid"), ((1, 5, 3, 2), (2, 2), (2, 2), "same"),
    ((1, 5, 5, 1), (3, 3), (2, 1), "same"), ((1, 4, 5, 2), (2, 3), (1, 1), "valid")])
def test_max_pool(dtype, shape, pool, strides, padding):
    rng = np.random.default_rng(sum(shape))
    x = rng.choice([-1.0, 0.0, 2.0], size=shape).astype(dtype)  # ties
    x.flat[0] = np.nan
    want_out, want_arg = mp.reference(x, pool, strides, padding)
    out, arg = mp.numba_cuda(x, pool, strides, padding)
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(arg, want_arg)
    grad = rng.standard_normal(out.shape).astype(dtype)
    want = mp.reference_backward(grad, want_arg, shape, pool, strides, padding)
    got = mp.numba_cuda_backward(grad, arg, shape, pool, strides, padding)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)


br = importlib.import_module("accelnet.kernels.bias_relu")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows,f", [(5, 3), (1, 1), (0, 2)])
def test_bias_relu_and_grad(dtype, rows, f):
    rng = np.random.default_rng(rows * 10 + f)
    z = rng.standard_normal((rows, f)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    want = br.reference(z.copy(), bias)
    got = br.numba_cuda(z.copy(), bias)
    np.testing.assert_array_equal(got, want)
    dy = rng.standard_normal((rows, f)).astype(dtype)
    dy[0:1, 0:1] = np.nan
    want_dz, want_db = br.reference_grad(dy, want)
    dz, db = br.numba_cuda_grad(dy, got)
    np.testing.assert_array_equal(dz, want_dz)
    np.testing.assert_allclose(db, want_db, rtol=1e-12, atol=1e-12)


wg = importlib.import_module("accelnet.kernels.winograd")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,padding", [((1, 4, 5, 2), "valid"), ((1, 3, 3, 1), "same"),
                                           ((1, 2, 3, 2), "full")])
def test_winograd_conv(dtype, shape, padding):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape).astype(dtype)
    u = wg.winograd_weights(rng.standard_normal((3, 3, shape[3], 2)).astype(dtype))
    bias = rng.standard_normal(2).astype(dtype)
    want = wg.reference(x, u, padding, bias=bias, relu=True)
    got = wg.numba_cuda(x, u, padding, bias=bias, relu=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


red = importlib.import_module("accelnet.kernels._cuda_reduce")


@pytest.mark.parametrize("rows", [1, 64, 65, 4097])
def test_column_sums_in_chunks_equal_the_float64_sums(rows):
    """Chunks of 64 rows, then the chunks' partials, level by level (4097 rows: 65 partial rows,
    then 2, then the sum): the float64 column sums to rounding, in a fixed order."""
    rng = np.random.default_rng(rows)
    a = rng.standard_normal((rows, 3)).astype(np.float32)
    got = red.column_sums(np, a, np.zeros(3))
    np.testing.assert_allclose(got, a.sum(axis=0, dtype=np.float64), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(red.column_sums(np, a, np.zeros(3)), got)  # same order


def test_relu_bias_grad_past_one_chunk_level():
    rng = np.random.default_rng(1)
    dy = rng.standard_normal((4200, 2)).astype(np.float32)
    y = rng.standard_normal((4200, 2)).astype(np.float32)
    want_dz, want_db = br.reference_grad(dy, y)
    dz, db = br.numba_cuda_grad(dy, y)
    np.testing.assert_array_equal(dz, want_dz)
    np.testing.assert_allclose(db, want_db, rtol=1e-12, atol=1e-12)


def test_batch_norm_statistics_and_sums_past_one_chunk_level():
    bn = importlib.import_module("accelnet.kernels.batch_norm")
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((4200, 2)) * 3 + 0.5).astype(np.float32)
    dy = rng.standard_normal((4200, 2)).astype(np.float32)
    want = bn.reference_forward(x, None, None, 1e-3)
    got = bn.numba_cuda_forward(x, None, None, 1e-3)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    got_b = bn.numba_cuda_backward(dy, x, None, want[1], want[3])
    np.testing.assert_allclose(got_b[0], bn.reference_backward(dy, x, None, want[1], want[3])[0],
                               rtol=1e-4, atol=1e-5)
    # the sums are float64 arithmetic on the float32 inputs: the float64 reference's, to rounding
    want_b = bn.reference_backward(dy.astype(np.float64), x.astype(np.float64), None, want[1],
                                   want[3])
    for g, w in zip(got_b[1:], want_b[1:]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-9)

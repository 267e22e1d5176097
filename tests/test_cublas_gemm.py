"""cuBLAS's GEMM with alpha/beta for CuPy arrays (kernels/_cublas.py): on the CuPy stand-in
(its `cupy.cublas.gemm` keeps CuPy's signature and checks) and, under the `gpu` marker, on a
real device; and Dense's folded SGD update on the GPU backend equal to the optimizer's step."""
import numpy as np
import pytest

import accelnet as an
from accelnet import kernels
from accelnet.kernels import _cublas, _workers

from test_mkl_gemm import _fit, _mlp

pytestmark = pytest.mark.filterwarnings("ignore:accelnet. numba-cuda cannot")


def _device_layouts(backend, rng, shape):
    dense = rng.standard_normal(shape).astype(np.float32)
    return {"C": backend.asarray(dense), "F": backend.asarray(np.asfortranarray(dense)).T.T,
            "T": backend.asarray(np.ascontiguousarray(dense.T)).T}, dense


@pytest.mark.parametrize("layout_a", ["C", "F", "T"])
@pytest.mark.parametrize("layout_b", ["C", "T"])
@pytest.mark.parametrize("alpha, beta", [(-0.05, 1.0), (2.0, 0.5), (0.5, 0.0)])
def test_matmul_takes_alpha_and_beta_inside_cublas(standin_gpu, monkeypatch, layout_a,
                                                   layout_b, alpha, beta):
    import cupy
    import cupy.cublas
    calls = []
    real = cupy.cublas.gemm
    monkeypatch.setattr(cupy.cublas, "gemm", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(0)
    a, a_host = _device_layouts(standin_gpu, rng, (37, 53))
    b, b_host = _device_layouts(standin_gpu, rng, (53, 29))
    out_host = rng.standard_normal((37, 29)).astype(np.float32)
    out = standin_gpu.asarray(out_host)
    got = _workers.matmul(a[layout_a], b[layout_b], out, alpha, beta)
    assert got is out and calls == [1]
    want = alpha * (a_host.astype(np.float64) @ b_host) + beta * out_host
    np.testing.assert_allclose(cupy.asnumpy(out), want, rtol=1e-5, atol=1e-5)


def test_cublas_declines_what_it_cannot_take(standin_gpu, monkeypatch):
    rng = np.random.default_rng(1)
    a = standin_gpu.asarray(rng.standard_normal((8, 6)).astype(np.float32))
    b = standin_gpu.asarray(rng.standard_normal((6, 4)).astype(np.float32))
    out = standin_gpu.asarray(np.zeros((8, 4), np.float32))
    assert _cublas.gemm(a[:, ::2], b[:3], out, -1.0, 1.0) is None  # no contiguous axis
    assert _cublas.gemm(a, b.astype(np.float64), out, -1.0, 1.0) is None  # two dtypes
    assert _cublas.gemm(a, b, None, -1.0, 1.0) is None  # beta needs an out
    assert _cublas.gemm(a[:, :4], a[:4], a[:, :4], -1.0, 1.0) is None  # out overlaps a
    assert _cublas.gemm(np.ones((8, 6), np.float32), b, out, -1.0, 1.0) is None  # host array
    assert kernels.gemm_accumulates(a)
    monkeypatch.setenv("ACCELNET_KERNELS", "reference")
    assert not kernels.gemm_accumulates(a) and _cublas.gemm(a, b, out, -1.0, 1.0) is None


def test_folded_sgd_step_on_the_gpu_backend_is_the_optimizers_step(standin_gpu):
    """On the GPU backend Dense folds the plain-SGD update into cuBLAS's GEMM (gemm_accumulates
    is true there): the same weights and step count as the optimizer's own apply."""
    want, steps, _ = _fit(_mlp(an.optimizers.SGD(0.1)), fold=False)
    got, folded_steps, folded = _fit(_mlp(an.optimizers.SGD(0.1)), fold=True)
    assert folded_steps == steps == 12 and len(folded) == 12
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_cublas_gemm_on_the_device():
    import cupy
    rng = np.random.default_rng(2)
    a_host = rng.standard_normal((64, 96)).astype(np.float32)
    b_host = rng.standard_normal((96, 48)).astype(np.float32)
    out_host = rng.standard_normal((64, 48)).astype(np.float32)
    a, b = cupy.asarray(a_host), cupy.asarray(b_host)
    out = cupy.asarray(out_host)
    assert _cublas.gemm(a.T.copy().T, b, out, -0.1, 1.0) is out
    want = -0.1 * (a_host.astype(np.float64) @ b_host) + out_host
    np.testing.assert_allclose(cupy.asnumpy(out), want, rtol=1e-4, atol=1e-4)

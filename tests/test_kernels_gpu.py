"""Real-GPU-only kernel properties (the parity bodies shared by every form, real CuPy
included, are in tests/test_kernel_parity.py). Skipped, with the reason, without a CUDA
GPU and CuPy."""
import importlib

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

relu = importlib.import_module("accelnet.kernels.relu_backward")


@pytest.fixture
def cp():
    import cupy
    return cupy


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

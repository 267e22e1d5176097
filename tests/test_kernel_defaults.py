"""Default kernel choice: Numba where the bench shows it faster, by shape where it matters."""
import numpy as np
import pytest

from accelnet import kernels
from accelnet.kernels import _dispatch


@pytest.fixture(autouse=True)
def no_env_override(monkeypatch):
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)


@pytest.mark.parametrize("kernel,hint,expected", [
    ("softmax_cross_entropy", 10, "numba-cpu"),
    ("softmax_cross_entropy", 1000, "reference"),
    ("im2col", 32, "numba-cpu"),
    ("im2col", 1, "numba-cpu"),  # one channel: 1.7x at 3x3, 6.3x at 5x5 (kw >= 5 loop)
    ("col2im", 1, "numba-cpu"),
    ("relu_backward", None, "numba-cpu"),
    ("batch_norm_forward", None, "numba-cpu"),
    ("batch_norm_backward", None, "numba-cpu"),
    ("adam_update", None, "numba-cpu"),
    ("sgd_update", None, "numba-cpu"),
])
def test_cpu_defaults_follow_the_bench(kernel, hint, expected):
    assert kernels.current_implementation(kernel, np, hint) == expected


def test_forcing_ignores_shape_rules():
    with kernels.implementation("numba"):
        assert kernels.current_implementation("softmax_cross_entropy", np, 1000) == "numba-cpu"
    with kernels.implementation("reference"):
        assert kernels.current_implementation("relu_backward", np) == "reference"


def test_public_functions_pass_their_size_hint(monkeypatch):
    import importlib
    sce = importlib.import_module("accelnet.kernels.softmax_cross_entropy")
    calls = []
    monkeypatch.setattr(sce, "reference", lambda *a: calls.append("reference") or ("r", None))
    monkeypatch.setattr(sce, "numba_cpu", lambda *a: calls.append("numba") or ("n", None))
    kernels.softmax_cross_entropy(np.zeros((2, 1000), np.float32), np.zeros(2, np.int64))
    kernels.softmax_cross_entropy(np.zeros((2, 10), np.float32), np.zeros(2, np.int64))
    assert calls == ["reference", "numba"]
    assert _dispatch.SHAPE_RULES[("softmax_cross_entropy", "cpu")](32)


def test_conv_kernels_pass_the_channels_to_the_gpu_im2col_rule(monkeypatch):
    """On the GPU the conv forward and weight gradient take numba-cuda's im2col only below 8
    channels, as im2col itself does; the public functions hand the dispatcher x's channels."""
    for kernel in ("im2col", "conv_forward", "conv_weight_grad"):
        rule = _dispatch.SHAPE_RULES[(kernel, "gpu")]
        assert rule(1) and rule(3) and not rule(8) and not rule(32)
    seen = []
    real_form = _dispatch.form

    def spy(name, *arrays, size_hint=None):
        seen.append((name, size_hint))
        return real_form(name, *arrays, size_hint=size_hint)

    monkeypatch.setattr(_dispatch, "form", spy)
    x = np.zeros((2, 6, 6, 5), np.float32)
    kernels.conv_forward(x, np.zeros((9 * 5, 4), np.float32), (3, 3))
    kernels.conv_weight_grad(x, np.zeros((2, 4, 4, 4), np.float32), (3, 3))
    assert seen == [("conv_forward", 5), ("conv_weight_grad", 5)]

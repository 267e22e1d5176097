"""Winograd F(2x2, 3x3) (and the Conv2D paths of every tile): reference and Numba CPU forms against the direct convolution
(float64 im2col + GEMM), and Conv2D's use of it.

Tolerance: 1e-5 of the output's largest magnitude in float32 for F(2x2, 3x3), 4e-5 for the
Conv2D paths (F(4x4, 3x3) by default: its transforms scale by up to 8, measured error up to
~1.1e-5 of the largest output), 1e-12 in float64.
"""
import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelnet import kernels, layers, random
from accelnet.errors import ShapeError
from accelnet.gradient_check import check_layer, to_float64

wg = importlib.import_module("accelnet.kernels.winograd")
im = importlib.import_module("accelnet.kernels.im2col")
FORMS = {"reference": wg.reference, "numba-cpu": wg.numba_cpu}


def direct(x, kernel, padding, bias, relu):
    if padding == "full":
        x, padding = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), "valid"
    cols = im.reference_im2col(x.astype(np.float64), (3, 3), 1, padding)
    n, h, w, _ = x.shape
    oh, ow = (h - 2, w - 2) if padding == "valid" else (h, w)
    y = (cols @ kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)).reshape(n, oh, ow, -1)
    y = y + bias if bias is not None else y
    return np.maximum(y, 0) if relu else y


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), h=st.integers(1, 8),
       w=st.integers(1, 8), c=st.integers(1, 5), f=st.integers(1, 4),
       padding=st.sampled_from(["valid", "same", "full"]), dtype=st.sampled_from([np.float32, np.float64]),
       use_bias=st.booleans(), relu=st.booleans(), given_out=st.booleans())
def test_forms_match_the_direct_convolution(seed, n, h, w, c, f, padding, dtype, use_bias, relu,
                                            given_out):
    if padding == "valid" and (h < 3 or w < 3):
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    kernel = rng.standard_normal((3, 3, c, f)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype) if use_bias else None
    want = direct(x, kernel, padding, bias, relu)
    u = wg.winograd_weights(kernel)
    assert u.shape == (16, c, f) and u.dtype == dtype
    tol = (1e-5 if dtype == np.float32 else 1e-12) * max(np.abs(want).max(), 1)
    for form in FORMS.values():
        out = np.empty(want.shape, dtype) if given_out else None
        got = form(x, u, padding, out=out, bias=bias, relu=relu)
        assert got.dtype == dtype and got.shape == want.shape
        if given_out:
            assert got is out
        np.testing.assert_allclose(got, want, rtol=0, atol=tol)


@pytest.mark.parametrize("name", FORMS)
def test_shape_errors(name):
    with pytest.raises(ShapeError, match="winograd_conv"):
        FORMS[name](np.zeros((1, 4, 4, 2), np.float32), np.zeros((16, 3, 1), np.float32))
    with pytest.raises(ShapeError, match="winograd_weights"):
        wg.winograd_weights(np.zeros((4, 4, 1, 1), np.float32))


def test_applies_only_to_3x3_stride_1_with_enough_channels(monkeypatch):
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)
    monkeypatch.delenv("ACCELNET_NUM_THREADS", raising=False)
    wide, narrow = np.zeros((1, 8, 8, 16), np.float32), np.zeros((1, 8, 8, 3), np.float32)
    assert kernels.winograd_applies(wide, (3, 3), (1, 1))
    assert not kernels.winograd_applies(narrow, (3, 3), (1, 1))
    assert not kernels.winograd_applies(wide, (7, 7), (1, 1))
    assert kernels.winograd_tile(wide, (5, 5), (1, 1), "same", "forward") == 3
    assert kernels.winograd_tile(wide, (5, 5), (1, 1), "same", "weight_grad") == 3
    assert kernels.winograd_tile(wide, (3, 3), (1, 1), "valid", "input_grad") == 4
    assert not kernels.winograd_applies(wide, (3, 3), (2, 2))
    with kernels.implementation("reference"):  # the whole-batch path is im2col + GEMM
        assert not kernels.winograd_applies(wide, (3, 3), (1, 1))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_conv2d_winograd_path_matches_im2col(monkeypatch, padding, activation):
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "64")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((9, 7, 6, 16)).astype(np.float32)
    random.seed(3)
    layer = layers.Conv2D(5, 3, padding=padding, activation=activation)
    layer.build(x.shape[1:])
    layer.params["bias"][...] = rng.standard_normal(5)
    assert kernels.winograd_applies(x, layer.kernel_size, layer.strides)
    got = layer.forward(x).copy()
    monkeypatch.setattr(kernels, "winograd_tile", lambda *a: None)
    want = layer.forward(x)
    np.testing.assert_allclose(got, want, rtol=0, atol=4e-5 * np.abs(want).max())


def test_transposed_weights_give_the_input_gradient():
    rng = np.random.default_rng(8)
    kernel = rng.standard_normal((3, 3, 2, 3))
    for padding, shape in [("valid", (1, 6, 5, 2)), ("same", (2, 4, 5, 2))]:
        x = rng.standard_normal(shape)
        dz = rng.standard_normal(direct(x, kernel, padding, None, False).shape)
        cols_grad = dz.reshape(-1, 3) @ kernel.reshape(-1, 3).T
        want = im.reference_col2im(cols_grad, shape, (3, 3), 1, padding)
        u_t = wg.winograd_weights(kernel, transpose=True)
        got = wg.numba_cpu(dz, u_t, kernels.winograd_input_grad_padding(padding))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding,filters,both", [
    ("valid", 16, True), ("same", 16, False), ("same", 24, False)])  # 'same': Winograd dx too
def test_conv2d_winograd_backward_matches_im2col(monkeypatch, padding, filters, both):
    """Winograd backward passes (both gradients from one transform of dz where
    `winograd_grads_applies`: 'valid') = im2col's."""
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "64")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((7, 6, 7, 16)).astype(np.float32)
    random.seed(5)
    layer = layers.Conv2D(filters, 3, padding=padding, activation="relu")
    layer.build(x.shape[1:])
    grad = rng.standard_normal((7,) + layer.compute_output_shape(x.shape[1:])).astype(np.float32)
    calls = []
    real = kernels.winograd_grads
    monkeypatch.setattr(kernels, "winograd_grads", lambda *a, **k: calls.append(1) or real(*a, **k))
    results = []
    for use in (True, False):
        if not use:
            assert bool(calls) == both
            monkeypatch.setattr(kernels, "winograd_tile", lambda *a: None)
        layer.forward(x)
        results.append([layer.backward(grad.copy())] + [g.copy() for g in layer.grads.values()])
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-5 * np.abs(want).max())


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv2d_winograd_gradients_match_finite_differences(monkeypatch, padding):
    """Forward, weight gradient and input gradient ('full' padding for 'valid') through
    Conv2D's default Winograd tiles, in float64 against finite differences."""
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)
    random.seed(4)
    layer = layers.Conv2D(16, 3, padding=padding, activation="relu")  # 16: Winograd dx too
    layer.build((4, 5, 16))
    layer.params["bias"][...] = np.linspace(-0.2, 0.2, 16)
    layer = to_float64(layer)
    x = np.random.default_rng(6).standard_normal((2, 4, 5, 16))
    assert kernels.winograd_applies(x, (3, 3), (1, 1))
    assert kernels.winograd_applies_input_grad(x, (3, 3), (1, 1), padding)  # 16 filters
    assert kernels.winograd_applies_input_grad(x, (5, 5), (1, 1), "valid")  # F(3x3, 5x5)
    check_layer(layer, x)


def _conv2d_paths(monkeypatch, layer, x, grad, tiles):
    """(output, dx, kernel and bias gradients) of layer on x with winograd_tile -> tiles."""
    real = wg.tile
    monkeypatch.setattr(kernels, "winograd_tile", lambda x, ks, st, padding="valid",
                        kind="forward": tiles.get(kind) if real(x, ks, st, padding, kind)
                        is not None or tiles.get(kind) is None else None)
    out = layer.forward(x).copy()
    return [out, layer.backward(grad.copy())] + [g.copy() for g in layer.grads.values()]


@pytest.mark.parametrize("kernel_size,m", [(3, 4), (5, 2), (5, 3)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_conv2d_6x6_tile_paths_match_im2col(monkeypatch, kernel_size, m, padding):
    """Conv2D through F(4x4, 3x3) / F(2x2, 5x5) (forward with fused bias + ReLU, input
    gradient where 'same', weight gradient) = the im2col + GEMM path in float32."""
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "64")
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 9, 10, 16)).astype(np.float32)
    random.seed(6)
    layer = layers.Conv2D(16, kernel_size, padding=padding, activation="relu")
    layer.build(x.shape[1:])
    layer.params["bias"][...] = rng.standard_normal(16) * 0.1
    grad = rng.standard_normal((5,) + layer.compute_output_shape(x.shape[1:])).astype(np.float32)
    assert wg.tile(x, layer.kernel_size, layer.strides, padding) is not None
    got = _conv2d_paths(monkeypatch, layer, x, grad,
                        {"forward": m, "input_grad": m, "weight_grad": m})
    want = _conv2d_paths(monkeypatch, layer, x, grad, {})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-5 * np.abs(w).max())


@pytest.mark.parametrize("kernel_size,m", [(3, 4), (5, 2), (5, 3)])
def test_conv2d_6x6_tile_gradients_match_finite_differences(monkeypatch, kernel_size, m):
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)
    monkeypatch.setattr(kernels, "winograd_tile", lambda *a, **k: m)
    random.seed(4)
    layer = layers.Conv2D(16, kernel_size, padding="same", activation="relu")
    layer.build((5, 6, 16))
    layer.params["bias"][...] = np.linspace(-0.2, 0.2, 16)
    layer = to_float64(layer)
    x = np.random.default_rng(6).standard_normal((2, 5, 6, 16))
    check_layer(layer, x)


def test_generated_tile_kernels_match_their_generator():
    """`_winograd_tiles.py` is what `winograd_codegen` writes from today's transforms (run
    `python -m accelnet.kernels.winograd_codegen` after changing either)."""
    codegen = importlib.import_module("accelnet.kernels.winograd_codegen")
    assert codegen.TARGET.read_text() == codegen.source()
    assert codegen.main(["--check"]) == 0
    tiles = importlib.import_module("accelnet.kernels._winograd_tiles")
    assert set(tiles.KERNELS) == set(codegen.TILES)

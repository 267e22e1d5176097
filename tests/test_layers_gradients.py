"""Every layer's backward pass agrees with central finite differences in float64.

Tolerance: rtol 1e-5, atol 1e-7 (central differences with eps 1e-6 in float64).
"""
import numpy as np
import pytest

import accelnet as an
from accelnet import kernels, layers, regularizers
from accelnet.gradient_check import build_float64 as built, check_layer


def data(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax"])
def test_dense_gradients_match_finite_differences(activation):
    layer = built(layers.Dense(4, activation=activation), (5,))
    check_layer(layer, data(3, 5))


def test_dense_without_bias_on_3d_input():
    layer = built(layers.Dense(3, use_bias=False), (2, 4))
    check_layer(layer, data(2, 2, 4))


@pytest.mark.parametrize("family", ["numba", "reference"])
def test_dense_fused_bias_relu_on_3d_input(family):
    """Bias + ReLU (and their backward with the bias gradient) run as one kernel each."""
    layer = built(layers.Dense(3, activation="relu", bias_initializer="ones"), (2, 4))
    with kernels.implementation(family):
        check_layer(layer, data(2, 2, 4))


@pytest.mark.parametrize("reg", [regularizers.l1(0.1), regularizers.l2(0.2), regularizers.l1_l2(0.1, 0.3)])
def test_dense_regularizer_gradients_include_the_penalty(reg):
    layer = built(layers.Dense(3, kernel_regularizer=reg, bias_regularizer=reg,
                               bias_initializer="ones"), (4,))
    check_layer(layer, data(2, 4))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 3)])
def test_conv2d_gradients_match_finite_differences(padding, strides, kernel):
    layer = built(layers.Conv2D(2, kernel, strides=strides, padding=padding, activation="tanh"),
                  (6, 5, 2))
    check_layer(layer, data(2, 6, 5, 2))


def test_conv2d_chunked_backward_matches_finite_differences(monkeypatch):
    from accelnet.layers import conv
    monkeypatch.setattr(conv, "WORKSPACE_BYTES", 1)  # one sample per im2col chunk
    monkeypatch.setenv("ACCELNET_NUM_THREADS", "0")  # the workspace path, not the threaded one
    layer = built(layers.Conv2D(2, 3, padding="same", kernel_regularizer=regularizers.l2(0.1)),
                  (5, 5, 2))
    check_layer(layer, data(3, 5, 5, 2))


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("shape", [(5, 7, 2), (4, 6, 2)])
@pytest.mark.parametrize("pool,strides,padding", [
    (2, None, "valid"), (2, None, "same"), (3, 2, "valid"), (3, 2, "same"), ((2, 3), 1, "valid")])
def test_maxpooling_gradients_match_finite_differences(pool, strides, padding, shape, impl):
    layer = built(layers.MaxPooling2D(pool, strides=strides, padding=padding), shape)
    with kernels.implementation(impl):
        check_layer(layer, data(2, *shape))


@pytest.mark.parametrize("shape", [(4, 6, 3), (5, 7, 3)])
def test_maxpooling_numba_equals_reference_with_ties(shape):
    """The Numba kernel gives the reference's outputs and gradients, ties (ReLU zeros)
    included: the first maximum of each window gets the gradient."""
    x = np.maximum(data(3, *shape), 0)  # many all-zero windows
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = x[0, 1, 0, 0] = 5.0  # a three-way tie at the top
    grad = data(3, *layers.MaxPooling2D(2).compute_output_shape(shape), seed=4)
    results = []
    for impl in ("numba", "reference"):
        layer = built(layers.MaxPooling2D(2), shape)
        with kernels.implementation(impl):
            results.append((layer.forward(x), layer.backward(grad.copy())))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got, want)
    assert results[0][1][0, 0, 0, 0] == grad[0, 0, 0, 0] and results[0][1][0, 0, 1, 0] == 0


def test_maxpooling_same_ignores_padding_for_negative_inputs():
    layer = layers.MaxPooling2D(2, padding="same")
    x = -np.abs(data(1, 3, 3, 1)) - 1
    out = layer.forward(x, training=False)
    assert out.shape == (1, 2, 2, 1)
    assert out[0, 1, 1, 0] == x[0, 2, 2, 0]  # the lone corner cell wins over -inf padding


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("shape", [(3,), (2, 3, 3)])
@pytest.mark.parametrize("scale,center", [(True, True), (False, True), (True, False),
                                          (False, False)])
def test_batchnorm_training_gradients_match_finite_differences(scale, center, shape, impl):
    layer = built(layers.BatchNormalization(scale=scale, center=center), shape)
    if scale:
        layer.params["gamma"][:] = [0.5, 2.0, -1.0]
    if center:
        layer.params["beta"][:] = [0.1, -0.2, 0.3]
    with kernels.implementation(impl):
        check_layer(layer, data(6, *shape) * 2 + 3)


@pytest.mark.parametrize("impl", ["numba", "reference"])
@pytest.mark.parametrize("scale,center", [(True, True), (False, False)])
def test_batchnorm_inference_gradients_and_running_statistics(scale, center, impl):
    layer = built(layers.BatchNormalization(momentum=0.5, scale=scale, center=center),
                  (2, 2, 3))
    x = data(4, 2, 2, 3) * 3 + 1
    with kernels.implementation(impl):
        layer.forward(x, training=True)
        np.testing.assert_allclose(layer.state["moving_mean"], 0.5 * x.mean(axis=(0, 1, 2)))
        np.testing.assert_allclose(layer.state["moving_variance"],
                                   0.5 + 0.5 * x.var(axis=(0, 1, 2)))
        check_layer(layer, data(4, 2, 2, 3), training=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_numba_equals_reference_in_the_layer(dtype):
    """Both forms through the layer, training then inference: outputs, gradients and
    running statistics agree to rounding; inputs and upstream gradients are left as given."""
    x = (data(5, 4, 4, 3) * 2 + 10).astype(dtype)
    grad = data(5, 4, 4, 3, seed=2).astype(dtype)
    results = []
    for impl in ("numba", "reference"):
        layer = layers.BatchNormalization(momentum=0.9)
        layer.build((4, 4, 3))
        layer.params["gamma"][:] = [0.5, 2.0, -1.0]
        xs, gs = x.copy(), grad.copy()
        with kernels.implementation(impl):
            out = [layer.forward(xs), layer.backward(gs), layer.grads["gamma"].copy(),
                   layer.grads["beta"].copy(), layer.forward(xs, training=False),
                   layer.backward(gs)]
        np.testing.assert_array_equal(xs, x)
        np.testing.assert_array_equal(gs, grad)
        results.append(out + [layer.state["moving_mean"], layer.state["moving_variance"]])
    for got, want in zip(*results):
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-4 if dtype == np.float32 else 1e-12)


def test_dropout_with_fixed_mask_gradients_and_inference_identity():
    layer = built(layers.Dropout(0.5), (4,))
    mask = (np.random.default_rng(3).random((3, 4)) > 0.5) * 2.0
    layer.set_mask(mask)
    check_layer(layer, data(3, 4))
    x = data(3, 4)
    np.testing.assert_array_equal(layer.forward(x, training=False), x)
    np.testing.assert_array_equal(layer.forward(x, training=True), x * mask)


def test_dropout_drops_about_rate_and_keeps_the_mean():
    an.random.seed(0)
    layer = layers.Dropout(0.25)
    x = np.ones((200, 500), dtype=np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert abs(y.mean() - 1.0) < 0.02


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "linear"])
def test_activation_layer_gradients(name):
    layer = built(layers.Activation(name), (4,))
    check_layer(layer, data(3, 4))


def test_flatten_round_trips_shapes():
    layer = built(layers.Flatten(), (2, 3, 4))
    check_layer(layer, data(2, 2, 3, 4))
    assert layer.compute_output_shape((2, 3, 4)) == (24,)

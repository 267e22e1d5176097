"""The Keras 3 layers added for real programs: Softmax, LeakyReLU, InputLayer, Rescaling,
SpatialDropout2D, Embedding, Conv1D, Conv2D(dilation_rate=), average/1-D/global pooling.

Gradients against float64 central differences (rtol 1e-5, atol 1e-7, as in
test_layers_gradients.py); forward values against the Keras formulas computed by hand or by
plain loops; output shapes against Keras's shape rules; save/load; the strict backend; errors.
"""
import warnings

import numpy as np
import pytest

import accelnet as an
from accelnet import errors, kernels, layers
from accelnet import backend as an_backend
from accelnet.gradient_check import build_float64 as built, check_layer

from strict_backend import StrictBackend


def data(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


# -- gradients -----------------------------------------------------------------------------
GRADIENT_CASES = [
    (lambda: layers.Softmax(), (3, 4)),
    (lambda: layers.Softmax(axis=1), (3, 4)),
    (lambda: layers.Softmax(axis=[1, 2]), (2, 3, 4)),
    (lambda: layers.LeakyReLU(), (3, 4)),
    (lambda: layers.LeakyReLU(negative_slope=0.05), (2, 2, 3)),
    (lambda: layers.Rescaling(0.5, offset=0.1), (3, 4)),
    (lambda: layers.Rescaling([1.0, -2.0, 3.0]), (2, 3)),
    (lambda: layers.InputLayer(shape=(3, 4)), (3, 4)),
    (lambda: layers.AveragePooling2D(2), (4, 6, 2)),
    (lambda: layers.AveragePooling2D(2, padding="same"), (5, 7, 2)),
    (lambda: layers.AveragePooling2D(3, strides=2), (5, 7, 2)),
    (lambda: layers.AveragePooling2D(3, strides=2, padding="same"), (5, 7, 2)),
    (lambda: layers.AveragePooling2D((2, 3), strides=1), (4, 5, 1)),
    (lambda: layers.MaxPooling1D(), (7, 3)),
    (lambda: layers.MaxPooling1D(3, strides=2, padding="same"), (7, 3)),
    (lambda: layers.AveragePooling1D(2), (6, 3)),
    (lambda: layers.AveragePooling1D(3, strides=2, padding="same"), (7, 3)),
    (lambda: layers.GlobalAveragePooling2D(), (3, 4, 2)),
    (lambda: layers.GlobalAveragePooling2D(keepdims=True), (3, 4, 2)),
    (lambda: layers.GlobalMaxPooling2D(), (3, 4, 2)),
    (lambda: layers.GlobalAveragePooling1D(), (5, 2)),
    (lambda: layers.GlobalMaxPooling1D(), (5, 2)),
    (lambda: layers.GlobalMaxPooling1D(keepdims=True), (5, 2)),
    (lambda: layers.Conv1D(2, 3), (7, 3)),
    (lambda: layers.Conv1D(2, 3, strides=2, padding="same", activation="tanh"), (7, 3)),
    (lambda: layers.Conv1D(2, 3, padding="causal", dilation_rate=2, use_bias=False), (7, 3)),
    (lambda: layers.Conv1D(3, 2, padding="same", dilation_rate=3,
                           kernel_regularizer=an.regularizers.l2(0.1)), (8, 2)),
    (lambda: layers.Conv2D(2, (2, 3), dilation_rate=(2, 1)), (6, 7, 3)),
    (lambda: layers.Conv2D(2, 3, dilation_rate=2, padding="same", activation="tanh"), (6, 5, 2)),
]


@pytest.mark.parametrize("make,shape", GRADIENT_CASES,
                         ids=[f"case{i}" for i in range(len(GRADIENT_CASES))])
def test_new_layer_gradients_match_finite_differences(make, shape):
    layer = built(make(), shape)
    x = data(2, *shape)
    assert layer.forward(x).shape[1:] == layer.compute_output_shape(shape)
    check_layer(layer, x)


def test_dilated_conv2d_chunked_backward_matches_finite_differences(monkeypatch):
    from accelnet.layers import conv
    monkeypatch.setattr(conv, "WORKSPACE_BYTES", 1)  # one sample per im2col chunk
    layer = built(layers.Conv2D(2, 2, dilation_rate=(1, 2), padding="same"), (4, 5, 2))
    check_layer(layer, data(3, 4, 5, 2))


def test_embedding_gradient_sums_repeated_indices():
    layer = built(layers.Embedding(6, 3), (5,))
    layer.needs_input_grad = False  # indices have no gradient
    x = np.array([[0, 2, 2, 5, 2], [5, 1, 0, 0, 3]], dtype=np.float64)
    check_layer(layer, x)
    grad = data(2, 5, 3)
    layer.forward(x)
    layer.backward(grad)
    np.testing.assert_allclose(layer.grads["embeddings"][2], grad[0, 1] + grad[0, 2] + grad[0, 4])
    np.testing.assert_allclose(layer.grads["embeddings"][4], 0)


def test_spatial_dropout_with_fixed_mask_gradients():
    layer = built(layers.SpatialDropout2D(0.5), (3, 3, 2))
    layer.set_mask(np.array([[[[2.0, 0.0]]], [[[0.0, 2.0]]]]))
    check_layer(layer, data(2, 3, 3, 2))


def test_masked_global_average_pooling_1d_gradients():
    layer = built(layers.GlobalAveragePooling1D(), (4, 2))
    mask = np.array([[1, 1, 0, 0], [1, 0, 1, 1]], dtype=bool)
    check_layer(layer, data(2, 4, 2), forward_kwargs={"mask": mask})


# -- forward values from the Keras formulas ------------------------------------------------
def test_softmax_matches_the_keras_docstring_example_and_axis():
    out = layers.Softmax().forward(np.array([[1.0, 2.0, 1.0]]))
    np.testing.assert_allclose(out, [[0.21194157, 0.5761169, 0.21194157]], rtol=1e-6)
    x = data(2, 3, 4)
    e = np.exp(x)
    np.testing.assert_allclose(layers.Softmax(axis=1).forward(x), e / e.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(layers.Softmax(axis=[1, 2]).forward(x),
                               e / e.sum(axis=(1, 2), keepdims=True))


def test_softmax_layer_last_in_a_model_uses_the_fused_loss_and_learns():
    an.random.seed(0)
    model = an.Sequential([layers.Dense(3, input_shape=(4,)), layers.Softmax()])
    model.compile(optimizer=an.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    x = data(64, 4).astype(np.float32)
    y = x[:, :3].argmax(axis=1)
    history = model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert model._fused  # decided when training starts
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    np.testing.assert_allclose(model.predict(x).sum(axis=1), 1, rtol=1e-5)


def test_leaky_relu_keras3_default_slope_and_keras2_alpha():
    x = np.array([[-10.0, -5.0, 0.0, 5.0, 10.0]])
    np.testing.assert_allclose(layers.LeakyReLU().forward(x), [[-3.0, -1.5, 0.0, 5.0, 10.0]])
    with pytest.warns(UserWarning, match="negative_slope"):
        layer = layers.LeakyReLU(alpha=0.5)
    assert layer.negative_slope == 0.5 and layer.get_config()["negative_slope"] == 0.5
    np.testing.assert_allclose(layer.forward(x), [[-5.0, -2.5, 0.0, 5.0, 10.0]])


def test_rescaling_maps_uint8_images_to_floats():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    out = layers.Rescaling(1 / 255).forward(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.0, 0.2, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(layers.Rescaling(1 / 127.5, offset=-1).forward(x.astype(np.float32)),
                               [[-1.0, -0.6, 1.0]], rtol=1e-6)
    np.testing.assert_allclose(layers.Rescaling([1.0, 10.0], offset=[0.5, 0.0]).forward(
        np.ones((1, 2, 2))), [[[1.5, 10.0], [1.5, 10.0]]])


def test_average_pooling_same_averages_only_cells_inside_the_input():
    x = np.arange(9.0).reshape(1, 3, 3, 1)  # [[0 1 2] [3 4 5] [6 7 8]]
    out = layers.AveragePooling2D(2, padding="same").forward(x)[0, :, :, 0]
    np.testing.assert_allclose(out, [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])
    out = layers.AveragePooling2D(2, strides=1).forward(x)[0, :, :, 0]
    np.testing.assert_allclose(out, [[2.0, 3.0], [5.0, 6.0]])


def test_average_pooling_build_allocates_nothing_input_sized():
    layer = layers.AveragePooling2D(3, strides=1, padding="same")
    layer.build((2**20, 2**20, 1))  # a hostile file's shape: must not allocate 2**40 cells
    assert layer._counts is None


def test_average_pooling_tiled_path_equals_the_general_path(monkeypatch):
    x, grad = data(2, 4, 6, 3), data(2, 2, 3, 3, seed=2)
    fast = built(layers.AveragePooling2D(2), (4, 6, 3))
    assert fast._tiled()
    out, dx = fast.forward(x), fast.backward(grad)
    slow = built(layers.AveragePooling2D(2), (4, 6, 3))
    monkeypatch.setattr(slow, "_tiled", lambda: False)
    np.testing.assert_allclose(slow.forward(x), out)
    np.testing.assert_allclose(slow.backward(grad), dx)
    np.testing.assert_allclose(out, x.reshape(2, 2, 2, 3, 2, 3).mean(axis=(2, 4)))


def test_one_d_pooling_values():
    x = np.array([1.0, 5.0, 2.0, 8.0, 3.0]).reshape(1, 5, 1)
    np.testing.assert_array_equal(layers.MaxPooling1D().forward(x).ravel(), [5, 8])
    np.testing.assert_array_equal(layers.MaxPooling1D(2, padding="same").forward(x).ravel(), [5, 8, 3])
    np.testing.assert_allclose(layers.AveragePooling1D(2, padding="same").forward(x).ravel(),
                               [3.0, 5.0, 3.0])
    np.testing.assert_allclose(layers.AveragePooling1D(3, strides=1).forward(x).ravel(),
                               [8 / 3, 5.0, 13 / 3])


def test_global_pooling_values_and_tied_maxima_share_the_gradient():
    x = data(2, 3, 4, 5)
    np.testing.assert_allclose(layers.GlobalAveragePooling2D().forward(x), x.mean(axis=(1, 2)))
    np.testing.assert_allclose(layers.GlobalMaxPooling2D().forward(x), x.max(axis=(1, 2)))
    assert layers.GlobalMaxPooling2D(keepdims=True).forward(x).shape == (2, 1, 1, 5)
    seq = data(2, 6, 3)
    np.testing.assert_allclose(layers.GlobalAveragePooling1D().forward(seq), seq.mean(axis=1))
    np.testing.assert_allclose(layers.GlobalMaxPooling1D().forward(seq), seq.max(axis=1))
    layer = layers.GlobalMaxPooling1D()
    layer.forward(np.array([[[2.0], [0.0], [2.0]]]))  # a two-way tie (TensorFlow splits it)
    np.testing.assert_allclose(layer.backward(np.array([[1.0]])).ravel(), [0.5, 0.0, 0.5])


def test_masked_global_average_pooling_averages_unmasked_steps():
    x = np.array([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])
    mask = np.array([[True, True, False], [True, True, True]])
    np.testing.assert_allclose(layers.GlobalAveragePooling1D().forward(x, mask=mask), [[2.0], [4.0]])


def test_embedding_looks_up_rows_and_casts_float_indices():
    layer = built(layers.Embedding(4, 2), (3,))
    table = layer.params["embeddings"]
    assert np.abs(table).max() <= 0.05  # Keras's 'uniform' = RandomUniform(-0.05, 0.05)
    out = layer.forward(np.array([[3.0, 0.0, 3.0]]))
    np.testing.assert_array_equal(out, table[[3, 0, 3]][None])
    assert layer.compute_output_shape((3,)) == (3, 2)
    assert layers.Embedding(4, 2).forward(np.array([[[1, 2]]])).shape == (1, 1, 2, 2)  # any rank


@pytest.mark.parametrize("bad", [4, -1])
def test_embedding_out_of_range_index_names_layer_and_range(bad):
    layer = layers.Embedding(4, 2, name="emb")
    with pytest.raises(errors.InvalidArgumentError, match=rf"'emb'.*index {bad}.*\[0, 3\]"):
        layer.forward(np.array([[0.0, bad]]))


def test_embedding_mask_zero_gives_the_padding_mask_and_warns():
    with pytest.warns(UserWarning, match="do not pass masks"):
        layer = layers.Embedding(5, 2, mask_zero=True)
    np.testing.assert_array_equal(layer.compute_mask(np.array([[3, 0, 1, 0]])),
                                  [[True, False, True, False]])
    assert layers.Embedding(5, 2).compute_mask(np.array([[0]])) is None


def conv1d_loop(x, kernel, bias, stride, padding, dilation):
    """Keras's Conv1D written out: y[t] = sum_k x[t·s + k·d − left] · W[k] + b."""
    n, steps, _ = x.shape
    k = kernel.shape[0]
    span = dilation * (k - 1) + 1
    if padding == "valid":
        left, out = 0, (steps - span) // stride + 1
    elif padding == "causal":
        left, out = span - 1, (steps - 1) // stride + 1
    else:
        out = -(-steps // stride)
        left = max((out - 1) * stride + span - steps, 0) // 2
    y = np.zeros((n, out, kernel.shape[2]))
    for t in range(out):
        for j in range(k):
            src = t * stride + j * dilation - left
            if 0 <= src < steps:
                y[:, t] += x[:, src] @ kernel[j]
    return y + bias


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("stride,dilation", [(1, 1), (2, 1), (1, 2), (1, 3)])
def test_conv1d_matches_the_direct_formula(padding, stride, dilation):
    layer = built(layers.Conv1D(3, 3, strides=stride, padding=padding, dilation_rate=dilation), (9, 2))
    layer.params["bias"][:] = [0.1, -0.2, 0.3]
    x = data(2, 9, 2)
    expected = conv1d_loop(x, layer.params["kernel"], layer.params["bias"], stride, padding, dilation)
    assert layer.params["kernel"].shape == (3, 2, 3)  # Keras's (K, C, F) layout
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)


def test_causal_conv1d_output_does_not_see_the_future():
    layer = built(layers.Conv1D(1, 3, padding="causal", dilation_rate=2), (8, 1))
    x = data(1, 8, 1)
    later = x.copy()
    later[0, 5:] += 10.0
    np.testing.assert_array_equal(layer.forward(x)[0, :5], layer.forward(later)[0, :5])


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_dilated_conv2d_matches_the_direct_formula(padding):
    layer = built(layers.Conv2D(2, (2, 3), dilation_rate=(2, 3), padding=padding), (7, 8, 2))
    w, b = layer.params["kernel"], layer.params["bias"]
    x = data(2, 7, 8, 2)
    span = (2 * 1 + 1, 3 * 2 + 1)
    if padding == "same":
        top, left = (span[0] - 1) // 2, (span[1] - 1) // 2
        oh, ow = 7, 8
    else:
        top = left = 0
        oh, ow = 7 - span[0] + 1, 8 - span[1] + 1
    expected = np.zeros((2, oh, ow, 2)) + b
    for i in range(oh):
        for j in range(ow):
            for a in range(2):
                for c in range(3):
                    r, s = i + 2 * a - top, j + 3 * c - left
                    if 0 <= r < 7 and 0 <= s < 8:
                        expected[:, i, j] += x[:, r, s] @ w[a, c]
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12)


def test_spatial_dropout_drops_whole_channels_and_is_identity_in_inference():
    an.random.seed(0)
    layer = layers.SpatialDropout2D(0.5)
    x = np.ones((64, 3, 3, 8), dtype=np.float32)
    y = layer.forward(x, training=True)
    assert (y == y[:, :1, :1, :]).all()  # one draw per (sample, channel)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert abs((y[:, 0, 0, :] == 0).mean() - 0.5) < 0.1
    np.testing.assert_array_equal(layer.forward(x, training=False), x)


def test_input_layer_declares_the_shape_of_a_sequential():
    model = an.Sequential([layers.InputLayer(shape=(4,)), layers.Dense(2)])
    model.build()
    assert model.output_shape == (2,) and model.count_params() == 10
    assert layers.InputLayer(batch_shape=(None, 3, 2)).input_shape == (3, 2)
    with pytest.warns(UserWarning, match="shape"):
        assert layers.InputLayer(input_shape=(5,)).input_shape == (5,)
    assert layers.InputLayer(shape=(4,), name="in").get_config() == {
        "name": "in", "batch_shape": [None, 4], "dtype": None}


def test_input_layer_with_unknown_steps_builds_from_the_data_and_checks_the_rest():
    model = an.Sequential([layers.InputLayer(shape=(None, 3)), layers.GlobalAveragePooling1D(),
                           layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((4, 7, 3)), np.zeros((4, 2)), verbose=0)
    assert model.layers[0].input_shape == (7, 3)
    layer = layers.InputLayer(shape=(None, 3), name="seq")
    with pytest.raises(errors.ShapeError, match=r"'seq'.*\(None, None, 3\).*\(None, 7, 4\)"):
        layer.forward(np.ones((1, 7, 4)))


# -- shapes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("size,pool,stride,padding,expected", [
    (7, 2, None, "valid", 3), (7, 2, None, "same", 4), (7, 3, 2, "valid", 3), (7, 3, 2, "same", 4),
    (8, 3, 1, "same", 8), (8, 2, 3, "valid", 3)])
def test_pooling_output_lengths_follow_keras(size, pool, stride, padding, expected):
    assert layers.AveragePooling2D(pool, strides=stride, padding=padding).compute_output_shape(
        (size, size, 2)) == (expected, expected, 2)
    for cls in (layers.MaxPooling1D, layers.AveragePooling1D):
        assert cls(pool, strides=stride, padding=padding).compute_output_shape((size, 3)) == (expected, 3)


@pytest.mark.parametrize("padding,stride,dilation,expected", [
    ("valid", 1, 1, 8), ("valid", 2, 1, 4), ("valid", 1, 2, 6), ("same", 1, 2, 10),
    ("same", 3, 1, 4), ("causal", 1, 3, 10), ("causal", 2, 1, 5)])
def test_conv1d_output_lengths_follow_keras(padding, stride, dilation, expected):
    layer = layers.Conv1D(4, 3, strides=stride, padding=padding, dilation_rate=dilation)
    assert layer.compute_output_shape((10, 2)) == (expected, 4)


def test_global_pooling_and_embedding_shapes():
    assert layers.GlobalAveragePooling2D().compute_output_shape((5, 6, 7)) == (7,)
    assert layers.GlobalMaxPooling2D(keepdims=True).compute_output_shape((5, 6, 7)) == (1, 1, 7)
    assert layers.GlobalMaxPooling1D().compute_output_shape((5, 7)) == (7,)
    assert layers.Embedding(100, 8).compute_output_shape((12,)) == (12, 8)


# -- save / load -------------------------------------------------------------------------------
def image_model():
    return an.Sequential([
        layers.InputLayer(shape=(8, 8, 1)), layers.Rescaling(1 / 255),
        layers.Conv2D(4, 3, padding="same", dilation_rate=2), layers.LeakyReLU(0.1),
        layers.SpatialDropout2D(0.25), layers.AveragePooling2D(2),
        layers.AveragePooling2D(3, strides=1, padding="same"), layers.Conv2D(3, 2),
        layers.GlobalMaxPooling2D(), layers.Dense(3), layers.Softmax()])


def image_model_2():
    return an.Sequential([layers.Input(shape=(6, 6, 2)), layers.GlobalAveragePooling2D(),
                          layers.Dense(3, activation="softmax")])


def sequence_model():
    return an.Sequential([
        layers.InputLayer(shape=(10,)), layers.Embedding(20, 4, embeddings_initializer="normal"),
        layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"),
        layers.MaxPooling1D(2), layers.AveragePooling1D(2, padding="same"),
        layers.Conv1D(3, 2, padding="same"), layers.GlobalAveragePooling1D(), layers.Dense(3),
        layers.Softmax(axis=-1)])


def sequence_model_2():
    return an.Sequential([layers.Embedding(20, 4, input_shape=(10,)), layers.GlobalMaxPooling1D(),
                          layers.Dense(3, activation="softmax")])


def dataset(model_fn, n=48):
    rng = np.random.default_rng(0)
    if model_fn in (sequence_model, sequence_model_2):
        x = rng.integers(0, 20, (n, 10))
        return x, x[:, 0] % 3
    shape = (8, 8, 1) if model_fn is image_model else (6, 6, 2)
    x = rng.integers(0, 256, (n,) + shape).astype(np.float32)
    return x, (x.reshape(n, -1)[:, 0] > 127).astype(np.int64)


@pytest.mark.parametrize("model_fn", [image_model, image_model_2, sequence_model, sequence_model_2])
def test_models_with_the_new_layers_save_and_load_bit_exact(model_fn, tmp_path):
    an.random.seed(0)
    model = model_fn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = dataset(model_fn)
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = an.models.load_model(tmp_path / "m.npz")
    assert [type(l) for l in loaded.layers] == [type(l) for l in model.layers]
    assert [l.get_config() for l in loaded.layers] == [l.get_config() for l in model.layers]
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# -- strict (CuPy-like) backend ----------------------------------------------------------------
@pytest.fixture
def strict():
    previous = an_backend.get_backend()
    backend = an.use(StrictBackend())
    try:
        with kernels.implementation("reference"):
            yield backend
    finally:
        an.use(previous)


@pytest.mark.parametrize("model_fn", [image_model, sequence_model, sequence_model_2])
def test_new_layers_train_and_predict_on_the_strict_backend(strict, model_fn):
    an.random.seed(0)
    model = model_fn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = dataset(model_fn)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    probs = model.predict(x)
    assert isinstance(probs, np.ndarray) and probs.shape == (48, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


# -- bad arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda: layers.LeakyReLU(-0.1), "negative_slope must be a float >= 0"),
    (lambda: layers.Embedding(0, 3), "input_dim must be a positive integer"),
    (lambda: layers.Embedding(10, 2.5), "output_dim must be a positive integer"),
    (lambda: layers.AveragePooling2D(2, padding="full"), "padding must be 'valid' or 'same'"),
    (lambda: layers.AveragePooling2D(2, data_format="channels_first"), "channels_last"),
    (lambda: layers.MaxPooling1D(0), "pool_size must be a positive int"),
    (lambda: layers.GlobalMaxPooling1D(data_format="channels_first"), "channels_last"),
    (lambda: layers.Conv1D(2, 3, padding="full"), "'valid', 'same' or 'causal'"),
    (lambda: layers.Conv2D(2, 3, padding="causal"), "padding must be 'valid' or 'same'"),
    (lambda: layers.Conv1D(2, 0), "kernel_size must be a positive integer"),
    (lambda: layers.Conv2D(2, 3, strides=2, dilation_rate=2), "strides > 1 is not supported"),
    (lambda: layers.Conv1D(2, 3, strides=2, dilation_rate=2), "Conv1D.*strides > 1 is not supported"),
    (lambda: layers.Conv2D(2, 3, dilation_rate=0), "dilation_rate must be >= 1"),
    (lambda: layers.Rescaling("1/255"), "scale must be a number"),
    (lambda: layers.Softmax(axis="last"), "axis must be an int"),
    (lambda: layers.InputLayer(), "must pass a `shape`"),
    (lambda: layers.InputLayer(shape=(3,), batch_shape=(None, 3)), "both `shape` and `batch_shape`"),
    (lambda: layers.InputLayer(shape=(0, 3)), "shape must be a tuple of positive ints"),
    (lambda: layers.SpatialDropout2D(1.5), "rate must be in"),
    (lambda: layers.InputLayer(shape=(3,), sparse=True), "sparse= is not supported"),
    (lambda: layers.Embedding(10, 2, embeddings_constraint="non_neg"), "constraint is not supported"),
])
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(errors.InvalidArgumentError, match=match):
        make()


@pytest.mark.parametrize("layer,shape,match", [
    (lambda: layers.Conv1D(2, 3, name="c1"), (8, 8, 1), r"'c1' expects input of shape \(batch, steps"),
    (lambda: layers.MaxPooling1D(name="p1"), (8, 8, 1), r"'p1' expects input of shape \(batch, steps"),
    (lambda: layers.GlobalAveragePooling2D(name="g2"), (8, 3), r"'g2' expects.*height, width"),
    (lambda: layers.GlobalMaxPooling1D(name="g1"), (8, 8, 3), r"'g1' expects.*steps"),
    (lambda: layers.SpatialDropout2D(0.1, name="sd"), (8, 3), r"'sd' expects.*height, width"),
    (lambda: layers.AveragePooling2D(4, name="ap"), (3, 3, 1), r"'ap'.*larger than the padded input"),
    (lambda: layers.Rescaling([1.0, 2.0], name="rs"), (4, 3), r"'rs'.*2 values.*3 channels"),
])
def test_wrong_input_shapes_raise_shape_errors_naming_the_layer(layer, shape, match):
    with pytest.raises(errors.ShapeError, match=match):
        layer().build(shape)


def test_softmax_axis_out_of_range_names_the_layer():
    with pytest.raises(errors.InvalidArgumentError, match=r"'sm'.*axis 3 is out of range"):
        layers.Softmax(axis=3, name="sm").forward(np.ones((2, 4)))


def test_unknown_layer_message_lists_the_new_layers():
    with pytest.raises(errors.DataFileError, match="GlobalAveragePooling2D.*LeakyReLU"):
        an.models.model_from_config({"layers": [{"class_name": "GlobalAvgPool", "config": {}}]})


@pytest.mark.parametrize("cls,args,base", [
    (layers.Conv1D, (2, 3), "conv1d"), (layers.MaxPooling1D, (), "max_pooling1d"),
    (layers.GlobalAveragePooling2D, (), "global_average_pooling2d"),
    (layers.LeakyReLU, (), "leaky_re_lu"), (layers.InputLayer, ((3,),), "input_layer"),
    (layers.SpatialDropout2D, (0.1,), "spatial_dropout2d"), (layers.Conv2D, (2, 3), "conv2d")])
def test_default_names_follow_keras(cls, args, base):
    import re
    assert re.fullmatch(rf"{base}(_\d+)?", cls(*args).name)

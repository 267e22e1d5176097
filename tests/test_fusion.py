"""Fused layer pairs in a model's training step (accelnet.fusion: Conv2D + MaxPooling2D on
the CPU's worker threads) give the same bits as the layers run one after the other, and
fuse only where the graph and the layers allow it."""
import numpy as np
import pytest

import accelnet as an
from accelnet import fusion, kernels, random
from accelnet.errors import InvalidArgumentError

L = an.layers


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Several slices per batch: the threaded machinery at tiny sizes."""
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "16")
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)
    monkeypatch.delenv("ACCELNET_FUSE", raising=False)


def convnet(pool_kwargs, kernel=3, padding="valid", channels=8):
    random.seed(3)
    model = an.Sequential([
        L.Conv2D(channels, kernel, padding=padding, activation="relu", input_shape=(11, 11, 2)),
        L.MaxPooling2D(**pool_kwargs),
        L.Conv2D(12, kernel, padding="same", activation="relu"),
        L.MaxPooling2D(2, padding="same"), L.Flatten(), L.Dense(5, activation="softmax")])
    model.compile(optimizer=an.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return model


def train(model, x, y, steps=3):
    losses = [float(model.train_on_batch(x, y)) for _ in range(steps)]
    return losses, model.get_weights()


@pytest.mark.parametrize("pool_kwargs,kernel,padding", [
    (dict(pool_size=2), 3, "valid"), (dict(pool_size=2, padding="same"), 5, "same"),
    (dict(pool_size=3, strides=2, padding="same"), 3, "same"),  # overlapping windows
    (dict(pool_size=(2, 3), strides=(1, 2)), 3, "valid")])
def test_fused_steps_are_the_unfused_steps_bit_for_bit(monkeypatch, pool_kwargs, kernel, padding):
    """Both Conv2D + MaxPooling2D pairs fused: the same bits. (The second Conv2D, 'same' with 8
    channels, takes both Winograd gradients from one transform fused; unfused too here, so
    that the two runs differ in the fusion only.)"""
    monkeypatch.setattr(kernels, "winograd_grads_applies", lambda *args: True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 11, 11, 2)).astype(np.float32)
    y = rng.integers(0, 5, 24)
    runs = {}
    for fuse in ("1", "0"):
        monkeypatch.setenv("ACCELNET_FUSE", fuse)
        model = convnet(pool_kwargs, kernel, padding)
        runs[fuse] = train(model, x, y)
        if fuse == "1":
            assert len(model._fused_pairs) == 2  # both Conv2D + MaxPooling2D pairs ran fused
            assert kernels.threaded(x) and len(model.layers[0]._tasks(x)) > 2
        else:
            assert model._fused_pairs == {}
    assert runs["1"][0] == runs["0"][0]
    for got, want in zip(runs["1"][1], runs["0"][1]):
        np.testing.assert_array_equal(got, want)


def test_fusion_only_where_the_graph_and_the_layer_allow_it():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 11, 11, 2)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    inputs = an.Input(shape=(11, 11, 2))
    shared_out = L.Conv2D(8, 3, activation="relu")(inputs)  # two consumers: never fused
    a, b = L.MaxPooling2D(2)(shared_out), L.MaxPooling2D(3)(shared_out)
    tanh_out = L.Conv2D(8, 3, activation="tanh")(inputs)  # no ReLU: the layer declines
    c = L.MaxPooling2D(3)(tanh_out)
    relu_out = L.Conv2D(8, 3, activation="relu")(inputs)  # fused
    d = L.MaxPooling2D(3)(relu_out)
    merged = L.Concatenate()([L.Flatten()(t) for t in (a, b, c, d)])
    model = an.Model(inputs, L.Dense(5, activation="softmax")(merged))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    pairs = fusion.pairs(model._graph)
    assert id(shared_out.node) not in pairs
    assert pairs[id(tanh_out.node)] is c.node and pairs[id(relu_out.node)] is d.node
    model.train_on_batch(x, y)
    assert list(model._fused_pairs.values()) == [relu_out.node]
    model.predict(x, verbose=0)
    assert model._fused_pairs == {}  # inference never fuses


def test_backward_must_match_the_forward_that_ran():
    layer = L.Conv2D(8, 3, activation="relu")
    pool = L.MaxPooling2D(2)
    x = np.random.default_rng(2).standard_normal((4, 9, 9, 2)).astype(np.float32)
    layer.build(x.shape[1:])
    pool.build(layer.compute_output_shape(x.shape[1:]))
    assert layer.fuses_with(pool, x) and not layer.fuses_with(L.Flatten(), x)
    out = layer.forward_fused(x, pool)
    assert out.shape == (4, 3, 3, 8)
    with pytest.raises(InvalidArgumentError, match="backward_fused"):
        layer.backward(np.ones_like(out))
    layer.backward_fused(np.ones_like(out))
    with pytest.raises(InvalidArgumentError, match="forward_fused first"):
        layer.backward_fused(np.ones_like(out))


@pytest.mark.parametrize("kernel,padding,pool_kwargs", [
    (3, "valid", dict(pool_size=2)), (5, "same", dict(pool_size=2, padding="same")),
    (3, "valid", dict(pool_size=3, strides=2, padding="same"))])
def test_winograd_pooling_per_image_block_is_the_unfused_step_bit_for_bit(
        monkeypatch, kernel, padding, pool_kwargs):
    """A Winograd Conv2D (8+ input channels) with its pool runs forward and backward per image
    block (`winograd_conv_pool`, and `winograd_pool_grads` where it takes both gradients at
    once): the same losses and weights as the two layers one after the other, bit for bit
    ('valid') or to rounding ('same': the unfused layer's input gradient is a second
    convolution)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 11, 11, 2)).astype(np.float32)
    y = rng.integers(0, 5, 12)
    calls = []
    for name in ("winograd_conv_pool", "winograd_pool_grads"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _n=name, _r=real, **k:
                            calls.append(_n) or _r(*a, **k))

    def model():
        random.seed(5)
        net = an.Sequential([
            L.Conv2D(8, 3, padding="same", activation="relu", input_shape=(11, 11, 2)),
            L.Conv2D(12, kernel, padding=padding, activation="relu"),
            L.MaxPooling2D(**pool_kwargs), L.Conv2D(4, 3, padding="same", activation="relu"),
            L.Flatten(), L.Dense(5, activation="softmax")])
        net.compile(optimizer=an.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
        return net

    runs = {}
    for fuse in ("1", "0"):
        monkeypatch.setenv("ACCELNET_FUSE", fuse)
        runs[fuse] = train(model(), x, y)
        if fuse == "1":
            assert "winograd_conv_pool" in calls
            assert "winograd_pool_grads" in calls
            del calls[:]
    assert calls == []  # unfused: the layers' own kernels
    if padding == "valid":
        assert runs["1"][0] == runs["0"][0]
        for got, want in zip(runs["1"][1], runs["0"][1]):
            np.testing.assert_array_equal(got, want)
    else:  # fused, the input gradient comes from the weight gradient's transform of dz
        np.testing.assert_allclose(runs["1"][0], runs["0"][0], rtol=1e-5)
        for got, want in zip(runs["1"][1], runs["0"][1]):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def chained_convnet():
    """mnist_cnn's shape in small: conv -> conv -> pool, then a third conv whose producer
    needs an input gradient (never chained)."""
    random.seed(4)
    model = an.Sequential([
        L.Conv2D(6, 3, activation="relu", input_shape=(12, 12, 1)),
        L.Conv2D(8, 3, activation="relu"),
        L.MaxPooling2D(2), L.Conv2D(8, 3, padding="same", activation="relu"),
        L.Flatten(), L.Dense(5, activation="softmax")])
    model.compile(optimizer=an.optimizers.SGD(1e-9), loss="sparse_categorical_crossentropy")
    return model


def one_step_grads(model, x, y):
    model.train_on_batch(x, y)
    return [g.copy() for layer in model.layers for g in layer.grads.values()]


def test_a_chained_backward_gives_the_unchained_gradients(monkeypatch):
    """The first convolution's backward runs inside the second's, over the second's batch
    slices (`Conv2D.backward_chained`): the gradients of the layers run one after the
    other, to rounding (the first layer's per-slice sums are grouped by the second layer's
    slices, not its own)."""
    from accelnet.layers.conv import Conv2D
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "64")  # slices of 5 images for one, 2 for the other
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20, 12, 12, 1)).astype(np.float32)
    y = rng.integers(0, 5, 20)
    calls = []
    real = Conv2D.backward_chained
    monkeypatch.setattr(Conv2D, "backward_chained",
                        lambda self, g, p: calls.append((self.name, p.name)) or real(self, g, p))
    runs = {}
    for fuse in ("1", "0"):
        monkeypatch.setenv("ACCELNET_FUSE", fuse)
        model = chained_convnet()
        runs[fuse] = one_step_grads(model, x, y)
        if fuse == "1":
            first, second = model.layers[:2]
    assert calls == [(second.name, first.name)]  # the third's producer needs dx: not chained
    x1 = np.zeros((20,) + second.input_shape, np.float32)
    assert first._tasks(x) != second._tasks(x1)  # the two layers slice the batch differently
    for got, want in zip(runs["1"], runs["0"]):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_a_chained_backward_has_the_same_bits_for_every_thread_count(monkeypatch):
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "64")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((20, 12, 12, 1)).astype(np.float32)
    y = rng.integers(0, 5, 20)
    runs = []
    for threads in ("1", "2", "3"):
        monkeypatch.setenv("ACCELNET_NUM_THREADS", threads)
        runs.append(one_step_grads(chained_convnet(), x, y))
    for other in runs[1:]:
        for got, want in zip(other, runs[0]):
            np.testing.assert_array_equal(got, want)


def consumer_variants():
    """conv -> conv (no activation, stride 2, or 'same' with tanh) -> Dense: chains that
    end without a fused pool."""
    random.seed(8)
    return [an.Sequential([L.Conv2D(6, 3, activation="relu", input_shape=(12, 12, 1)),
                           L.Conv2D(8, 3, **kwargs), L.Flatten(),
                           L.Dense(5, activation="softmax")])
            for kwargs in (dict(), dict(strides=2, activation="relu"),
                           dict(padding="same", activation="tanh"))]


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_chains_without_a_pool_give_the_unchained_steps(monkeypatch, variant):
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "64")
    rng = np.random.default_rng(9)
    x = rng.standard_normal((20, 12, 12, 1)).astype(np.float32)
    y = rng.integers(0, 5, 20)
    runs = {}
    for fuse in ("1", "0"):
        monkeypatch.setenv("ACCELNET_FUSE", fuse)
        model = consumer_variants()[variant]
        model.compile(optimizer=an.optimizers.SGD(1e-9), loss="sparse_categorical_crossentropy")
        loss = float(model.train_on_batch(x, y))
        chained = (list(model._chained_forward_layers), list(model._chained_layers))
        runs[fuse] = [loss] + [g.copy() for layer in model.layers for g in layer.grads.values()]
        if fuse == "1":
            assert chained == ([model.layers[1]], [model.layers[0]])
    assert runs["1"][0] == runs["0"][0]  # the forward: same bits
    for got, want in zip(runs["1"][1:], runs["0"][1:]):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * np.abs(want).max())


def test_a_chained_forward_gives_the_unchained_outputs_bit_for_bit(monkeypatch):
    """The second convolution (and its fused pool) runs inside the first's forward, per
    slice of the second's (`Conv2D.forward_chained`): every layer's output and the model's
    are the same bits as with the layers one after the other."""
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "64")
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20, 12, 12, 1)).astype(np.float32)
    model = chained_convnet()
    model.predict(x[:2], verbose=0)  # build
    runs = {}
    for fuse in ("1", "0"):
        monkeypatch.setenv("ACCELNET_FUSE", fuse)
        with kernels.worker_step(x):
            out = model.forward(x, training=True)
        conv1, conv2, _, conv3 = model.layers[:4]
        runs[fuse] = [out.copy(), conv2._x.copy(), conv3._x.copy()]  # conv1's, pool's output
        chained = list(model._chained_forward_layers)
        model.backward(np.zeros_like(out))  # clear the layers' forward state
        if fuse == "1":
            assert chained == [model.layers[1]]
            assert list(model._fused_pairs.values())[0].layer is model.layers[1]
        else:
            assert chained == []
    for got, want in zip(runs["1"], runs["0"]):
        np.testing.assert_array_equal(got, want)

"""layer.trainable = False as Keras 3 honours it, and the small model/layer utilities
around it: get_layer, layer.get_weights/set_weights, summary(line_length=), History.params."""
import numpy as np
import pytest

import accelnet as an
from accelnet import layers as L
from accelnet.errors import InvalidArgumentError, ShapeError


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def small(**kwargs):
    an.random.seed(0)
    return an.Sequential([L.Dense(4, activation="relu", input_shape=(3,), name="first"),
                          L.BatchNormalization(name="bn"), L.Dense(2, activation="softmax", name="head")],
                         **kwargs)


def summary_text(model, **kwargs):
    lines = []
    model.summary(print_fn=lines.append, **kwargs)
    return "\n".join(lines)


def test_frozen_layer_keeps_its_weights_and_leaves_the_optimizer():
    x, y = data()
    model = small()
    model.get_layer("first").trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.build()
    first, head = model.get_layer("first").get_weights(), model.get_layer("head").get_weights()
    model.fit(x, y, epochs=2, verbose=0)
    for before, after in zip(first, model.get_layer("first").get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.array_equal(head[0], model.get_layer("head").get_weights()[0])
    assert not any(k.startswith("first/") for k in model.optimizer.slots["m"])
    assert set(model.optimizer.slots["m"]) == {"bn/gamma", "bn/beta", "head/kernel", "head/bias"}


def test_frozen_batch_normalization_runs_in_inference_mode():
    x, y = data()
    model = small()
    bn = model.get_layer("bn")
    bn.trainable = False
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.build()
    moving = [w.copy() for w in bn.get_weights()[2:]]
    np.testing.assert_array_equal(moving[0], np.zeros(4))
    model.fit(x, y, epochs=1, verbose=0)
    for before, after in zip(moving, bn.get_weights()[2:]):
        np.testing.assert_array_equal(before, after)  # no statistics update
    h = np.maximum(x[:5] @ model.get_layer("first").get_weights()[0]
                   + model.get_layer("first").get_weights()[1], 0)
    out = bn(an.get_backend().asarray(h), training=True)  # frozen: moving mean 0, variance 1
    np.testing.assert_allclose(an.backend.to_numpy(out), h / np.sqrt(1 + 1e-3), rtol=1e-5)


def test_summary_counts_trainable_and_non_trainable_as_keras():
    model = small()
    # first 3·4+4 = 16; bn gamma+beta 8 trainable, moving mean+variance 8 not; head 4·2+2 = 10
    text = summary_text(model)
    assert "Total params: 42" in text and "Trainable params: 34" in text
    assert "Non-trainable params: 8" in text
    model.get_layer(index=0).trainable = False
    text = summary_text(model)
    assert "Trainable params: 18" in text and "Non-trainable params: 24" in text


def test_freezing_a_nested_model_freezes_its_layers():
    x, y = data()
    base = small()
    base.build()
    model = an.Sequential([base, L.Dense(2, activation="softmax")])
    base.trainable = False
    assert all(not l.trainable for l in base.layers)
    assert "Trainable params: 6" in summary_text(model)  # the new head only: 2·2 + 2
    model.compile(optimizer=an.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    before = base.get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    base.trainable = True
    assert all(l.trainable for l in base.layers)


def test_get_layer_by_name_and_index():
    model = small()
    assert model.get_layer("bn") is model.layers[1]
    assert model.get_layer(index=-1).name == "head"
    with pytest.raises(InvalidArgumentError, match="No such layer: 'nope'"):
        model.get_layer("nope")
    with pytest.raises(InvalidArgumentError, match="out of range"):
        model.get_layer(index=7)


def test_layer_get_and_set_weights():
    model = small()
    model.build()
    head = model.get_layer("head")
    kernel, bias = head.get_weights()
    assert kernel.shape == (4, 2) and bias.shape == (2,)
    head.set_weights([np.ones((4, 2)), np.full(2, 0.5)])
    np.testing.assert_array_equal(head.get_weights()[0], np.ones((4, 2)))
    with pytest.raises(ShapeError, match=r"'kernel' of layer 'head'.*\(4, 2\).*\(2, 4\)"):
        head.set_weights([np.ones((2, 4)), np.zeros(2)])
    with pytest.raises(ShapeError, match="2 weight arrays, but 1"):
        head.set_weights([np.ones((4, 2))])
    assert len(model.get_layer("bn").get_weights()) == 4  # gamma, beta, moving mean, variance


def test_summary_line_length():
    text = summary_text(small(), line_length=60)
    lines = text.splitlines()
    assert lines[1] == "_" * 60 and lines[3] == "=" * 60
    assert max(len(line) for line in lines) <= 60
    assert "first (Dense)" in text and "(None, 4)" in text


def test_history_params():
    x, y = data(n=100)
    model = small()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, batch_size=10, epochs=2, verbose=0)
    assert history.params == {"verbose": 0, "epochs": 2, "steps": 10}
    assert history.epoch == [0, 1] and model.history is history


# -- sample_weight and class_weight (Keras's sum_over_batch_size: sum(w·loss) / batch) ---------
def linear(kernel=1.0):
    model = an.Sequential([L.Dense(1, use_bias=False, input_shape=(1,),
                                   kernel_initializer=an.initializers.Constant(kernel))])
    model.compile(optimizer=an.optimizers.SGD(0.01), loss="mse")
    return model


def test_evaluate_and_fit_weight_each_sample_by_hand():
    x = np.array([[1.0], [2.0]], np.float32)
    y = np.zeros((2, 1), np.float32)
    sw = np.array([1.0, 3.0], np.float32)
    model = linear()
    # predictions 1, 2; squared errors 1, 4; (1·1 + 3·4) / 2 = 6.5
    assert model.evaluate(x, y, sample_weight=sw, verbose=0) == pytest.approx(6.5)
    assert model.evaluate(x, y, sample_weight=sw, batch_size=1, verbose=0) == pytest.approx(6.5)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(2.5)
    history = model.fit(x, y, sample_weight=sw, batch_size=2, epochs=1, shuffle=False, verbose=0)
    assert history.history["loss"] == [pytest.approx(6.5)]
    # dL/dw = (1·2·1·1 + 3·2·2·2) / 2 = 13; w = 1 − 0.01·13
    np.testing.assert_allclose(model.get_weights()[0], [[0.87]], rtol=1e-6)


def test_class_weight_is_the_sample_weight_of_each_class():
    x = np.zeros((3, 2), np.float32)
    y = np.array([0, 1, 1])
    model = an.Sequential([L.Dense(2, activation="softmax", input_shape=(2,),
                                   kernel_initializer="zeros")])
    model.compile(optimizer=an.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, class_weight={0: 1.0, 1: 2.0}, batch_size=3, epochs=1, verbose=0)
    # uniform probabilities: every sample loses ln 2; weights 1, 2, 2 -> 5/3·ln 2
    assert history.history["loss"][0] == pytest.approx(5 / 3 * np.log(2), rel=1e-6)

    def trained(**weights):
        an.random.seed(0)
        m = an.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
        m.compile(optimizer="adam", loss="categorical_crossentropy")
        rng = np.random.default_rng(0)
        xs, labels = rng.standard_normal((30, 4)).astype(np.float32), rng.integers(0, 3, 30)
        m.fit(xs, np.eye(3)[labels], epochs=2, batch_size=8, verbose=0, shuffle=False,
              **{k: (v(labels) if callable(v) else v) for k, v in weights.items()})
        return m.get_weights()

    table = {0: 0.5, 1: 1.0, 2: 3.0}
    by_class = trained(class_weight=table)  # one-hot labels: the class is the argmax
    by_sample = trained(sample_weight=lambda labels: np.array([table[c] for c in labels]))
    for a, b in zip(by_class, by_sample):
        np.testing.assert_array_equal(a, b)


def test_weighted_metrics_and_weighted_validation_data():
    x = np.array([[1.0], [-1.0], [2.0]], np.float32)
    y = np.array([[1.0], [1.0], [0.0]], np.float32)
    sw = np.array([1.0, 2.0, 1.0], np.float32)
    model = an.Sequential([L.Dense(1, activation="sigmoid", use_bias=False, input_shape=(1,),
                                   kernel_initializer="ones")])
    model.compile(optimizer=an.optimizers.SGD(0.0 + 1e-12), loss="binary_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    logs = model.evaluate(x, y, sample_weight=sw, verbose=0, return_dict=True)
    # hits 1, 0, 0: plain accuracy 1/3; weighted (1·1) / (1 + 2 + 1) = 1/4
    assert logs["accuracy"] == pytest.approx(1 / 3) and logs["weighted_accuracy"] == pytest.approx(0.25)
    history = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y, sw))
    assert history.history["val_weighted_accuracy"][0] == pytest.approx(0.25)


def test_bad_weights_get_clear_errors():
    model = linear()
    x, y = np.ones((4, 1), np.float32), np.zeros((4, 1), np.float32)
    with pytest.raises(InvalidArgumentError, match="class_weight or sample_weight"):
        model.fit(x, y, sample_weight=np.ones(4), class_weight={0: 1.0}, verbose=0)
    with pytest.raises(ShapeError, match=r"one weight per sample, shape \(4,\)"):
        model.fit(x, y, sample_weight=np.ones(3), verbose=0)

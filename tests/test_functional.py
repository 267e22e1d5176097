"""The functional API: Input tensors, Model(inputs, outputs), Add/Concatenate, shared
layers, models used as layers, and saving/loading them."""
import numpy as np
import pytest

import accelnet as an
from accelnet import layers as L
from accelnet.errors import DataFileError, InvalidArgumentError, ShapeError
from accelnet.gradient_check import check_layer, to_float64


def blobs(n=300, features=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    return x, y


def float64(model):
    for layer in model.layers:
        if isinstance(layer, an.Model):
            float64(layer)
        else:
            to_float64(layer)
    return model


def test_input_is_a_tensor_and_the_first_element_of_a_sequential():
    inp = an.Input(shape=(4,))
    assert inp.shape == (None, 4) and an.Input is L.Input
    model = an.Sequential([an.Input(shape=(4,)), L.Dense(2)])
    assert model.count_params() == 4 * 2 + 2
    assert model.predict(np.ones((3, 4), np.float32)).shape == (3, 2)
    old_style = an.Sequential([L.Input((4,)), L.Dense(2)])  # accelnet's positional form
    assert old_style.output_shape == (2,)


def test_functional_forward_is_the_hand_computed_dag():
    inp = an.Input(shape=(2,))
    a = L.Dense(2, use_bias=False, name="a")(inp)
    b = L.Dense(2, use_bias=False, name="b")(a)
    added = L.Add()([a, b])
    out = L.Concatenate()([added, inp])
    model = an.Model(inputs=inp, outputs=out)
    wa, wb = np.array([[1., 2.], [3., 4.]]), np.array([[0., 1.], [1., 0.]])
    model.get_layer("a").set_weights([wa])
    model.get_layer(index=2).set_weights([wb])
    x = np.array([[1., -1.]], np.float32)
    ha = x @ wa                     # [-2, -2]
    expected = np.concatenate([ha + ha @ wb, x], axis=1)  # [-4, -4, 1, -1]
    np.testing.assert_allclose(model.predict(x), expected)
    np.testing.assert_allclose(expected, [[-4, -4, 1, -1]])
    assert model.output_shape == (4,) and [l.name for l in model.layers][1:3] == ["a", "b"]


def test_dag_gradients_match_finite_differences():
    an.random.seed(0)
    inp = an.Input(shape=(4,))
    d1 = L.Dense(3, activation="tanh")(inp)
    d2 = L.Dense(3, activation="sigmoid")(inp)
    merged = L.Concatenate()([L.Add()([d1, d2]), d1])
    out = L.Dense(2)(merged)
    model = float64(an.Model(inp, out))
    check_layer(model, np.random.default_rng(1).standard_normal((3, 4)))


def test_shared_layer_gradients_accumulate_over_both_calls():
    an.random.seed(0)
    inp = an.Input(shape=(3,))
    shared = L.Dense(3, activation="tanh", kernel_regularizer=an.regularizers.l2(0.1))
    h = shared(inp)
    out = L.Add()([h, shared(h)])
    model = float64(an.Model(inp, out))
    check_layer(model, np.random.default_rng(2).standard_normal((4, 3)))


def test_shared_scalar_layer_one_sgd_step_by_hand():
    # out = w·x + w·(w·x); mse to 0 at x = 1, w = 0.5: out = 0.75,
    # dL/dw = 2·out·(x + 2·w·x) = 2·0.75·2 = 3, so SGD(0.1) gives w = 0.5 − 0.3 = 0.2.
    inp = an.Input(shape=(1,))
    d = L.Dense(1, use_bias=False, kernel_initializer="ones")
    h = d(inp)
    model = an.Model(inp, L.Add()([h, d(h)]))
    d.set_weights([np.array([[0.5]])])
    model.compile(optimizer=an.optimizers.SGD(0.1), loss="mse")
    history = model.fit(np.ones((1, 1)), np.zeros((1, 1)), batch_size=1, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], 0.75 ** 2, rtol=1e-6)
    np.testing.assert_allclose(d.get_weights()[0], [[0.2]], rtol=1e-6)


def test_functional_model_trains_evaluates_and_round_trips(tmp_path):
    x, y = blobs()
    an.random.seed(0)
    inp = an.Input(shape=(8,))
    h = L.Dense(16, activation="relu")(inp)
    h = L.Add()([h, L.Dense(16, activation="relu")(h)])
    out = L.Dense(3, activation="softmax")(h)
    model = an.models.Model(inp, out, name="resnetish")
    model.compile(optimizer=an.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, epochs=8, verbose=0, validation_split=0.2)
    assert history.history["loss"][-1] < history.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.8
    model.save(tmp_path / "f.npz")
    loaded = an.load_model(tmp_path / "f.npz")
    assert isinstance(loaded, an.Model) and loaded.name == "resnetish"
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    an.random.seed(3)
    model.fit(x, y, epochs=1, verbose=0)
    an.random.seed(3)
    loaded.fit(x, y, epochs=1, verbose=0)  # optimizer state came back too
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_shared_layer_model_round_trips(tmp_path):
    inp = an.Input(shape=(3,))
    d = L.Dense(3)
    model = an.Model(inp, L.Add()([d(inp), d(d(inp))]))
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "s.npz")
    loaded = an.models.load_model(tmp_path / "s.npz")
    assert len(loaded.layers) == 3  # Input, the shared Dense, Add
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x), model.predict(x), rtol=1e-6)


def test_model_used_as_a_layer_of_a_sequential_and_of_a_graph(tmp_path):
    x, y = blobs()
    an.random.seed(0)
    inp = an.Input(shape=(8,))
    base = an.Model(inp, L.Dense(3)(L.Dense(8, activation="relu")(inp)), name="base")
    probs = an.Sequential([base, L.Activation("softmax")])
    logits = base.predict(x[:5])
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs.predict(x[:5]), e / e.sum(1, keepdims=True), rtol=1e-5)
    probs.compile(optimizer=an.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    before = base.get_weights()[0].copy()
    probs.fit(x, y, epochs=5, verbose=0)
    assert not np.array_equal(before, base.get_weights()[0])  # the inner model trained
    assert probs.evaluate(x, y, verbose=0)[1] > 0.8
    outer_in = an.Input(shape=(8,))
    outer = an.Model(outer_in, L.Activation("softmax")(base(outer_in)))
    np.testing.assert_allclose(outer.predict(x[:5]), probs.predict(x[:5]), rtol=1e-6)
    probs.save(tmp_path / "nested.npz")
    loaded = an.load_model(tmp_path / "nested.npz")
    np.testing.assert_array_equal(loaded.predict(x), probs.predict(x))


def test_nested_model_gradients_match_finite_differences():
    an.random.seed(0)
    inner_in = an.Input(shape=(3,))
    inner = an.Model(inner_in, L.Dense(3, activation="tanh")(inner_in))
    inp = an.Input(shape=(3,))
    h = inner(inp)
    model = float64(an.Model(inp, L.Dense(2)(L.Add()([h, inner(h)]))))  # the inner model shared
    check_layer(model, np.random.default_rng(3).standard_normal((2, 3)))


def test_graph_errors_are_clear():
    inp, other = an.Input(shape=(3,)), an.Input(shape=(3,))
    with pytest.raises(InvalidArgumentError, match="Graph disconnected"):
        an.Model(inp, L.Add()([L.Dense(3)(inp), L.Dense(3)(other)]))
    with pytest.raises(ShapeError, match="one shape"):
        L.Add()([L.Dense(3)(inp), L.Dense(4)(inp)])
    with pytest.raises(ShapeError, match="concatenation axis"):
        L.Concatenate(axis=1)([an.Input(shape=(2, 3)), an.Input(shape=(3, 4))])
    with pytest.raises(InvalidArgumentError, match="needs both"):
        an.Model(inp)
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        L.Add()([inp])
    with pytest.raises(DataFileError, match="malformed"):
        an.models.model_from_config({"layers": [{"class_name": "Dense", "config": {"units": 2}}],
                                     "nodes": [[0, [], False]], "output": 0})


def test_old_name_keyed_optimizer_state_still_loads(tmp_path):
    """Files written before positional optimizer keys name the slots by layer name."""
    import json
    x, y = blobs()
    model = an.Sequential([L.Dense(4, input_shape=(8,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "new.npz")
    with np.load(tmp_path / "new.npz") as f:
        arrays = {k: f[k] for k in f.files}
    keys = list(model.trainable_params)
    old = {}
    for k, v in arrays.items():
        if k.startswith("optimizer/") and "/@" in k:
            slot, pos = k[len("optimizer/"):].split("/@")
            k = f"optimizer/{slot}/{keys[int(pos)]}"
        old[k] = v
    header = json.loads(str(old["accelnet.json"]))
    assert header["model"]["class_name"] == "Sequential"
    np.savez(tmp_path / "old.npz", **old)
    loaded = an.load_model(tmp_path / "old.npz")
    for key in keys:
        np.testing.assert_array_equal(an.backend.to_numpy(loaded.optimizer.slots["m"][key]),
                                      an.backend.to_numpy(model.optimizer.slots["m"][key]))


def test_a_functional_file_claiming_huge_layers_is_refused_before_allocating(tmp_path):
    import json
    inp = an.Input(shape=(4,))
    model = an.Model(inp, L.Dense(2)(inp))
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(str(arrays["accelnet.json"]))
    header["model"]["config"]["layers"][1]["config"]["units"] = 10**9
    arrays["accelnet.json"] = np.array(json.dumps(header))
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(DataFileError, match="needs 5000000000 parameters"):
        an.load_model(tmp_path / "evil.npz")


def test_keras_style_build_with_the_batch_axis_and_model_input():
    model = an.Sequential([L.Dense(3), L.Dense(1)])
    model.build((None, 5))
    assert model.count_params() == 5 * 3 + 3 + 3 + 1 and model.input.shape == (None, 5)
    inp = an.Input(shape=(2,))
    assert an.Model(inp, L.Dense(1)(inp)).input is inp.output


def test_training_false_at_call_fixes_the_mode_of_that_call(tmp_path):
    an.random.seed(0)
    base = an.Sequential([L.Dense(8, input_shape=(4,)), L.Dropout(0.5)])
    base.trainable = False
    inp = an.Input(shape=(4,))
    model = an.Model(inp, L.Dense(2)(base(inp, training=False)))
    x = an.get_backend().asarray(np.ones((6, 4), np.float32))
    inference = an.backend.to_numpy(model(x))
    np.testing.assert_array_equal(an.backend.to_numpy(model.forward(x, training=True)), inference)
    free = an.Model(inp, L.Dense(2)(base(inp)))  # no fixed mode: dropout is active in training
    assert not np.array_equal(an.backend.to_numpy(free.forward(x, training=True)),
                              an.backend.to_numpy(free(x)))
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "t.npz")
    loaded = an.load_model(tmp_path / "t.npz")
    np.testing.assert_array_equal(an.backend.to_numpy(loaded.forward(x, training=True)), inference)


def test_functional_graph_trains_on_the_strict_device_backend():
    """Add, Concatenate, a shared layer and a nested model with no host conversion, and
    the host reads of fit bounded per epoch."""
    from strict_backend import StrictBackend, reset_syncs, syncs
    previous = an.backend.get_backend()
    an.use(StrictBackend())
    try:
        with an.kernels.implementation("reference"):
            x, y = blobs(n=120)
            an.random.seed(0)
            inp = an.Input(shape=(8,))
            shared = L.Dense(8, activation="relu")
            h = shared(inp)
            h2 = shared(h)
            inner_in = an.Input(shape=(16,))
            inner = an.Model(inner_in, L.Dense(3, activation="softmax")(inner_in))
            out = inner(L.Concatenate()([L.Add()([h, h2]), h]))
            model = an.Model(inp, out)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                          metrics=["accuracy"])
            reset_syncs()
            history = model.fit(x, y, batch_size=10, epochs=2, verbose=0, validation_split=0.25)
            assert syncs() <= 12 and len(history.history["val_accuracy"]) == 2
            assert model.predict(x[:4]).shape == (4, 3)
    finally:
        an.use(previous)


def test_summary_of_a_graph_shows_connections_as_keras():
    inp = an.Input(shape=(3,), name="x")
    d = L.Dense(3, name="d")
    model = an.Model(inp, L.Add(name="sum")([d(inp), d(d(inp))]))
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    assert "Connected to" in text
    row = next(line for line in text.splitlines() if line.startswith("sum (Add)"))
    assert "d[0][0], d[2][0]" in row  # first and third call of the shared layer
    assert "d[1][0]" in next(line for line in text.splitlines() if line.startswith("d (Dense)"))
    assert "Total params: 12" in text  # the shared layer counted once

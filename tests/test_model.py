"""The Keras contract of Sequential: shapes, counts, fit/evaluate/predict, callbacks, saving."""
import numpy as np
import pytest

import accelnet as an
from accelnet import callbacks, layers, optimizers


def blobs(n=600, features=8, classes=3, seed=0):
    """Linearly separable-ish Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, features)) * 3
    y = rng.integers(0, classes, n)
    x = centers[y] + rng.standard_normal((n, features))
    return x.astype(np.float32), y


def mlp(features=8, classes=3, **compile_kwargs):
    an.random.seed(0)
    model = an.Sequential([layers.Dense(16, activation="relu", input_shape=(features,)),
                           layers.Dense(classes, activation="softmax")])
    model.compile(**({"optimizer": optimizers.Adam(0.01), "loss": "sparse_categorical_crossentropy",
                      "metrics": ["accuracy"]} | compile_kwargs))
    return model


def test_parameter_count_of_the_keras_mnist_mlp_is_669706(capsys):
    model = an.Sequential([layers.Dense(512, activation="relu", input_shape=(784,)),
                           layers.Dropout(0.2), layers.Dense(512, activation="relu"),
                           layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
    model.build()
    assert model.count_params() == 669_706
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 669,706" in out and "(None, 512)" in out


def test_keras_mnist_cnn_shapes_and_count():
    model = an.Sequential([
        layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Dropout(0.25), layers.Flatten(), layers.Dense(128, activation="relu"),
        layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
    model.build()
    assert model.layer_shapes[2] == (12, 12, 64)
    assert model.count_params() == 1_199_882  # Keras's mnist_cnn


def test_fit_learns_and_history_has_keras_keys():
    x, y = blobs()
    model = mlp()
    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0, validation_split=0.2)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 5
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert history.history["val_accuracy"][-1] > 0.9
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.9 and loss < 0.5
    probs = model.predict(x[:10])
    assert isinstance(probs, np.ndarray) and probs.shape == (10, 3)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


def test_one_hot_labels_and_integer_inputs_are_accepted():
    x, y = blobs()
    model = mlp(loss="categorical_crossentropy")
    model.fit((x * 10).astype(np.int16), an.utils.to_categorical(y, 3), epochs=2, verbose=0)
    assert model.evaluate((x * 10).astype(np.int16), np.eye(3)[y], verbose=0)[1] > 0.8


def test_evaluate_reports_the_mean_loss_over_all_samples():
    x, y = blobs(n=100)
    model = mlp()
    model.build()
    probs = model.predict(x, batch_size=7)
    expected = -np.mean(np.log(probs[np.arange(100), y]))
    loss, acc = model.evaluate(x, y, batch_size=7, verbose=0)
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(acc, np.mean(probs.argmax(1) == y))


def test_early_stopping_restores_best_weights():
    x, y = blobs()
    model = mlp(optimizer=optimizers.SGD(5.0))  # too large a rate: the loss goes up and down
    stop = callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    seen = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(model.get_weights()))
    history = model.fit(x, y, epochs=30, verbose=0, callbacks=[record, stop])
    best = int(np.argmin(history.history["loss"]))
    assert len(history.history["loss"]) < 30
    for a, b in zip(model.get_weights(), seen[best]):
        np.testing.assert_array_equal(a, b)


def test_per_batch_logs_carry_loss_and_accuracy():
    class LogHistory(callbacks.Callback):  # seed 004's callback, unchanged
        def on_train_begin(self, logs={}):
            self.losses, self.acc = [], []

        def on_batch_end(self, batch, logs={}):
            self.losses.append(logs.get("loss"))
            self.acc.append(logs.get("accuracy"))

    x, y = blobs(n=100)
    log = LogHistory()
    mlp().fit(x, y, batch_size=10, epochs=2, verbose=0, callbacks=[log])
    assert len(log.losses) == 20 and all(isinstance(v, float) for v in log.losses + log.acc)


def test_save_and_load_model_round_trip_is_bit_exact_and_resumes(tmp_path):
    x, y = blobs()
    model = mlp()
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = an.models.load_model(tmp_path / "m.npz")
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    an.random.seed(5)
    model.fit(x, y, epochs=1, verbose=0)
    an.random.seed(5)
    loaded.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_save_and_load_weights(tmp_path):
    x, _ = blobs()
    model = mlp()
    model.build()
    model.save_weights(tmp_path / "w.npz")
    other = mlp()
    an.random.seed(99)
    other = an.Sequential([layers.Dense(16, activation="relu", input_shape=(8,)),
                           layers.Dense(3, activation="softmax")])
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(model.predict(x), other.predict(x))


def test_set_weights_names_layer_and_shapes_on_mismatch():
    model = mlp()
    model.build()
    weights = model.get_weights()
    weights[0] = np.zeros((9, 16))
    with pytest.raises(an.errors.ShapeError, match=r"dense.*\(8, 16\).*\(9, 16\)"):
        model.set_weights(weights)


def test_shape_inferred_from_first_batch_without_input_shape():
    x, y = blobs()
    an.random.seed(0)
    model = an.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    assert model.layers[0].input_shape == (8,)


def test_xor_with_sigmoid_and_mse_learns_0110():
    x = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float32)
    y = np.array([[0], [1], [1], [0]], dtype=np.float32)
    an.random.seed(1)
    model = an.Sequential([
        layers.Dense(4, activation="sigmoid", input_shape=(3,),
                     kernel_initializer=an.initializers.RandomUniform(-1, 1)),
        layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=optimizers.SGD(2.0), loss="mse", metrics=["accuracy"])
    model.fit(x, y, batch_size=4, epochs=2000, verbose=0, shuffle=False)
    np.testing.assert_array_equal(model.predict(x).round().ravel(), [0, 1, 1, 0])


def test_hand_written_loop_with_forward_backward_and_apply():
    """The README's ten-line loop: layers driven by hand, an optimizer's apply()."""
    x, y = blobs()
    an.random.seed(0)
    net = [layers.Dense(16, activation="relu"), layers.Dense(3)]
    loss_fn = an.losses.SparseCategoricalCrossentropy(from_logits=True)
    opt = optimizers.SGD(0.1, momentum=0.9)
    for step in range(100):
        out = x
        for layer in net:
            out = layer.forward(out, training=True)
        loss, grad = loss_fn.value_and_grad(y, out)
        for layer in reversed(net):
            grad = layer.backward(grad)
        opt.apply({f"{i}/{k}": p for i, l in enumerate(net) for k, p in l.params.items()},
                  {f"{i}/{k}": g for i, l in enumerate(net) for k, g in l.grads.items()})
    assert float(loss) < 0.1


def test_verbose_2_prints_a_sane_epoch_time(capsys):
    import re
    model = mlp()
    model.fit(np.zeros((64, 8), np.float32), np.zeros(64, np.int64), batch_size=16, epochs=1, verbose=2)
    seconds = float(re.search(r"Epoch 1/1 - ([0-9.]+)s", capsys.readouterr().out).group(1))
    assert 0 <= seconds < 60


def test_training_skips_the_input_gradient_of_the_first_layer(monkeypatch):
    """Nobody reads dL/dx of the training data: the first layer's backward is asked for no
    input gradient (one GEMM less per step), the later ones are (the layers' step: the
    one-call Dense step, accelnet.dense_stack, never computes it either)."""
    monkeypatch.setenv("ACCELNET_DENSE_STEP", "0")
    an.random.seed(0)
    model = an.Sequential([an.layers.Dense(8, activation="relu", input_shape=(4,)),
                           an.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    seen = []
    for layer in model.layers:
        original = layer.backward
        layer.backward = lambda g, _l=layer, _b=original: (seen.append((_l.name, _l.needs_input_grad)), _b(g))[1]
    x = np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32)
    model.fit(x, np.arange(16) % 3, batch_size=16, epochs=1, verbose=0)
    assert seen == [(model.layers[1].name, True), (model.layers[0].name, False)]


def test_train_on_batch_builds_an_unbuilt_model_and_matches_fit():
    """Keras allows train_on_batch as the first call: the model is built from the batch."""
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 6), dtype=np.float32), rng.integers(0, 3, 16)

    def model():
        an.random.seed(1)
        m = an.Sequential([layers.Dense(4, activation="relu", input_shape=(6,)),
                           layers.Dense(3, activation="softmax")])
        m.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        return m

    first = model()
    assert not first.built
    loss = float(first.train_on_batch(x, y))
    second = model()
    second.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    assert np.isfinite(loss)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)

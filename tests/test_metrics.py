"""Metrics: keras.metrics functions, stateful Metric objects, compile(metrics=[...]) with
Keras 3's log names, and metric state kept on the device. Expected values by hand."""
import numpy as np
import pytest

import accelnet as an
from accelnet import layers as L
from accelnet import metrics
from accelnet.backend import to_numpy

P = np.array([[0.1, 0.6, 0.3],
              [0.5, 0.2, 0.3],
              [0.2, 0.3, 0.5],
              [0.4, 0.35, 0.25]], np.float32)
SPARSE = np.array([1, 2, 2, 1])          # argmax of P: 1, 0, 2, 0 -> hits 1, 0, 1, 0
ONE_HOT = np.eye(3, dtype=np.float32)[SPARSE]


def host(a):
    return to_numpy(a)


def test_accuracy_functions_give_per_sample_hits():
    np.testing.assert_array_equal(host(metrics.sparse_categorical_accuracy(SPARSE, P)), [1, 0, 1, 0])
    np.testing.assert_array_equal(host(metrics.sparse_categorical_accuracy(SPARSE[:, None], P)),
                                  [1, 0, 1, 0])
    np.testing.assert_array_equal(host(metrics.categorical_accuracy(ONE_HOT, P)), [1, 0, 1, 0])
    # top-2: row 0 {1,2} has 1; row 1 {0,2} has 2; row 2 {2,1} has 2; row 3 {0,1} has 1
    np.testing.assert_array_equal(host(metrics.sparse_top_k_categorical_accuracy(SPARSE, P, k=2)),
                                  [1, 1, 1, 1])
    np.testing.assert_array_equal(host(metrics.top_k_categorical_accuracy(ONE_HOT, P, k=1)),
                                  [1, 0, 1, 0])
    y = np.array([[1.0], [0.0], [1.0]])
    p = np.array([[0.7], [0.6], [0.2]])
    np.testing.assert_array_equal(host(metrics.binary_accuracy(y, p)), [1, 0, 0])
    np.testing.assert_array_equal(host(metrics.binary_accuracy(y, p, threshold=0.1)), [1, 0, 1])
    np.testing.assert_array_equal(host(metrics.accuracy(np.array([1, 2, 3]), np.array([1, 0, 3]))),
                                  [1, 0, 1])


def test_regression_functions_average_the_last_axis():
    y = np.array([[1.0, 2.0], [0.0, 0.0]])
    p = np.array([[2.0, 0.0], [1.0, -1.0]])
    np.testing.assert_allclose(host(metrics.mae(y, p)), [1.5, 1.0])      # (1+2)/2, (1+1)/2
    np.testing.assert_allclose(host(metrics.mse(y, p)), [2.5, 1.0])      # (1+4)/2, (1+1)/2
    assert metrics.get("mae") is metrics.mean_absolute_error
    assert metrics.get("mean_squared_error") is metrics.mse
    with pytest.raises(an.errors.AccelnetError, match="metric"):
        metrics.get("accuracyy")


def test_mean_metric_is_weighted_and_resets():
    m = metrics.Mean()
    m.update_state(np.array([1.0, 2.0, 3.0], np.float32))
    assert float(host(m.result())) == 2.0
    m.update_state(np.array([10.0], np.float32), sample_weight=np.array([2.0], np.float32))
    assert float(host(m.result())) == pytest.approx((6 + 20) / 5)
    m.reset_state()
    assert float(host(m.result())) == 0.0


def test_stateful_accuracy_accumulates_over_batches():
    m = metrics.SparseCategoricalAccuracy()
    assert m.name == "sparse_categorical_accuracy"
    m.update_state(SPARSE[:2], P[:2])   # 1 of 2
    m.update_state(SPARSE[2:], P[2:])   # 1 of 2
    assert float(host(m.result())) == 0.5
    acc = metrics.Accuracy()
    assert float(host(acc(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 0])))) == 0.5
    weighted = metrics.CategoricalAccuracy()
    weighted.update_state(ONE_HOT, P, sample_weight=np.array([3.0, 1.0, 0.0, 0.0], np.float32))
    assert float(host(weighted.result())) == 0.75


class PositiveRate(metrics.Metric):
    """A user metric written against the Metric API: share of predictions above 0.5."""

    def __init__(self, name="positive_rate", **kwargs):
        super().__init__(name=name, **kwargs)
        self.hits = self.add_variable(shape=(), initializer="zeros")
        self.seen = self.add_weight(name="seen", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.hits.assign_add((y_pred > 0.5).sum().astype("float32"))
        self.seen.assign_add(float(y_pred.size))

    def result(self):
        return self.hits / self.seen


def regression_model():
    an.random.seed(0)
    model = an.Sequential([L.Dense(1, activation="sigmoid", input_shape=(2,))])
    return model


def test_compile_metrics_log_keras_3_names_with_val_prefix():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2)).astype(np.float32)
    y = (x[:, :1] > 0).astype(np.float32)
    model = regression_model()
    model.compile(optimizer="sgd", loss="binary_crossentropy",
                  metrics=["acc", "mae", metrics.mean_squared_error, PositiveRate(),
                           metrics.BinaryAccuracy(name="bin", threshold=0.9)])
    history = model.fit(x, y, epochs=1, verbose=0, validation_data=(x, y))
    assert list(history.history) == ["loss", "acc", "mae", "mean_squared_error", "positive_rate",
                                     "bin", "val_loss", "val_acc", "val_mae",
                                     "val_mean_squared_error", "val_positive_rate", "val_bin"]
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    p = model.predict(x)
    assert logs["acc"] == pytest.approx(np.mean((p > 0.5) == (y > 0.5)))
    assert logs["mae"] == pytest.approx(np.mean(np.abs(p - y)), rel=1e-5)
    assert logs["mean_squared_error"] == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)
    assert logs["positive_rate"] == pytest.approx(np.mean(p > 0.5))
    assert logs["bin"] == pytest.approx(np.mean((p > 0.9) == (y > 0.5)))
    bce = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert logs["loss"] == pytest.approx(bce, rel=1e-5)
    assert model.metrics_names == ["loss", "acc", "mae", "mean_squared_error", "positive_rate", "bin"]


@pytest.mark.parametrize("loss,onehot", [("sparse_categorical_crossentropy", False),
                                         ("categorical_crossentropy", True)])
def test_accuracy_resolves_by_the_labels_as_keras(loss, onehot):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 50)
    y = np.eye(3, dtype=np.float32)[labels] if onehot else labels
    an.random.seed(0)
    model = an.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(optimizer="adam", loss=loss,
                  metrics=["accuracy", "sparse_top_k_categorical_accuracy" if not onehot
                           else "top_k_categorical_accuracy", "mse"])
    kind = type(model.metrics[0]).__name__  # before fit: only the loss tracker
    assert kind == "Mean"
    logs = model.evaluate(x, y, verbose=0, return_dict=True, batch_size=7)
    expected_kind = "CategoricalAccuracy" if onehot else "SparseCategoricalAccuracy"
    assert type(model.metrics[1]).__name__ == expected_kind
    p = model.predict(x)
    assert logs["accuracy"] == pytest.approx(np.mean(p.argmax(1) == labels))
    top = "top_k_categorical_accuracy" if onehot else "sparse_top_k_categorical_accuracy"
    assert logs[top] == 1.0  # k=5 > 3 classes
    assert logs["mse"] == pytest.approx(np.mean((p - np.eye(3)[labels]) ** 2) if onehot
                                        else np.mean((p - labels[:, None]) ** 2), rel=1e-5)


def test_binary_accuracy_with_logits_thresholds_at_zero():
    x = np.array([[1.0], [-1.0], [0.2], [-0.3]], np.float32)
    y = np.array([[1.0], [1.0], [0.0], [0.0]], np.float32)
    model = an.Sequential([L.Dense(1, input_shape=(1,), use_bias=False, kernel_initializer="ones")])
    model.compile(optimizer="sgd", loss=an.losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    # logits 1, -1, 0.2, -0.3 -> predicted 1, 0, 1, 0 against 1, 1, 0, 0: 2 of 4
    assert model.evaluate(x, y, verbose=0)[1] == 0.5


def test_metric_state_is_read_once_per_epoch_on_a_strict_device():
    from strict_backend import StrictBackend, reset_syncs, syncs
    previous = an.backend.get_backend()
    an.use(StrictBackend())
    try:
        with an.kernels.implementation("reference"):
            rng = np.random.default_rng(0)
            x = rng.standard_normal((200, 4)).astype(np.float32)
            y = rng.integers(0, 3, 200)

            def fit_syncs(epochs):
                an.random.seed(0)
                model = an.Sequential([L.Dense(3, activation="softmax", input_shape=(4,))])
                model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                              metrics=["accuracy", "mae", "sparse_top_k_categorical_accuracy",
                                       PositiveRate(), "precision", "root_mean_squared_error"])
                reset_syncs()
                history = model.fit(x, y, batch_size=10, epochs=epochs, verbose=0)
                assert all(isinstance(v, float) for v in history.history["mae"])
                return syncs()

            one, three = fit_syncs(1), fit_syncs(3)
            assert (three - one) / 2 <= 2, "metrics were read back more than once per epoch"
    finally:
        an.use(previous)


def test_precision_recall_rmse_and_percentage_errors_by_hand():
    y = np.array([[1.0], [0.0], [1.0], [1.0], [0.0]], np.float32)
    p = np.array([[0.9], [0.8], [0.3], [0.6], [0.1]], np.float32)
    # predicted positive: rows 0, 1, 3 -> tp 2 (rows 0, 3), fp 1 (row 1), fn 1 (row 2)
    assert float(host(metrics.Precision()(y, p))) == pytest.approx(2 / 3)
    assert float(host(metrics.Recall()(y, p))) == pytest.approx(2 / 3)
    assert float(host(metrics.Recall(thresholds=0.2)(y, p))) == 1.0
    weighted = metrics.Precision()
    weighted.update_state(y, p, sample_weight=np.array([1, 3, 1, 1, 1], np.float32))
    assert float(host(weighted.result())) == pytest.approx(2 / 5)  # fp counted 3 times
    assert float(host(metrics.Precision()(y, np.zeros_like(p)))) == 0.0  # nothing predicted
    rmse = metrics.RootMeanSquaredError()
    rmse.update_state(np.array([[1.0], [2.0]]), np.array([[2.0], [4.0]]))
    assert float(host(rmse.result())) == pytest.approx(np.sqrt((1 + 4) / 2))
    np.testing.assert_allclose(host(metrics.mape(np.array([[2.0, 4.0]]), np.array([[1.0, 5.0]]))),
                               [100 * (0.5 + 0.25) / 2])
    np.testing.assert_allclose(host(metrics.msle(np.array([[0.0]]), np.array([[np.e - 1]]))), [1.0],
                               rtol=1e-6)
    assert isinstance(metrics.get("precision"), metrics.Precision)
    assert metrics.resolve("Recall", 2, 1).name == "Recall"  # logged under the string given


def test_mean_takes_one_number_as_every_samples_weight():
    """What the trainer's loss tracker does each batch: the batch's mean loss, weighted by
    the batch size, the same as an array of that weight."""
    rng = np.random.default_rng(0)
    scalar, array = an.metrics.Mean(), an.metrics.Mean()
    for _ in range(50):
        loss, n = np.asarray(rng.random() * 3, np.float32), int(rng.integers(1, 200))
        scalar.update_state(loss, sample_weight=n)
        array.update_state(loss, sample_weight=np.full((1,), n, np.float32))
    assert scalar.total.numpy() == array.total.numpy() and scalar.count.numpy() == array.count.numpy()
    m = an.metrics.Mean()
    m.update_state(np.array([1.0, 2.0, 3.0], np.float32), sample_weight=2.0)
    assert float(m.result()) == 2.0 and float(m.count.numpy()) == 6.0

"""Keras 3 losses: per-sample values from the Keras formulas by hand, the reduction with sample
weights, the (y_true, y_pred) order, user losses through the ops tape, and float64
finite-difference gradients for every loss."""
import numpy as np
import pytest

import accelnet as an
from accelnet import kernels, losses, ops, regularizers
from accelnet.errors import InvalidArgumentError, ShapeError, UnknownNameError
from accelnet.gradient_check import numerical_grad
from accelnet.ops import TapeError

rng = np.random.default_rng(0)
N, C = 5, 4
LABELS = np.array([0, 3, 1, 1, 2])
ONEHOT = np.eye(C)[LABELS]
LOGITS = rng.standard_normal((N, C))
SIGMOID = 1 / (1 + np.exp(-LOGITS))          # probabilities whose rows do not sum to 1
SOFTMAX = np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)
BINARY = (rng.random((N, 3)) > 0.5).astype(float)
PROB3 = rng.uniform(0.1, 0.9, (N, 3))
Z3 = rng.standard_normal((N, 3))
TARGET = rng.standard_normal((N, 3))
PRED = TARGET + rng.choice([-1, 1], (N, 3)) * rng.uniform(0.1, 2.0, (N, 3))  # no kinks at 0
WEIGHTS = rng.uniform(0.1, 2.0, N)


def check_grad(loss, y_true, y_pred, sample_weight=None, rtol=1e-5, atol=1e-8):
    """value_and_grad(y_true, y_pred, w): the value is __call__'s, the gradient is d/dy_pred."""
    y_pred = y_pred.copy()
    value, grad = loss.value_and_grad(y_true, y_pred, sample_weight)
    np.testing.assert_allclose(value, loss(y_true, y_pred, sample_weight), rtol=1e-10)
    numeric = numerical_grad(lambda: loss.value_and_grad(y_true, y_pred, sample_weight)[0], y_pred)
    np.testing.assert_allclose(grad, numeric, rtol=rtol, atol=atol)
    assert grad.shape == y_pred.shape and grad.dtype == y_pred.dtype
    return value


EVERY_LOSS = {
    "scce_probabilities": (losses.SparseCategoricalCrossentropy(), LABELS, SIGMOID),
    "scce_logits": (losses.SparseCategoricalCrossentropy(from_logits=True), LABELS, LOGITS),
    "scce_labels_n1": (losses.SparseCategoricalCrossentropy(), LABELS[:, None], SIGMOID),
    "cce_probabilities": (losses.CategoricalCrossentropy(), ONEHOT, SIGMOID),
    "cce_logits": (losses.CategoricalCrossentropy(from_logits=True), ONEHOT, LOGITS),
    "cce_smoothing": (losses.CategoricalCrossentropy(label_smoothing=0.2), ONEHOT, SIGMOID),
    "cce_logits_smoothing": (losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
                             ONEHOT, LOGITS),
    "cce_axis0": (losses.CategoricalCrossentropy(axis=0), ONEHOT, SIGMOID),
    "bce_probabilities": (losses.BinaryCrossentropy(), BINARY, PROB3),
    "bce_logits": (losses.BinaryCrossentropy(from_logits=True), BINARY, Z3),
    "bce_smoothing": (losses.BinaryCrossentropy(label_smoothing=0.2), BINARY, PROB3),
    "bce_logits_smoothing": (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1),
                             BINARY, Z3),
    "bce_labels_n": (losses.BinaryCrossentropy(), BINARY[:, 0], PROB3[:, :1]),
    "mse": (losses.MeanSquaredError(), TARGET, PRED),
    "mae": (losses.MeanAbsoluteError(), TARGET, PRED),
    "mape": (losses.MeanAbsolutePercentageError(), TARGET, PRED),
    "msle": (losses.MeanSquaredLogarithmicError(), PROB3, PROB3[::-1].copy()),
    "huber": (losses.Huber(delta=0.8), TARGET, PRED),
    "log_cosh": (losses.LogCosh(), TARGET, PRED),
    "kl_divergence": (losses.KLDivergence(), SOFTMAX[::-1].copy(), SOFTMAX),
    "hinge": (losses.Hinge(), BINARY, Z3 * 0.3),
    "squared_hinge": (losses.SquaredHinge(), BINARY, Z3 * 0.3),
    "categorical_hinge": (losses.CategoricalHinge(), ONEHOT, LOGITS),
    "poisson": (losses.Poisson(), PROB3, PROB3[::-1].copy()),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", sorted(EVERY_LOSS))
def test_every_loss_gradient_matches_finite_differences(name, weighted):
    loss, y_true, y_pred = EVERY_LOSS[name]
    weights = WEIGHTS[:C] if name == "cce_axis0" else WEIGHTS  # axis=0: one loss per column
    check_grad(loss, y_true, y_pred, weights if weighted else None)


@pytest.mark.parametrize("name", sorted(EVERY_LOSS))
def test_default_reduction_is_the_mean_of_the_per_sample_losses(name):
    loss, y_true, y_pred = EVERY_LOSS[name]
    values = losses.get({"class_name": type(loss).__name__,
                         "config": {**loss.get_config(), "reduction": "none"}})(y_true, y_pred)
    weights = WEIGHTS[:C] if name == "cce_axis0" else WEIGHTS
    assert values.shape == weights.shape
    np.testing.assert_allclose(loss(y_true, y_pred), np.mean(values), rtol=1e-12)
    np.testing.assert_allclose(loss(y_true, y_pred, weights), np.sum(weights * values) / values.size,
                               rtol=1e-12)


# -- values from the Keras 3 formulas, by hand ---------------------------------------------------
def test_categorical_crossentropies_divide_probabilities_by_their_row_sum():
    """Keras 3 on sigmoid outputs: p = y_pred / sum(y_pred), then -log p[label]."""
    p = SIGMOID / SIGMOID.sum(1, keepdims=True)
    expected = -np.log(p[np.arange(N), LABELS])
    np.testing.assert_allclose(losses.categorical_crossentropy(ONEHOT, SIGMOID), expected, rtol=1e-12)
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy(LABELS, SIGMOID), expected,
                               rtol=1e-12)
    np.testing.assert_allclose(losses.CategoricalCrossentropy()(ONEHOT, SIGMOID), expected.mean())
    assert losses.SparseCategoricalCrossentropy()(LABELS, SIGMOID) > \
        -np.mean(np.log(SIGMOID[np.arange(N), LABELS]))  # not the un-normalised value


def test_crossentropy_clips_probabilities_at_epsilon():
    y_pred = np.array([[0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_allclose(losses.categorical_crossentropy(np.eye(2), y_pred),
                               [-np.log(1e-7), -np.log(1 - 1e-7)], rtol=1e-12)


def test_label_smoothing_values():
    ls = 0.2
    smooth = ONEHOT * (1 - ls) + ls / C
    expected = -(smooth * np.log(SOFTMAX)).sum(1)
    np.testing.assert_allclose(losses.categorical_crossentropy(ONEHOT, LOGITS, from_logits=True,
                                                               label_smoothing=ls), expected, rtol=1e-12)
    y = BINARY * (1 - ls) + 0.5 * ls
    expected = -(y * np.log(PROB3) + (1 - y) * np.log(1 - PROB3)).mean(1)
    np.testing.assert_allclose(losses.binary_crossentropy(BINARY, PROB3, label_smoothing=ls), expected,
                               rtol=1e-12)
    # the fused kernel path (softmax + CCE) smooths the same way
    fused, _ = losses.CategoricalCrossentropy(label_smoothing=ls).logits_value_and_grad(ONEHOT, LOGITS)
    np.testing.assert_allclose(fused, -(smooth * np.log(SOFTMAX)).sum(1).mean(), rtol=1e-10)


def test_binary_crossentropy_probabilities_and_logits_agree():
    expected = -(BINARY * np.log(1 / (1 + np.exp(-Z3))) + (1 - BINARY) * np.log(1 - 1 / (1 + np.exp(-Z3))))
    np.testing.assert_allclose(losses.binary_crossentropy(BINARY, Z3, from_logits=True), expected.mean(1))
    np.testing.assert_allclose(losses.binary_crossentropy(BINARY, 1 / (1 + np.exp(-Z3))), expected.mean(1))


def test_regression_losses_by_hand():
    e = PRED - TARGET
    np.testing.assert_allclose(losses.mean_squared_error(TARGET, PRED), (e ** 2).mean(1))
    np.testing.assert_allclose(losses.mse(TARGET, PRED), (e ** 2).mean(1))
    np.testing.assert_allclose(losses.mean_absolute_error(TARGET, PRED), np.abs(e).mean(1))
    np.testing.assert_allclose(losses.mean_absolute_percentage_error(TARGET, PRED),
                               100 * (np.abs(e) / np.abs(TARGET)).mean(1))
    np.testing.assert_allclose(losses.log_cosh(TARGET, PRED), np.log(np.cosh(e)).mean(1), rtol=1e-12)
    huber = np.where(np.abs(e) <= 0.8, 0.5 * e ** 2, 0.8 * np.abs(e) - 0.5 * 0.8 ** 2).mean(1)
    np.testing.assert_allclose(losses.huber(TARGET, PRED, delta=0.8), huber)
    a, b = PROB3, PROB3[::-1]
    np.testing.assert_allclose(losses.mean_squared_logarithmic_error(a, b),
                               ((np.log1p(b) - np.log1p(a)) ** 2).mean(1))
    np.testing.assert_allclose(losses.poisson(a, b), (b - a * np.log(b + 1e-7)).mean(1))


def test_classification_margins_and_divergence_by_hand():
    signs = 2 * BINARY - 1  # {0, 1} labels become {-1, 1}
    np.testing.assert_allclose(losses.hinge(BINARY, Z3), np.maximum(1 - signs * Z3, 0).mean(1))
    np.testing.assert_allclose(losses.hinge(signs, Z3), np.maximum(1 - signs * Z3, 0).mean(1))
    np.testing.assert_allclose(losses.squared_hinge(BINARY, Z3), (np.maximum(1 - signs * Z3, 0) ** 2).mean(1))
    pos = (ONEHOT * LOGITS).sum(1)
    neg = ((1 - ONEHOT) * LOGITS).max(1)
    np.testing.assert_allclose(losses.categorical_hinge(ONEHOT, LOGITS), np.maximum(neg - pos + 1, 0))
    p, q = SOFTMAX[::-1], SOFTMAX
    np.testing.assert_allclose(losses.kl_divergence(p, q), (p * np.log(p / q)).sum(1))
    np.testing.assert_allclose(losses.kl_divergence(ONEHOT, q),
                               np.log(1 / q[np.arange(N), LABELS]) + 0 * q.sum(1), rtol=1e-5)


# -- reduction and sample weights --------------------------------------------------------------
def test_sum_over_batch_size_divides_by_the_number_of_samples_not_the_weights():
    values = losses.mean_squared_error(TARGET, PRED)
    mse = losses.MeanSquaredError()
    np.testing.assert_allclose(mse(TARGET, PRED, WEIGHTS), np.sum(WEIGHTS * values) / N)
    np.testing.assert_allclose(mse(TARGET, PRED, WEIGHTS[:, None]), np.sum(WEIGHTS * values) / N)
    np.testing.assert_allclose(mse(TARGET, PRED, 0.5), 0.5 * values.mean())
    np.testing.assert_allclose(losses.MeanSquaredError(reduction="sum")(TARGET, PRED, WEIGHTS),
                               np.sum(WEIGHTS * values))
    np.testing.assert_allclose(losses.MeanSquaredError(reduction="mean_with_sample_weight")(
        TARGET, PRED, WEIGHTS), np.sum(WEIGHTS * values) / WEIGHTS.sum())
    np.testing.assert_allclose(losses.MeanSquaredError(reduction=None)(TARGET, PRED, WEIGHTS),
                               WEIGHTS * values)
    zero = np.zeros(N)
    assert losses.MeanSquaredError(reduction="mean_with_sample_weight")(TARGET, PRED, zero) == 0


@pytest.mark.parametrize("reduction", ["sum", "mean_with_sample_weight"])
def test_other_reductions_have_exact_gradients(reduction):
    check_grad(losses.MeanSquaredError(reduction=reduction), TARGET, PRED, WEIGHTS)
    check_grad(losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction), LABELS,
               LOGITS, WEIGHTS)
    check_grad(losses.Huber(reduction=reduction), TARGET, PRED, WEIGHTS)


def test_reduction_none_has_no_training_gradient_and_bad_weights_are_named():
    with pytest.raises(InvalidArgumentError, match="reduction='none'"):
        losses.MeanSquaredError(reduction="none").value_and_grad(TARGET, PRED)
    with pytest.raises(InvalidArgumentError, match="reduction"):
        losses.MeanSquaredError(reduction="average")
    with pytest.raises(ShapeError, match="sample_weight of shape"):
        losses.MeanSquaredError()(TARGET, PRED, np.ones(N + 1))


def test_fused_logits_path_with_sample_weights():
    loss = losses.SparseCategoricalCrossentropy()
    rows = -np.log(SOFTMAX[np.arange(N), LABELS])
    value, dlogits = loss.logits_value_and_grad(LABELS, LOGITS, WEIGHTS)
    np.testing.assert_allclose(value, np.sum(WEIGHTS * rows) / N, rtol=1e-10)
    np.testing.assert_allclose(dlogits, WEIGHTS[:, None] * (SOFTMAX - ONEHOT) / N, rtol=1e-10, atol=1e-15)
    unweighted, _ = loss.logits_value_and_grad(LABELS, LOGITS)
    np.testing.assert_allclose(unweighted, loss(LABELS, SOFTMAX), rtol=1e-10)


# -- one argument order: (y_true, y_pred) -----------------------------------------------------------
def test_call_and_value_and_grad_take_y_true_first():
    kld = losses.KLDivergence()
    p, q = np.full((N, C), 1 / C), SOFTMAX.copy()
    assert not np.isclose(kld(p, q), kld(q, p))  # asymmetric, so the order is visible
    np.testing.assert_allclose(kld(p, q), np.mean((p * np.log(p / q)).sum(1)))
    value, grad = kld.value_and_grad(p, q)
    np.testing.assert_allclose(value, kld(p, q))
    np.testing.assert_allclose(grad, -p / q / N, rtol=1e-10)  # d/dq of p log(p/q), over the batch
    value, grad = losses.MeanSquaredError().value_and_grad(y_true=TARGET, y_pred=PRED,
                                                           sample_weight=WEIGHTS)
    np.testing.assert_allclose(grad, 2 * (PRED - TARGET) * WEIGHTS[:, None] / (N * 3))


def test_the_old_prediction_first_order_is_refused_for_sparse_labels():
    with pytest.raises(ShapeError, match="class indices"):
        losses.SparseCategoricalCrossentropy().value_and_grad(SOFTMAX, LABELS)
    with pytest.raises(ShapeError, match="same shape"):
        losses.CategoricalCrossentropy()(ONEHOT, SOFTMAX[:, :3])


# -- user losses: functions and Loss.call through the tape ----------------------------------------------
def weighted_squares(y_true, y_pred):
    return ops.mean(ops.square(y_pred - y_true) * ops.exp(y_true), axis=-1)


class FocalLike(losses.Loss):
    """Only call(): no hand-written gradient."""

    def __init__(self, gamma=2.0, **kwargs):
        super().__init__(**kwargs)
        self.gamma = gamma

    def call(self, y_true, y_pred):
        p = ops.clip(y_pred, 1e-7, 1 - 1e-7)
        return -ops.sum(y_true * (1 - p) ** self.gamma * ops.log(p), axis=-1)


class SmoothedPlusPenalty(losses.Loss):
    def call(self, y_true, y_pred):
        ce = losses.categorical_crossentropy(y_true, y_pred, from_logits=True, label_smoothing=0.1)
        return ce + 0.01 * ops.sum(ops.square(y_pred), axis=-1)


def test_a_user_function_is_wrapped_and_differentiated_exactly():
    loss = losses.get(weighted_squares)
    assert isinstance(loss, losses.LossFunctionWrapper) and loss.name == "weighted_squares"
    value = check_grad(loss, TARGET, PRED, WEIGHTS)
    expected = ((PRED - TARGET) ** 2 * np.exp(TARGET)).mean(1)
    np.testing.assert_allclose(value, np.sum(WEIGHTS * expected) / N, rtol=1e-12)


def test_a_lambda_with_operators_and_numpy_ufuncs_is_differentiated_exactly():
    loss = losses.get(lambda y_true, y_pred: np.log(1 + (y_true - y_pred) ** 2).mean(axis=-1))
    value = check_grad(loss, TARGET, PRED)
    np.testing.assert_allclose(value, np.log(1 + (TARGET - PRED) ** 2).mean(), rtol=1e-12)


def test_a_loss_subclass_with_only_call_is_differentiated_exactly():
    value = check_grad(FocalLike(), ONEHOT, SOFTMAX, WEIGHTS)
    rows = -(ONEHOT * (1 - SOFTMAX) ** 2 * np.log(SOFTMAX)).sum(1)
    np.testing.assert_allclose(value, np.sum(WEIGHTS * rows) / N, rtol=1e-12)
    assert FocalLike().name == "focal_like"
    check_grad(SmoothedPlusPenalty(), ONEHOT, LOGITS)  # label smoothing through the tape


def test_a_user_loss_that_leaves_the_tape_raises_rather_than_training_wrongly():
    def detached(y_true, y_pred):
        return np.asarray(y_pred).mean(axis=-1)
    with pytest.raises(TapeError, match="accelnet.ops"):
        losses.get(detached).value_and_grad(TARGET, PRED)


def test_get_maps_names_functions_and_configs_to_losses():
    assert type(losses.get(losses.categorical_crossentropy)) is losses.CategoricalCrossentropy
    assert type(losses.get(losses.mse)) is losses.MeanSquaredError
    assert type(losses.get("CategoricalCrossentropy")) is losses.CategoricalCrossentropy
    assert type(losses.get("mae")) is losses.MeanAbsoluteError
    assert type(losses.get("huber_loss")) is losses.Huber
    assert type(losses.get(FocalLike)) is FocalLike
    old = losses.get({"class_name": "mean_squared_error", "config": {"from_logits": False}})
    assert type(old) is losses.MeanSquaredError  # files saved before the Keras 3 losses
    smooth = losses.CategoricalCrossentropy(label_smoothing=0.3, from_logits=True)
    again = losses.get(losses.serialize(smooth))
    assert again.get_config() == smooth.get_config() and again.from_logits
    with pytest.raises(UnknownNameError, match="sparse_categorical_crossentropy"):
        losses.get("sparse_categorical_crossentropyy")
    with pytest.raises(InvalidArgumentError, match="unexpected"):
        losses.MeanSquaredError(from_logits=True)


# -- deliberate choices (README: differences from Keras 3) --------------------------------------------
def test_saturated_binary_crossentropy_keeps_a_gradient():
    """Issue 12 item 10: where the clip acts Keras's gradient is 0; ours is (p - y) / (p (1 - p))
    at the clipped p, which through the sigmoid is p - y, the logits form's gradient."""
    y_true = np.array([[0.0], [1.0]])
    y_pred = np.array([[1 - 1e-9], [1 - 1e-9]])
    _, grad = losses.BinaryCrossentropy().value_and_grad(y_true, y_pred)
    p = 1 - 1e-7
    np.testing.assert_allclose(grad, [[p / (p * (1 - p) * 2)], [(p - 1) / (p * (1 - p) * 2)]], rtol=1e-6)
    assert grad[0, 0] > 0


def test_accuracy_with_binary_logits_thresholds_at_zero():
    """Issue 12 item 5: with BinaryCrossentropy(from_logits=True), 'accuracy' thresholds the
    logits at 0 (probability 0.5); Keras thresholds the logits at 0.5."""
    model = an.Sequential([an.layers.Dense(1, input_shape=(1,))])
    model.compile(optimizer="sgd", loss=losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    model.set_weights([np.ones((1, 1), np.float32), np.zeros(1, np.float32)])
    x = np.array([[-0.3], [0.2], [0.4]], np.float32)  # logits; Keras would call all three class 0
    _, accuracy = model.evaluate(x, np.array([0, 1, 1]), verbose=0)
    assert accuracy == pytest.approx(1.0)


def test_l1_l2_defaults_to_no_penalty_as_in_keras_3():
    reg = regularizers.l1_l2()
    assert (reg.l1, reg.l2) == (0.0, 0.0)
    assert float(reg(np.ones(3))) == 0.0
    assert (regularizers.l1().l1, regularizers.l2().l2) == (0.01, 0.01)


def test_compile_accepts_loss_functions_and_trains_a_user_loss():
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]])).astype(np.float32)
    an.random.seed(0)
    model = an.Sequential([an.layers.Dense(1, input_shape=(3,))])
    model.compile(optimizer=an.optimizers.SGD(0.1),
                  loss=lambda y_true, y_pred: ops.mean(ops.square(y_true - y_pred), axis=-1))
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    assert model.evaluate(x, y, verbose=0) < 0.01 * first
    model.compile(optimizer="sgd", loss=losses.categorical_crossentropy)
    assert type(model.loss) is losses.CategoricalCrossentropy  # the fused kernel path


# -- on a CuPy-like device ----------------------------------------------------------------------------
@pytest.fixture
def strict():
    from strict_backend import StrictBackend
    previous = an.get_backend()
    backend = an.use(StrictBackend())
    try:
        with kernels.implementation("reference"):
            yield backend
    finally:
        an.use(previous)


def test_losses_and_the_tape_run_on_a_device_that_refuses_host_conversion(strict):
    from strict_backend import StrictArray
    cases = [(losses.SparseCategoricalCrossentropy(from_logits=True), LABELS, LOGITS),
             (losses.CategoricalCrossentropy(label_smoothing=0.1), ONEHOT, SIGMOID),
             (losses.BinaryCrossentropy(), BINARY, PROB3), (losses.Huber(), TARGET, PRED),
             (FocalLike(), ONEHOT, SOFTMAX), (losses.get(weighted_squares), TARGET, PRED)]
    an.use("cpu")
    expected = [loss.value_and_grad(y_true, y_pred, WEIGHTS) for loss, y_true, y_pred in cases]
    an.use(strict)
    for (loss, y_true, y_pred), (host_value, host_grad) in zip(cases, expected):
        value, grad = loss.value_and_grad(strict.asarray(y_true), strict.asarray(y_pred),
                                          strict.asarray(WEIGHTS))
        assert isinstance(grad, StrictArray)
        np.testing.assert_allclose(strict.to_numpy(value), host_value, rtol=1e-10)
        np.testing.assert_allclose(strict.to_numpy(grad), host_grad, rtol=1e-10, atol=1e-15)

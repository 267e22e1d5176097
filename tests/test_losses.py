"""Losses: values against independent formulas, gradients against finite differences (float64)."""
import numpy as np
import pytest

from accelnet import losses
from accelnet.errors import UnknownNameError
from accelnet.gradient_check import numerical_grad

rng = np.random.default_rng(0)
LOGITS = rng.standard_normal((5, 4))
LABELS = np.array([0, 3, 1, 1, 2])
ONEHOT = np.eye(4)[LABELS]
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)


def check_grad(loss, y_pred, y_true):
    value, grad = loss.value_and_grad(y_true, y_pred)
    numeric = numerical_grad(lambda: loss.value_and_grad(y_true, y_pred)[0], y_pred)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    return value


@pytest.mark.parametrize("loss,y_true", [
    (losses.SparseCategoricalCrossentropy(from_logits=True), LABELS),
    (losses.CategoricalCrossentropy(from_logits=True), ONEHOT)])
def test_cross_entropy_from_logits(loss, y_true):
    value = check_grad(loss, LOGITS.copy(), y_true)
    expected = -np.mean(np.log(PROBS[np.arange(5), LABELS]))
    np.testing.assert_allclose(value, expected, rtol=1e-10)


@pytest.mark.parametrize("loss,y_true", [
    (losses.SparseCategoricalCrossentropy(), LABELS),
    (losses.CategoricalCrossentropy(), ONEHOT)])
def test_cross_entropy_on_probabilities(loss, y_true):
    value = check_grad(loss, PROBS.copy(), y_true)
    np.testing.assert_allclose(value, -np.mean(np.log(PROBS[np.arange(5), LABELS])), rtol=1e-10)


def test_fused_logits_path_equals_softmax_then_cross_entropy():
    loss = losses.SparseCategoricalCrossentropy()
    fused, dlogits = loss.logits_value_and_grad(LABELS, LOGITS)
    np.testing.assert_allclose(fused, loss(LABELS, PROBS), rtol=1e-10)
    np.testing.assert_allclose(dlogits, (PROBS - ONEHOT) / 5, rtol=1e-10, atol=1e-15)


def test_binary_cross_entropy_probabilities_and_logits():
    z = rng.standard_normal((6, 1))
    y = np.array([[0], [1], [1], [0], [1], [0]], dtype=float)
    p = 1 / (1 + np.exp(-z))
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    np.testing.assert_allclose(check_grad(losses.BinaryCrossentropy(), p.copy(), y), expected, rtol=1e-8)
    np.testing.assert_allclose(check_grad(losses.BinaryCrossentropy(from_logits=True), z.copy(), y),
                               expected, rtol=1e-8)


def test_mean_squared_error():
    y_pred, y_true = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    value = check_grad(losses.MeanSquaredError(), y_pred, y_true)
    np.testing.assert_allclose(value, np.mean((y_pred - y_true) ** 2), rtol=1e-12)


def test_loss_lookup_by_name_and_config():
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    loss = losses.get({"class_name": "categorical_crossentropy", "config": {"from_logits": True}})
    assert loss.from_logits and isinstance(loss, losses.CategoricalCrossentropy)
    with pytest.raises(UnknownNameError, match="sparse_categorical_crossentropy"):
        losses.get("sparse_categorical_crossentropyy")


def test_float32_loss_stays_float32():
    value, grad = losses.SparseCategoricalCrossentropy(from_logits=True).value_and_grad(
        LABELS, LOGITS.astype(np.float32))
    assert value.dtype == np.float32 and grad.dtype == np.float32

"""Losses: each returns the batch-mean loss (a 0-d array, no host sync) and its gradient.

Cross-entropy after a softmax is fused: the model hands the *logits* to
`logits_value_and_grad`, which runs the `softmax_cross_entropy` kernel (one pass per
row, stable for huge logits) instead of softmax → log → divide.
"""
from . import kernels
from .backend import get_array_module
from .errors import unknown_name

EPSILON = 1e-7  # Keras's clip for probabilities


class Loss:
    name = None
    fuses_with_softmax = False

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred):
        """Keras argument order: the batch-mean loss as a 0-d array."""
        return self.value_and_grad(y_pred, y_true)[0]

    def value_and_grad(self, y_pred, y_true):
        """(mean loss, dloss/dy_pred) for a batch."""
        raise NotImplementedError

    def get_config(self):
        return {"from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class _CrossEntropy(Loss):
    """Softmax cross-entropy; the subclasses differ only in how labels are given."""

    fuses_with_softmax = True

    def logits_value_and_grad(self, logits, y_true):
        return kernels.softmax_cross_entropy(logits, self._labels(y_true))

    def value_and_grad(self, y_pred, y_true):
        if self.from_logits:
            return self.logits_value_and_grad(y_pred, y_true)
        xp = get_array_module(y_pred)
        onehot = self._onehot(y_true, y_pred)
        p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
        n = y_pred.shape[0]
        loss = -(onehot * xp.log(p)).sum() / n
        return loss.astype(y_pred.dtype), (-onehot / (p * n)).astype(y_pred.dtype)


class SparseCategoricalCrossentropy(_CrossEntropy):
    name = "sparse_categorical_crossentropy"

    @staticmethod
    def _labels(y_true):
        return y_true.reshape(-1)

    @staticmethod
    def _onehot(y_true, y_pred):
        xp = get_array_module(y_pred)
        classes = xp.arange(y_pred.shape[1])
        return (y_true.reshape(-1, 1) == classes).astype(y_pred.dtype)


class CategoricalCrossentropy(_CrossEntropy):
    name = "categorical_crossentropy"

    @staticmethod
    def _labels(y_true):
        return y_true

    @staticmethod
    def _onehot(y_true, y_pred):
        return y_true.astype(y_pred.dtype, copy=False)


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"

    def value_and_grad(self, y_pred, y_true):
        xp = get_array_module(y_pred)
        y = y_true.reshape(y_pred.shape).astype(y_pred.dtype, copy=False)
        size = y_pred.size
        if self.from_logits:
            z = y_pred
            loss = (xp.maximum(z, 0) - z * y + xp.log1p(xp.exp(-xp.abs(z)))).sum() / size
            grad = (0.5 * (1 + xp.tanh(0.5 * z)) - y) / size
        else:
            p = xp.clip(y_pred, EPSILON, 1 - EPSILON)
            loss = -(y * xp.log(p) + (1 - y) * xp.log(1 - p)).sum() / size
            grad = (p - y) / (p * (1 - p) * size)
        return loss.astype(y_pred.dtype), grad.astype(y_pred.dtype, copy=False)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def value_and_grad(self, y_pred, y_true):
        diff = y_pred - y_true.reshape(y_pred.shape).astype(y_pred.dtype, copy=False)
        loss = (diff * diff).sum() / diff.size
        return loss.astype(y_pred.dtype), diff * (2 / diff.size)


LOSSES = {cls.name: cls for cls in (SparseCategoricalCrossentropy, CategoricalCrossentropy,
                                    BinaryCrossentropy, MeanSquaredError)}
ALIASES = {"mse": "mean_squared_error", "crossentropy": "categorical_crossentropy"}


def get(identifier):
    """Loss instance from a Keras name ('sparse_categorical_crossentropy', 'mse', ...),
    a config dict {'class_name': name, 'config': {...}} or a Loss."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        cls = LOSSES.get(identifier.get("class_name"))
        if cls is None:
            raise unknown_name("loss", identifier.get("class_name"), LOSSES)
        return cls(**identifier.get("config", {}))
    if isinstance(identifier, str):
        key = ALIASES.get(identifier.lower(), identifier.lower())
        if key in LOSSES:
            return LOSSES[key]()
    raise unknown_name("loss", identifier, list(LOSSES) + list(ALIASES))


def serialize(loss):
    return {"class_name": loss.name, "config": loss.get_config()}

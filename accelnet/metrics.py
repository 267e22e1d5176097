"""Keras's metrics: functions `f(y_true, y_pred) -> per-sample values` and stateful
`Metric` objects (`update_state`, `result`, `reset_state`).

A metric's state lives on the device as small arrays (`Variable`s), updated in place
batch after batch; `result()` returns a 0-d device array, so nothing is read back to the
host until the model reads every metric once per epoch (one transfer for all of them).
"""
import numpy

from .backend import get_array_module, get_backend
from .errors import InvalidArgumentError, unknown_name


# -- functions (keras.metrics.*): per-sample values, no reduction over the batch -------
def _f32(a):
    return a.astype(get_array_module(a).float32)


def _class_ids(y_true):
    """Sparse labels of shape (N,) or (N, 1) -> (N,) integers."""
    return y_true.reshape(y_true.shape[0], -1)[:, 0] if y_true.ndim > 1 else y_true


def _same_rank(y_true, y_pred):
    """y_true with y_pred's rank (a missing or extra last axis of 1, as Keras squeezes or
    expands), in y_pred's dtype."""
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true.reshape(y_true.shape + (1,))
    elif y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true.reshape(y_true.shape[:-1])
    return y_true.astype(y_pred.dtype)


def accuracy(y_true, y_pred):
    """1 where y_pred equals y_true (element-wise), else 0."""
    return _f32(_same_rank(y_true, y_pred) == y_pred)


def sparse_categorical_accuracy(y_true, y_pred):
    """1 where argmax(y_pred) is the integer label."""
    predicted = y_pred.argmax(axis=-1)
    return _f32(predicted == _class_ids(y_true).astype(predicted.dtype))


def categorical_accuracy(y_true, y_pred):
    """1 where argmax(y_pred) equals argmax(y_true) (one-hot labels)."""
    return _f32(y_pred.argmax(axis=-1) == y_true.argmax(axis=-1))


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Mean over the last axis of (y_pred > threshold) == y_true."""
    return _f32((y_pred > threshold) == (_same_rank(y_true, y_pred) > 0.5)).mean(axis=-1)


def _in_top_k(targets, y_pred, k):
    """Target class among the k largest scores (ties counted in its favour, as TF)."""
    xp = get_array_module(y_pred)
    rows = xp.arange(y_pred.shape[0])
    score = y_pred[rows, targets.astype(xp.int64)]
    return _f32((y_pred > score[:, None]).sum(axis=-1) < k)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    return _in_top_k(y_true.argmax(axis=-1), y_pred, k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5):
    return _in_top_k(_class_ids(y_true), y_pred, k)


def mean_squared_error(y_true, y_pred):
    diff = y_pred - _same_rank(y_true, y_pred)
    return (diff * diff).mean(axis=-1)


def mean_absolute_error(y_true, y_pred):
    xp = get_array_module(y_pred)
    return xp.abs(y_pred - _same_rank(y_true, y_pred)).mean(axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    """100·mean(|y_true − y_pred| / max(|y_true|, epsilon)) over the last axis."""
    xp = get_array_module(y_pred)
    y_true = _same_rank(y_true, y_pred)
    return 100 * (xp.abs(y_true - y_pred) / xp.maximum(xp.abs(y_true), 1e-7)).mean(axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    """mean((log(1 + max(y_pred, eps)) − log(1 + max(y_true, eps)))²) over the last axis."""
    xp = get_array_module(y_pred)
    y_true = _same_rank(y_true, y_pred)
    d = xp.log1p(xp.maximum(y_pred, 1e-7)) - xp.log1p(xp.maximum(y_true, 1e-7))
    return (d * d).mean(axis=-1)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error

FUNCTIONS = {f.__name__: f for f in (
    accuracy, sparse_categorical_accuracy, categorical_accuracy, binary_accuracy,
    top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, mean_squared_error,
    mean_absolute_error, mean_absolute_percentage_error, mean_squared_logarithmic_error)}
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
           "mape": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error"}


# -- stateful metrics ------------------------------------------------------------------
class Variable:
    """A metric's state array on the device, updated in place (`assign_add`, ...)."""

    def __init__(self, shape=(), value=0.0, dtype="float32"):
        backend = get_backend()
        self.initial = value
        self.value = backend.xp.full(tuple(shape), value, dtype=dtype)

    def assign(self, value):
        self.value[...] = value

    def assign_add(self, value):
        self.value += value

    def assign_sub(self, value):
        self.value -= value

    def reset(self):
        self.value[...] = self.initial

    @property
    def shape(self):
        return self.value.shape

    def numpy(self):
        return get_backend().to_numpy(self.value)

    def __repr__(self):
        return f"<metrics.Variable shape={self.shape}>"

    # arithmetic reads the value, so `self.total / self.count` works in result()
    def __add__(self, o): return self.value + _value(o)
    def __radd__(self, o): return _value(o) + self.value
    def __sub__(self, o): return self.value - _value(o)
    def __rsub__(self, o): return _value(o) - self.value
    def __mul__(self, o): return self.value * _value(o)
    def __rmul__(self, o): return _value(o) * self.value
    def __truediv__(self, o): return self.value / _value(o)
    def __rtruediv__(self, o): return _value(o) / self.value
    def __neg__(self): return -self.value


def _value(x):
    return x.value if isinstance(x, Variable) else x


class Metric:
    """Base class of stateful metrics, as Keras's: override `update_state(y_true, y_pred,
    sample_weight=None)` and `result()`; create state with `add_variable` (or
    `add_weight`) so `reset_state` and data-parallel training find it. Data-parallel fit
    sums every state array over the ranks before `result()`: state must be additive."""

    def __init__(self, name=None, dtype=None):
        from .layers.base import snake_case
        self.name = name or snake_case(type(self).__name__)
        self.dtype = dtype or "float32"
        self._variables = []

    def add_variable(self, shape=(), initializer="zeros", dtype=None, name=None):
        value = {"zeros": 0.0, "ones": 1.0}.get(initializer, initializer)
        if not isinstance(value, (int, float)):
            raise InvalidArgumentError(f"Metric {self.name!r}: initializer must be 'zeros', 'ones' "
                                       f"or a number, got {initializer!r}.")
        var = Variable(shape, float(value), dtype or self.dtype)
        self._variables.append(var)
        return var

    def add_weight(self, name=None, shape=(), initializer="zeros", dtype=None):
        return self.add_variable(shape, initializer, dtype, name)

    @property
    def variables(self):
        return list(self._variables)

    def reset_state(self):
        for var in self._variables:
            var.reset()

    def update_state(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement update_state().")

    def result(self):
        raise NotImplementedError(f"{type(self).__name__} must implement result().")

    def __call__(self, *args, **kwargs):
        """Update with one batch and return the running result (Keras's behaviour)."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


def _per_sample(values):
    """Average every axis but the first (Keras's reduction to sample-wise values)."""
    return values.reshape(values.shape[0], -1).mean(axis=-1) if values.ndim > 1 else values


class Mean(Metric):
    """The (weighted) mean of the values given to `update_state(values, sample_weight)`;
    `sample_weight` is one weight per sample, or a number for all of them."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable()
        self.count = self.add_variable()

    def update_state(self, values, sample_weight=None):
        xp = get_backend().xp
        if isinstance(values, (int, float)):
            values = xp.full((1,), values, dtype=self.dtype)
        values = values.reshape(1) if values.ndim == 0 else _per_sample(values)
        if sample_weight is None:
            self.total.assign_add(values.sum().astype(self.dtype))
            self.count.assign_add(values.shape[0])
            return
        if isinstance(sample_weight, (int, float)):  # e.g. the trainer's batch size
            w = numpy.dtype(self.dtype).type(sample_weight)
            self.total.assign_add((values * w).sum().astype(self.dtype))
            self.count.assign_add(w * values.shape[0])
            return
        w = sample_weight.reshape(-1).astype(self.dtype)
        self.total.assign_add((values * w).sum().astype(self.dtype))
        self.count.assign_add(w.sum().astype(self.dtype))

    def result(self):
        xp = get_array_module(self.total.value)
        return self.total.value / xp.maximum(self.count.value, self.total.value.dtype.type(1e-30))


class Sum(Metric):
    """The (weighted) sum of the values."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable()

    def update_state(self, values, sample_weight=None):
        if sample_weight is not None:
            values = values * sample_weight.reshape((-1,) + (1,) * (values.ndim - 1))
        self.total.assign_add(values.sum().astype(self.dtype))

    def result(self):
        return self.total.value + 0


class MeanMetricWrapper(Mean):
    """The weighted mean over samples of `fn(y_true, y_pred, **kwargs)`."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        super().__init__(name=name or fn.__name__, dtype=dtype)
        self._fn, self._fn_kwargs = fn, kwargs
        if not hasattr(self, "_direction") and fn.__name__ in FUNCTIONS:
            self._direction = "down" if "error" in fn.__name__ else "up"

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(self._fn(y_true, y_pred, **self._fn_kwargs), sample_weight)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


def _wrapper(fn, default_name, doc, **defaults):
    """A MeanMetricWrapper subclass with Keras's class name, default name and arguments;
    `_direction` tells monitors (EarlyStopping, ...) in 'auto' mode which way is better."""
    def __init__(self, name=default_name, dtype=None, **kwargs):
        MeanMetricWrapper.__init__(self, fn, name=name, dtype=dtype, **{**defaults, **kwargs})
    direction = "down" if "error" in default_name else "up"
    return {"__init__": __init__, "__doc__": doc, "_direction": direction}


Accuracy = type("Accuracy", (MeanMetricWrapper,), _wrapper(
    accuracy, "accuracy", "How often y_pred equals y_true."))
SparseCategoricalAccuracy = type("SparseCategoricalAccuracy", (MeanMetricWrapper,), _wrapper(
    sparse_categorical_accuracy, "sparse_categorical_accuracy", "Argmax matches the integer label."))
CategoricalAccuracy = type("CategoricalAccuracy", (MeanMetricWrapper,), _wrapper(
    categorical_accuracy, "categorical_accuracy", "Argmax matches the one-hot label's argmax."))
BinaryAccuracy = type("BinaryAccuracy", (MeanMetricWrapper,), _wrapper(
    binary_accuracy, "binary_accuracy", "Thresholded prediction matches the 0/1 label.",
    threshold=0.5))
TopKCategoricalAccuracy = type("TopKCategoricalAccuracy", (MeanMetricWrapper,), _wrapper(
    top_k_categorical_accuracy, "top_k_categorical_accuracy", "One-hot label in the top k.", k=5))
SparseTopKCategoricalAccuracy = type("SparseTopKCategoricalAccuracy", (MeanMetricWrapper,), _wrapper(
    sparse_top_k_categorical_accuracy, "sparse_top_k_categorical_accuracy",
    "Integer label in the top k.", k=5))
MeanSquaredError = type("MeanSquaredError", (MeanMetricWrapper,), _wrapper(
    mean_squared_error, "mean_squared_error", "Mean of (y_pred - y_true)^2."))
MeanAbsoluteError = type("MeanAbsoluteError", (MeanMetricWrapper,), _wrapper(
    mean_absolute_error, "mean_absolute_error", "Mean of |y_pred - y_true|."))
MeanAbsolutePercentageError = type("MeanAbsolutePercentageError", (MeanMetricWrapper,), _wrapper(
    mean_absolute_percentage_error, "mean_absolute_percentage_error", "100·mean(|error| / |y_true|)."))
MeanSquaredLogarithmicError = type("MeanSquaredLogarithmicError", (MeanMetricWrapper,), _wrapper(
    mean_squared_logarithmic_error, "mean_squared_logarithmic_error", "Mean squared log1p error."))


class RootMeanSquaredError(Mean):
    """sqrt of the (weighted) mean squared error over all samples seen."""

    _direction = "down"

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        super().update_state(mean_squared_error(y_true, y_pred), sample_weight)

    def result(self):
        xp = get_array_module(self.total.value)
        return xp.sqrt(super().result())


class _Confusion(Metric):
    """True positives and the other count of Precision/Recall at `thresholds` (one
    threshold; Keras's default 0.5), summed over every element, weighted per sample."""

    _direction = "up"

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        if thresholds is not None and not isinstance(thresholds, (int, float)):
            raise InvalidArgumentError(f"{type(self).__name__}: accelnet supports one threshold, "
                                       f"got {thresholds!r}.")
        self.thresholds = 0.5 if thresholds is None else float(thresholds)
        self.true_positives = self.add_variable()
        self.other = self.add_variable()

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = _same_rank(y_true, y_pred) > 0.5
        predicted = y_pred > self.thresholds
        w = 1.0 if sample_weight is None else \
            sample_weight.reshape((-1,) + (1,) * (y_pred.ndim - 1)).astype(self.dtype)
        self.true_positives.assign_add((_f32(y_true & predicted) * w).sum().astype(self.dtype))
        self.other.assign_add((_f32(self._other(y_true, predicted)) * w).sum().astype(self.dtype))

    def result(self):
        xp = get_array_module(self.true_positives.value)
        tp, other = self.true_positives.value, self.other.value
        total = tp + other
        return xp.where(total > 0, tp / xp.maximum(total, 1e-30), 0 * tp)

    def get_config(self):
        return {**super().get_config(), "thresholds": self.thresholds}


class Precision(_Confusion):
    """tp / (tp + fp) of predictions above the threshold."""

    def __init__(self, thresholds=None, name="precision", dtype=None):
        super().__init__(thresholds, name, dtype)

    @staticmethod
    def _other(y_true, predicted):
        return ~y_true & predicted  # false positives


class Recall(_Confusion):
    """tp / (tp + fn) of predictions above the threshold."""

    def __init__(self, thresholds=None, name="recall", dtype=None):
        super().__init__(thresholds, name, dtype)

    @staticmethod
    def _other(y_true, predicted):
        return y_true & ~predicted  # false negatives

CLASSES = {cls.__name__: cls for cls in (
    Mean, Sum, Accuracy, SparseCategoricalAccuracy, CategoricalAccuracy, BinaryAccuracy,
    TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy, MeanSquaredError, MeanAbsoluteError,
    MeanAbsolutePercentageError, MeanSquaredLogarithmicError, RootMeanSquaredError, Precision, Recall)}


def get(identifier):
    """A metric function or Metric from a name ('mae', 'sparse_categorical_accuracy',
    'SparseCategoricalAccuracy'), a function, or a Metric (returned as is)."""
    if isinstance(identifier, Metric) or callable(identifier) and not isinstance(identifier, type):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, str):
        key = ALIASES.get(identifier.lower(), identifier.lower())
        if key in FUNCTIONS:
            return FUNCTIONS[key]
        if identifier in CLASSES:
            return CLASSES[identifier]()
        from .layers.base import snake_case
        by_snake = {snake_case(name): cls for name, cls in CLASSES.items()}
        if key in by_snake:  # 'precision', 'root_mean_squared_error', as Keras 3
            return by_snake[key]()
    raise unknown_name("metric", identifier, sorted(FUNCTIONS) + sorted(ALIASES) + ["accuracy", "acc"])


def resolve(identifier, y_true_ndim, units, from_logits=False):
    """The Metric object compile(metrics=[...]) runs, named as Keras names it in logs.

    'accuracy'/'acc' pick binary, sparse or categorical accuracy from the shapes, as
    Keras 3 does: binary for one output unit, sparse for labels without a class axis.
    With a from_logits loss, binary accuracy thresholds the logits at 0 (probability
    0.5), where Keras thresholds the logits at 0.5."""
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        if units == 1:
            metric = BinaryAccuracy(name=identifier, threshold=0.0 if from_logits else 0.5)
        elif y_true_ndim == 1:
            metric = SparseCategoricalAccuracy(name=identifier)
        else:
            metric = CategoricalAccuracy(name=identifier)
        return metric
    obj = get(identifier)
    if isinstance(obj, Metric):
        if isinstance(identifier, str):
            obj.name = identifier  # logged under the string given, as Keras 3
        return obj
    name = identifier if isinstance(identifier, str) else getattr(obj, "__name__", type(obj).__name__)
    return MeanMetricWrapper(obj, name=name)


def serialize(identifier):
    """JSON form of a compile(metrics=) entry: names as they are, known functions and
    classes by name; None for user objects (they cannot be rebuilt from a file)."""
    if isinstance(identifier, str):
        return identifier
    if getattr(identifier, "__name__", None) in FUNCTIONS and FUNCTIONS[identifier.__name__] is identifier:
        return identifier.__name__
    if type(identifier).__name__ in CLASSES and type(identifier) is CLASSES[type(identifier).__name__]:
        return type(identifier).__name__
    return None


def stack_results(metrics):
    """Every metric's result in one device array (read back with one transfer)."""
    xp = get_backend().xp
    values = []
    for m in metrics:
        r = _value(m.result())
        values.append(r.reshape(()).astype(xp.float32) if hasattr(r, "reshape") else
                      xp.full((), float(r), dtype=xp.float32))
    return xp.stack(values) if values else xp.zeros((0,), xp.float32)


__all__ = ["Metric", "Mean", "Sum", "MeanMetricWrapper", "Variable", "get", "resolve"] + \
    list(CLASSES) + list(FUNCTIONS) + ["mae", "mse", "mape", "msle", "MAE", "MSE", "MAPE", "MSLE"]

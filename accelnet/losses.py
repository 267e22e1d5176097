"""Keras 3's losses: per-sample functions, `Loss` classes that reduce them, and gradients.

- `categorical_crossentropy(y_true, y_pred, ...)` and the other functions return one loss per
  sample (the last axis reduced), as `keras.losses.*` do. They are written with
  `accelnet.ops`, so they run on arrays and on the ops tape.
- `Loss(reduction="sum_over_batch_size")`: `loss(y_true, y_pred, sample_weight=None)` is
  sum(w * l) / l.size (Keras 3's reduction). Subclass it and implement only
  `call(y_true, y_pred)` for a custom loss; any `f(y_true, y_pred)` works too (`get(f)`).
- `loss.value_and_grad(y_true, y_pred, sample_weight=None)` -> (loss as a 0-d array, no host
  sync; dloss/dy_pred). The built-in losses have hand-written gradients, and cross-entropy
  after a softmax runs the fused kernel on the logits (`logits_value_and_grad`); every other
  loss is differentiated exactly on the ops tape.
"""
import inspect
import re

from . import kernels, ops
from .backend import get_array_module, is_device_array, to_numpy
from .errors import InvalidArgumentError, ShapeError, unknown_name

EPSILON = ops.EPSILON  # Keras's clip for probabilities
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none")


# -- helpers ------------------------------------------------------------------------------
def _like(y_true, y_pred, dtype=True):
    """y_pred as an array (or Tensor); y_true moved to its device and, with `dtype`, cast to
    its floating dtype (Keras converts y_true to the loss's dtype)."""
    y_pred = ops.convert_to_tensor(y_pred)
    if not isinstance(y_true, ops.Tensor):
        xp = get_array_module(ops._data(y_pred))
        if get_array_module(y_true) is not xp:
            y_true = xp.asarray(to_numpy(y_true) if is_device_array(y_true) else y_true)
        elif not hasattr(y_true, "dtype"):
            y_true = xp.asarray(y_true)
    if dtype and y_pred.dtype.kind == "f" and y_true.dtype != y_pred.dtype:
        y_true = ops.cast(y_true, y_pred.dtype)
    return y_true, y_pred


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1=True):
    """Keras's rule: when ranks differ by one and the longer ends in 1, make them equal."""
    r1, r2 = len(x1.shape), len(x2.shape)
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = ops.expand_dims(x2, -1)
        else:
            x1 = ops.squeeze(x1, -1)
    elif r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = ops.expand_dims(x1, -1)
        else:
            x2 = ops.squeeze(x2, -1)
    return x1, x2


def _same_shape(name, y_true, y_pred):
    if tuple(y_true.shape) != tuple(y_pred.shape):
        hint = (" For integer labels use sparse_categorical_crossentropy."
                if name == "categorical_crossentropy" else "")
        raise ShapeError(f"{name}: y_true and y_pred must have the same shape, got y_true "
                         f"{tuple(y_true.shape)} and y_pred {tuple(y_pred.shape)}.{hint}")


def _sparse_labels(y_true, y_pred):
    """Integer class indices with y_pred's shape minus the class axis."""
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, -1)
    if tuple(y_true.shape) != tuple(y_pred.shape[:-1]):
        raise ShapeError(f"sparse_categorical_crossentropy: y_true must hold class indices of shape "
                         f"{tuple(y_pred.shape[:-1])} for y_pred of shape {tuple(y_pred.shape)}, got "
                         f"shape {tuple(y_true.shape)}. For one-hot labels use "
                         f"categorical_crossentropy.")
    return ops.cast(y_true, "int64")


def _smooth_categorical(y_true, label_smoothing):
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]


def _smooth_binary(y_true, label_smoothing):
    if not label_smoothing:
        return y_true
    return y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing


# -- Keras's loss functions: one loss per sample -----------------------------------------------
def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """-sum(y_true * log p): p = softmax(y_pred) with from_logits, else y_pred divided by its
    sum along `axis` and clipped to [1e-7, 1 - 1e-7] (Keras 3)."""
    y_true, y_pred = _like(y_true, y_pred)
    _same_shape("categorical_crossentropy", y_true, y_pred)
    y_true = _smooth_categorical(y_true, label_smoothing)
    if from_logits:
        log_prob = ops.log_softmax(y_pred, axis=axis)
    else:
        y_pred = y_pred / ops.sum(y_pred, axis=axis, keepdims=True)
        log_prob = ops.log(ops.clip(y_pred, EPSILON, 1.0 - EPSILON))
    return -ops.sum(y_true * log_prob, axis=axis)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, axis=-1):
    """categorical_crossentropy with integer class labels."""
    y_true, y_pred = _like(y_true, y_pred, dtype=False)
    labels = _sparse_labels(y_true, y_pred)
    onehot = ops.one_hot(labels, y_pred.shape[axis], axis=axis, dtype=y_pred.dtype)
    return categorical_crossentropy(onehot, y_pred, from_logits=from_logits, axis=axis)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Mean over `axis` of -(y log p + (1 - y) log(1 - p)), p clipped to [1e-7, 1 - 1e-7]
    (or p = sigmoid(y_pred), computed stably, with from_logits)."""
    y_true, y_pred = squeeze_or_expand_to_same_rank(*_like(y_true, y_pred))
    _same_shape("binary_crossentropy", y_true, y_pred)
    y_true = _smooth_binary(y_true, label_smoothing)
    if from_logits:
        bce = ops.softplus(y_pred) - y_true * y_pred
    else:
        p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
        bce = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
    return ops.mean(bce, axis=axis)


def _elementwise(y_true, y_pred):
    return squeeze_or_expand_to_same_rank(*_like(y_true, y_pred))


def mean_squared_error(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return ops.mean(ops.square(y_true - y_pred), axis=-1)


def mean_absolute_error(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return ops.mean(ops.abs(y_true - y_pred), axis=-1)


def mean_absolute_percentage_error(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    diff = ops.abs((y_true - y_pred) / ops.maximum(ops.abs(y_true), EPSILON))
    return 100.0 * ops.mean(diff, axis=-1)


def mean_squared_logarithmic_error(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    first = ops.log(ops.maximum(y_pred, EPSILON) + 1.0)
    second = ops.log(ops.maximum(y_true, EPSILON) + 1.0)
    return ops.mean(ops.square(first - second), axis=-1)


def huber(y_true, y_pred, delta=1.0):
    """0.5 e² where |e| <= delta, else delta (|e| - 0.5 delta); mean over the last axis."""
    y_true, y_pred = _elementwise(y_true, y_pred)
    error = y_pred - y_true
    abs_error = ops.abs(error)
    return ops.mean(ops.where(abs_error <= delta, 0.5 * ops.square(error),
                              delta * abs_error - 0.5 * delta * delta), axis=-1)


def log_cosh(y_true, y_pred):
    """Mean of log(cosh(e)) = e + softplus(-2e) - log 2 (stable for large |e|)."""
    y_true, y_pred = _elementwise(y_true, y_pred)
    error = y_pred - y_true
    return ops.mean(error + ops.softplus(-2.0 * error) - 0.6931471805599453, axis=-1)


def kl_divergence(y_true, y_pred):
    """sum(y_true * log(y_true / y_pred)), both clipped to [1e-7, 1]."""
    y_true, y_pred = _like(y_true, y_pred)
    y_true = ops.clip(y_true, EPSILON, 1.0)
    y_pred = ops.clip(y_pred, EPSILON, 1.0)
    return ops.sum(y_true * ops.log(y_true / y_pred), axis=-1)


def _hinge_labels(y_true):
    """Labels in {0, 1} become {-1, 1} (all of them or none, as Keras decides per batch;
    decided on the device, no host read)."""
    binary = ops.all(ops.logical_or(ops.equal(y_true, 0), ops.equal(y_true, 1)))
    return ops.where(binary, 2.0 * y_true - 1.0, y_true)


def hinge(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return ops.mean(ops.maximum(1.0 - _hinge_labels(y_true) * y_pred, 0.0), axis=-1)


def squared_hinge(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return ops.mean(ops.square(ops.maximum(1.0 - _hinge_labels(y_true) * y_pred, 0.0)), axis=-1)


def categorical_hinge(y_true, y_pred):
    """max(0, 1 + max((1 - y_true) * y_pred) - sum(y_true * y_pred))."""
    y_true, y_pred = _like(y_true, y_pred)
    pos = ops.sum(y_true * y_pred, axis=-1)
    neg = ops.max((1.0 - y_true) * y_pred, axis=-1)
    return ops.maximum(neg - pos + 1.0, 0.0)


def poisson(y_true, y_pred):
    y_true, y_pred = _elementwise(y_true, y_pred)
    return ops.mean(y_pred - y_true * ops.log(y_pred + EPSILON), axis=-1)


# -- reduction -----------------------------------------------------------------------------
def _weights(sample_weight, values):
    """sample_weight on values' device and dtype, shaped to broadcast against values:
    (N,) weights for (N, T) losses weigh every step of a sample."""
    xp = get_array_module(ops._data(values))
    w = ops._data(sample_weight)
    w = xp.asarray(to_numpy(w) if is_device_array(w) and get_array_module(w) is not xp else w,
                   dtype=values.dtype)
    if w.ndim == values.ndim + 1 and w.shape[-1] == 1:
        w = w.reshape(w.shape[:-1])
    elif w.ndim < values.ndim:
        w = w.reshape(tuple(w.shape) + (1,) * (values.ndim - w.ndim))
    if w.ndim != values.ndim or any(a not in (1, b) for a, b in zip(w.shape, values.shape)):
        raise ShapeError(f"sample_weight of shape {tuple(w.shape)} does not match the per-sample "
                         f"losses of shape {tuple(values.shape)}; pass one weight per sample.")
    return w


def _divisor(values, w, reduction):
    if reduction == "sum":
        return None
    if reduction == "mean_with_sample_weight" and w is not None:
        return w.sum()
    return values.size


def _check_reduction(reduction):
    reduction = "none" if reduction is None else str(reduction).lower()
    if reduction == "auto":  # Keras 2's name for the default
        reduction = "sum_over_batch_size"
    if reduction not in REDUCTIONS:
        raise InvalidArgumentError(f"Unknown loss reduction {reduction!r}; valid reductions: "
                                   f"{', '.join(REDUCTIONS)}.")
    return reduction


def reduce_weighted_values(values, sample_weight=None, reduction="sum_over_batch_size"):
    """Keras 3's reduction of per-sample losses: sum(w * l) divided by l.size (the default
    'sum_over_batch_size'/'mean'), by sum(w) ('mean_with_sample_weight'), by 1 ('sum'), or
    the weighted losses themselves ('none')."""
    w = None if sample_weight is None else _weights(sample_weight, values)
    if w is not None:
        values = values * w
    if reduction == "none" or values.ndim == 0:
        return values
    total = ops.sum(values)
    divisor = _divisor(values, w, reduction)
    if divisor is None:
        return total
    return total / divisor if isinstance(divisor, int) else ops.divide_no_nan(total, divisor)


def _reduce_with_grad(values, dvalues, sample_weight, reduction, y_pred_shape):
    """(reduced loss, its gradient) from per-sample losses and d(l_i)/d(y_pred): each loss
    depends only on its own slice of y_pred, so the gradient is dvalues scaled by w / divisor."""
    xp = get_array_module(values)
    w = None if sample_weight is None else _weights(sample_weight, values)
    divisor = _divisor(values, w, reduction)
    scale = xp.ones((), dtype=values.dtype) if w is None else w
    if isinstance(divisor, int):
        scale = scale / divisor
    elif divisor is not None:
        scale = ops.divide_no_nan(scale, divisor)
    loss = (values * scale).sum()
    scale = xp.broadcast_to(scale, values.shape) if scale.ndim else scale
    scale = scale.reshape(tuple(scale.shape) + (1,) * (dvalues.ndim - scale.ndim))
    grad = (dvalues * scale).reshape(y_pred_shape)
    return loss.astype(dvalues.dtype, copy=False), grad.astype(dvalues.dtype, copy=False)


# -- Loss classes -----------------------------------------------------------------------------
def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Loss:
    """Keras 3's Loss. A subclass implements `call(y_true, y_pred)` -> per-sample losses;
    `__call__` reduces them; `value_and_grad` gives the reduced loss and dloss/dy_pred."""

    fuses_with_softmax = False  # True: the model may hand logits to logits_value_and_grad
    from_logits = False

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        self.name = name or _snake(type(self).__name__)
        self.reduction = _check_reduction(reduction)
        self.dtype = dtype

    def call(self, y_true, y_pred):
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred).")

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss (a 0-d array; a Tensor on the tape)."""
        y_true, y_pred = _like(y_true, y_pred)
        values = ops.convert_to_tensor(self.call(y_true, y_pred))
        return reduce_weighted_values(values, sample_weight, self._reduction())

    def value_and_grad(self, y_true, y_pred, sample_weight=None):
        """(loss, dloss/dy_pred) for a batch: the loss as `__call__` gives it (a 0-d array in
        y_pred's dtype, no host sync) and the gradient in y_pred's shape and dtype."""
        reduction = self._reduction()
        if reduction == "none":
            raise InvalidArgumentError(f"Loss {self.name!r} has reduction='none': its value is "
                                       f"not a scalar, so it has no gradient to train with.")
        y_pred = ops.convert_to_tensor(y_pred)
        known = self._values_and_grads(y_true, y_pred)
        if known is None:  # no hand-written form: differentiate call() on the tape
            y_true, y_pred = _like(y_true, y_pred)
            constant = ops.Tensor(y_true)
            return ops.value_and_grad(lambda p: self(constant, p, sample_weight), y_pred)
        values, dvalues = known
        return _reduce_with_grad(values, dvalues, sample_weight, reduction, y_pred.shape)

    def _values_and_grads(self, y_true, y_pred):
        """(per-sample losses, d(l_i)/d(y_pred) in y_pred's layout) by hand, or None."""
        return None

    def _reduction(self):
        return getattr(self, "reduction", "sum_over_batch_size")  # a subclass may skip __init__

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class LossFunctionWrapper(Loss):
    """A Loss around a function `fn(y_true, y_pred, **kwargs)` returning per-sample losses
    (what `compile(loss=f)` builds from a user's function)."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(name=name or getattr(fn, "__name__", None) or "loss",
                         reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        return {**super().get_config(), **self._fn_kwargs}


class _Builtin(LossFunctionWrapper):
    """A built-in Loss: `fn` is fixed by the class, its keyword arguments are the config."""

    fn_ = None

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        fn = type(self).fn_
        unknown = set(kwargs) - set(inspect.signature(fn).parameters)
        if unknown:
            raise InvalidArgumentError(f"{type(self).__name__} got unexpected arguments "
                                       f"{sorted(unknown)}.")
        super().__init__(fn, reduction=reduction, name=name or fn.__name__, dtype=dtype, **kwargs)


class _CrossEntropy(_Builtin):
    """Softmax cross-entropy: after a softmax the model hands the *logits* to
    `logits_value_and_grad`, which runs the fused `softmax_cross_entropy` kernel (one pass per
    row, stable for huge logits) instead of softmax -> log -> divide."""

    @property
    def fuses_with_softmax(self):
        return self._fn_kwargs.get("axis", -1) == -1

    @property
    def from_logits(self):
        return self._fn_kwargs["from_logits"]

    def value_and_grad(self, y_true, y_pred, sample_weight=None):
        if self.from_logits and self.fuses_with_softmax and self._reduction() != "none":
            return self.logits_value_and_grad(y_true, y_pred, sample_weight)
        return super().value_and_grad(y_true, y_pred, sample_weight)

    def logits_value_and_grad(self, y_true, logits, sample_weight=None):
        """(loss, dloss/dlogits) of this loss on softmax(logits), as value_and_grad gives it."""
        y_true, logits = _like(y_true, logits, dtype=False)
        classes = logits.shape[-1]
        flat = logits.reshape(-1, classes)
        loss, dflat = kernels.softmax_cross_entropy(flat, self._kernel_labels(y_true, logits))
        grad = dflat.reshape(logits.shape)
        reduction = self._reduction()
        if sample_weight is None and reduction in ("sum_over_batch_size", "mean",
                                                   "mean_with_sample_weight"):
            return loss, grad
        kwargs = {k: v for k, v in self._fn_kwargs.items() if k != "from_logits"}
        values = self.fn(y_true, logits, from_logits=True, **kwargs)
        return _reduce_with_grad(values, grad * flat.shape[0], sample_weight, reduction, logits.shape)

    def _values_and_grads(self, y_true, y_pred):
        """Keras 3 on probabilities: p = y_pred / sum(y_pred), clipped to [eps, 1 - eps]
        (the gradient is zero where the clip acts, as Keras's is)."""
        if self.from_logits or not self.fuses_with_softmax:
            return None
        y, y_pred = self._dense_targets(*_like(y_true, y_pred, dtype=False))
        xp = get_array_module(y_pred)
        total = y_pred.sum(axis=-1, keepdims=True)
        p = y_pred / total
        clipped = xp.clip(p, EPSILON, 1 - EPSILON)
        values = -(y * xp.log(clipped)).sum(axis=-1)
        dp = xp.where((p >= EPSILON) & (p <= 1 - EPSILON), -y / clipped, 0)
        return values, (dp - (dp * p).sum(axis=-1, keepdims=True)) / total


class CategoricalCrossentropy(_CrossEntropy):
    fn_ = staticmethod(categorical_crossentropy)

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="categorical_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype, from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing), axis=axis)

    def _dense_targets(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        _same_shape("categorical_crossentropy", y_true, y_pred)
        return _smooth_categorical(y_true, self._fn_kwargs["label_smoothing"]), y_pred

    def _kernel_labels(self, y_true, logits):
        y, _ = self._dense_targets(y_true, logits)
        return y.reshape(-1, logits.shape[-1])


class SparseCategoricalCrossentropy(_CrossEntropy):
    fn_ = staticmethod(sparse_categorical_crossentropy)

    def __init__(self, from_logits=False, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", dtype=None, axis=-1):
        super().__init__(reduction=reduction, name=name, dtype=dtype, from_logits=bool(from_logits),
                         axis=axis)

    def _dense_targets(self, y_true, y_pred):
        labels = _sparse_labels(y_true, y_pred)
        return ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype), y_pred

    def _kernel_labels(self, y_true, logits):
        return _sparse_labels(y_true, logits).reshape(-1)


class BinaryCrossentropy(_Builtin):
    fn_ = staticmethod(binary_crossentropy)

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name="binary_crossentropy", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype, from_logits=bool(from_logits),
                         label_smoothing=float(label_smoothing), axis=axis)

    @property
    def from_logits(self):
        return self._fn_kwargs["from_logits"]

    def _values_and_grads(self, y_true, y_pred):
        """On probabilities the gradient is (p - y) / (p (1 - p)) at the clipped p even where
        the clip acts (Keras's is zero there): through a sigmoid it becomes p - y, the
        gradient of the logits form, so saturated units keep learning."""
        if self._fn_kwargs["axis"] != -1:
            return None
        y, p = squeeze_or_expand_to_same_rank(*_like(y_true, y_pred))
        _same_shape("binary_crossentropy", y, p)
        y = _smooth_binary(y, self._fn_kwargs["label_smoothing"])
        xp = get_array_module(p)
        width = p.shape[-1]
        if self.from_logits:
            values = (xp.maximum(p, 0) - p * y + xp.log1p(xp.exp(-xp.abs(p)))).mean(axis=-1)
            return values, (0.5 * (1 + xp.tanh(0.5 * p)) - y) / width
        p = xp.clip(p, EPSILON, 1 - EPSILON)
        values = -(y * xp.log(p) + (1 - y) * xp.log(1 - p)).mean(axis=-1)
        return values, (p - y) / (p * (1 - p) * width)


class MeanSquaredError(_Builtin):
    fn_ = staticmethod(mean_squared_error)

    def _values_and_grads(self, y_true, y_pred):
        y, p = squeeze_or_expand_to_same_rank(*_like(y_true, y_pred))
        diff = p - y
        return (diff * diff).mean(axis=-1), diff * (2.0 / diff.shape[-1])


class MeanAbsoluteError(_Builtin):
    fn_ = staticmethod(mean_absolute_error)

    def _values_and_grads(self, y_true, y_pred):
        y, p = squeeze_or_expand_to_same_rank(*_like(y_true, y_pred))
        diff = p - y
        xp = get_array_module(diff)
        return xp.abs(diff).mean(axis=-1), xp.sign(diff) / diff.shape[-1]


class MeanAbsolutePercentageError(_Builtin):
    fn_ = staticmethod(mean_absolute_percentage_error)


class MeanSquaredLogarithmicError(_Builtin):
    fn_ = staticmethod(mean_squared_logarithmic_error)


class Huber(_Builtin):
    fn_ = staticmethod(huber)

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype, delta=float(delta))


class LogCosh(_Builtin):
    fn_ = staticmethod(log_cosh)


class KLDivergence(_Builtin):
    fn_ = staticmethod(kl_divergence)


class Hinge(_Builtin):
    fn_ = staticmethod(hinge)


class SquaredHinge(_Builtin):
    fn_ = staticmethod(squared_hinge)


class CategoricalHinge(_Builtin):
    fn_ = staticmethod(categorical_hinge)


class Poisson(_Builtin):
    fn_ = staticmethod(poisson)


# -- lookup ----------------------------------------------------------------------------------
_CLASSES = [CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
            MeanSquaredError, MeanAbsoluteError, MeanAbsolutePercentageError,
            MeanSquaredLogarithmicError, Huber, LogCosh, KLDivergence, Hinge, SquaredHinge,
            CategoricalHinge, Poisson]
CLASSES = {cls.__name__: cls for cls in _CLASSES}
LOSSES = {cls.fn_.__name__: cls for cls in _CLASSES}  # function name -> class
ALIASES = {"mse": "mean_squared_error", "mae": "mean_absolute_error",
           "mape": "mean_absolute_percentage_error", "msle": "mean_squared_logarithmic_error",
           "kld": "kl_divergence", "kullback_leibler_divergence": "kl_divergence",
           "logcosh": "log_cosh", "huber_loss": "huber", "bce": "binary_crossentropy",
           "crossentropy": "categorical_crossentropy"}
_BY_FUNCTION = {cls.fn_: cls for cls in _CLASSES}

# Keras's short function names.
mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error
kld = KLD = kl_divergence
logcosh = log_cosh


def get(identifier):
    """A Loss from what `compile(loss=...)` accepts: a Loss; a name ('categorical_crossentropy',
    'mse', 'CategoricalCrossentropy'); a {'class_name', 'config'} dict (what `serialize`
    writes, old snake_case class names too); a Keras loss function (built-in functions give
    their class, with its hand-written gradient); any other `f(y_true, y_pred)` or a Loss
    subclass (differentiated on the ops tape)."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        cls = CLASSES.get(name) or LOSSES.get(ALIASES.get(str(name).lower(), str(name).lower()))
        if cls is None:
            error = unknown_name("loss", name, list(CLASSES) + list(LOSSES))
            error.args = (f"{error.args[0]} A model saved with a user loss loads with "
                          f"load_model(path, compile=False); compile it again with that loss.",)
            raise error
        config = identifier.get("config") or {}
        if not isinstance(config, dict):
            raise InvalidArgumentError(f"The config of loss {name} must be a dict, got {config!r}.")
        if "from_logits" not in inspect.signature(cls.fn_).parameters:
            config = {k: v for k, v in config.items() if k != "from_logits"}  # old files' MSE
        return cls(**config)
    if isinstance(identifier, str):
        if identifier in CLASSES:
            return CLASSES[identifier]()
        key = ALIASES.get(identifier.lower(), identifier.lower())
        if key in LOSSES:
            return LOSSES[key]()
        raise unknown_name("loss", identifier, list(LOSSES) + list(ALIASES) + list(CLASSES))
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        cls = _BY_FUNCTION.get(identifier)
        return cls() if cls is not None else LossFunctionWrapper(identifier)
    raise InvalidArgumentError(f"Cannot interpret {identifier!r} as a loss: pass a name, a Loss "
                               f"or a function f(y_true, y_pred).")


def serialize(loss):
    """{'class_name', 'config'} for `get`. User losses (functions, Loss subclasses) are saved
    by name; loading such a model with compile=True needs the loss registered again."""
    return {"class_name": type(loss).__name__ if type(loss) in _BY_FUNCTION.values() else loss.name,
            "config": loss.get_config()}

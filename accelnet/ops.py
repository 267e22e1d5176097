"""The small `keras.ops` subset that losses are written in, with a tape for exact gradients.

Every function takes NumPy/CuPy arrays (or Python numbers) and returns arrays, computed
once against `xp = get_array_module(...)`. If an argument is a `Tensor`, the result is a
`Tensor` too, and it remembers how it was made; `value_and_grad(f, x)` calls `f` on a
recording Tensor and runs the recorded steps backwards (reverse mode, micrograd-style), so
the gradient of any loss built from these functions, Python operators (`+ - * / ** @`,
indexing) and NumPy ufuncs on a Tensor is exact. A step that would leave the tape
(`numpy.asarray(t)`, `float(t)`, an unsupported NumPy function) raises `TapeError` instead
of silently dropping a gradient; `stop_gradient(x)` leaves it on purpose.
"""
import builtins

import numpy

from .backend import get_array_module, get_backend, to_numpy
from .errors import AccelnetError, InvalidArgumentError
from .graph import post_order

EPSILON = 1e-7  # Keras's backend.epsilon()


class TapeError(AccelnetError, TypeError):
    """A recording Tensor met an operation that cannot pass its gradient on."""


class Tensor:
    """An array plus the step that made it. `needs_grad` is True when it depends on the
    input being differentiated; then `_vjp(g)` maps the output gradient to its parents'."""

    __slots__ = ("data", "needs_grad", "_parents", "_vjp")
    __array_priority__ = 10000  # `ndarray * Tensor` goes to Tensor.__rmul__ / __array_ufunc__

    def __init__(self, data, needs_grad=False, parents=(), vjp=None):
        self.data = data
        self.needs_grad = needs_grad
        self._parents = parents
        self._vjp = vjp

    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)
    T = property(lambda self: transpose(self))

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, needs_grad={self.needs_grad})"

    # -- leaving the tape -------------------------------------------------------------
    def _refuse(self, what):
        if self.needs_grad:
            raise TapeError(f"{what} of a Tensor that a gradient is being taken through would "
                            f"drop its gradient; write the loss with accelnet.ops functions (or "
                            f"use ops.stop_gradient(x) to stop the gradient on purpose).")

    def __array__(self, *args, **kwargs):
        self._refuse("Converting to a NumPy array")
        return numpy.asarray(to_numpy(self.data), *args, **kwargs)

    def __float__(self):
        self._refuse("float()")
        return float(self.data)

    def __int__(self):
        self._refuse("int()")
        return int(self.data)

    def __bool__(self):
        return bool(self.data)

    def numpy(self):
        self._refuse("numpy()")
        return to_numpy(self.data)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        op = _UFUNCS.get(ufunc.__name__)
        if method != "__call__" or op is None or kwargs:
            raise TapeError(f"numpy.{ufunc.__name__}{'' if method == '__call__' else '.' + method}"
                            f"({', '.join(kwargs)}) is not supported on an accelnet Tensor; use "
                            f"accelnet.ops.")
        return op(*inputs)

    def __array_function__(self, func, types, args, kwargs):
        op = globals().get(func.__name__)
        if func.__name__ not in _NUMPY_FUNCTIONS or op is None:
            raise TapeError(f"numpy.{func.__name__} is not supported on an accelnet Tensor; use "
                            f"accelnet.ops.")
        return op(*args, **kwargs)

    # -- operators --------------------------------------------------------------------
    __add__ = lambda self, o: add(self, o)
    __radd__ = lambda self, o: add(o, self)
    __sub__ = lambda self, o: subtract(self, o)
    __rsub__ = lambda self, o: subtract(o, self)
    __mul__ = lambda self, o: multiply(self, o)
    __rmul__ = lambda self, o: multiply(o, self)
    __truediv__ = lambda self, o: divide(self, o)
    __rtruediv__ = lambda self, o: divide(o, self)
    __pow__ = lambda self, o: power(self, o)
    __rpow__ = lambda self, o: power(o, self)
    __matmul__ = lambda self, o: matmul(self, o)
    __rmatmul__ = lambda self, o: matmul(o, self)
    __neg__ = lambda self: negative(self)
    __pos__ = lambda self: self
    __abs__ = lambda self: abs(self)
    __lt__ = lambda self, o: less(self, o)
    __le__ = lambda self, o: less_equal(self, o)
    __gt__ = lambda self, o: greater(self, o)
    __ge__ = lambda self, o: greater_equal(self, o)
    __eq__ = lambda self, o: equal(self, o)
    __ne__ = lambda self, o: not_equal(self, o)
    __hash__ = object.__hash__

    def __getitem__(self, key):
        return _getitem(self, key)

    def astype(self, dtype, copy=True):
        return cast(self, dtype)

    def reshape(self, *shape):
        return reshape(self, shape[0] if len(shape) == 1 else shape)

    def sum(self, axis=None, keepdims=False):
        return sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return min(self, axis=axis, keepdims=keepdims)


# -- the tape ---------------------------------------------------------------------------
def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _xp(*xs):
    return get_array_module(*(_data(x) for x in xs))


def _op(value, inputs, vjp):
    """Wrap `value` as a Tensor if an input is one; record `vjp` if any needs a gradient.
    `vjp(g)` returns one gradient (or None) per input."""
    if not builtins.any(isinstance(x, Tensor) for x in inputs):
        return value
    needs = builtins.any(isinstance(x, Tensor) and x.needs_grad for x in inputs)
    return Tensor(value, needs, tuple(inputs) if needs else (), vjp if needs else None)


def _constant(value, inputs):
    """A result that carries no gradient (comparisons, argmax, one_hot, ...)."""
    return Tensor(value) if builtins.any(isinstance(x, Tensor) for x in inputs) else value


def _unbroadcast(g, x):
    """Sum `g` over the axes along which `x` was broadcast, so it has x's shape."""
    shape = tuple(getattr(_data(x), "shape", ()))
    if tuple(g.shape) == shape:
        return g
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def gradient(output, x):
    """d output / d x for a 0-d recorded `output` and a leaf Tensor `x` on its tape."""
    xp = _xp(output)
    if not (isinstance(output, Tensor) and output.needs_grad):
        return xp.zeros_like(x.data)
    order = post_order(output, lambda node: [p for p in node._parents
                                             if isinstance(p, Tensor) and p.needs_grad])
    grads = {id(output): xp.ones_like(output.data)}
    for node in reversed(order):
        g = grads.get(id(node))
        if g is None or node._vjp is None:
            continue
        if node is not x:
            del grads[id(node)]
        for parent, pg in zip(node._parents, node._vjp(g)):
            if pg is None or not (isinstance(parent, Tensor) and parent.needs_grad):
                continue
            pg = _unbroadcast(pg, parent)
            key = id(parent)
            grads[key] = pg if key not in grads else grads[key] + pg
    g = grads.get(id(x))
    return xp.zeros_like(x.data) if g is None else g.astype(x.data.dtype)  # a fresh, writable array


def value_and_grad(f, x):
    """(f(x), df/dx) for an array `x` and a scalar-valued `f` written with these ops."""
    t = Tensor(x, needs_grad=True)
    out = f(t)
    if isinstance(out, Tensor) and out.ndim != 0:
        raise InvalidArgumentError(f"value_and_grad needs a scalar result; f returned shape "
                                   f"{out.shape}.")
    return _data(out), gradient(out, t)


def stop_gradient(x):
    """x as a constant: no gradient flows back through it."""
    return Tensor(x.data) if isinstance(x, Tensor) else x


# -- conversion -------------------------------------------------------------------------
def convert_to_tensor(x, dtype=None, sparse=None):
    """An array: Tensors and device arrays stay where they are, host data go to the active
    backend; Python floats and lists of them become float32 (Keras's floatx)."""
    if isinstance(x, Tensor):
        return x if dtype is None else cast(x, dtype)
    if get_array_module(x) is not numpy:
        return x if dtype is None else x.astype(dtype, copy=False)
    if dtype is None and not hasattr(x, "dtype") and numpy.asarray(x).dtype.kind == "f":
        dtype = get_backend().float_dtype
    return get_backend().asarray(x, dtype=dtype)


def convert_to_numpy(x):
    if isinstance(x, Tensor):
        return x.numpy()
    return to_numpy(x)


def cast(x, dtype):
    dtype = numpy.dtype(dtype)
    value = _data(x).astype(dtype, copy=False)
    if dtype.kind != "f":
        return _constant(value, (x,))
    return _op(value, (x,), lambda g: (g,))


# -- element-wise, two arguments ----------------------------------------------------------
def add(x1, x2):
    return _op(_data(x1) + _data(x2), (x1, x2), lambda g: (g, g))


def subtract(x1, x2):
    return _op(_data(x1) - _data(x2), (x1, x2), lambda g: (g, -g))


def multiply(x1, x2):
    a, b = _data(x1), _data(x2)
    return _op(a * b, (x1, x2), lambda g: (g * b, g * a))


def divide(x1, x2):
    a, b = _data(x1), _data(x2)
    out = a / b
    return _op(out, (x1, x2), lambda g: (g / b, -g * out / b))


true_divide = divide


def divide_no_nan(x1, x2):
    """x1 / x2, with 0 where x2 == 0 (and a zero gradient there)."""
    xp = _xp(x1, x2)
    a, b = _data(x1), _data(x2)
    zero = b == 0
    safe = xp.where(zero, 1, b)
    out = xp.where(zero, 0, a / safe)
    return _op(out, (x1, x2), lambda g: (xp.where(zero, 0, g / safe), xp.where(zero, 0, -g * out / safe)))


def power(x1, x2):
    xp = _xp(x1, x2)
    a, b = _data(x1), _data(x2)
    out = a ** b

    def vjp(g):
        ga = g * b * a ** (b - 1) if isinstance(x1, Tensor) and x1.needs_grad else None
        gb = None
        if isinstance(x2, Tensor) and x2.needs_grad:
            positive = a > 0
            gb = g * out * xp.log(xp.where(positive, a, 1))
        return ga, gb
    return _op(out, (x1, x2), vjp)


def maximum(x1, x2):
    xp = _xp(x1, x2)
    a, b = _data(x1), _data(x2)
    first = a >= b  # ties send the gradient to x1
    return _op(xp.maximum(a, b), (x1, x2), lambda g: (g * first, g * ~first))


def minimum(x1, x2):
    xp = _xp(x1, x2)
    a, b = _data(x1), _data(x2)
    first = a <= b
    return _op(xp.minimum(a, b), (x1, x2), lambda g: (g * first, g * ~first))


def where(condition, x1=None, x2=None):
    xp = _xp(condition, x1, x2)
    c = _data(condition)
    if x1 is None and x2 is None:
        return xp.nonzero(c)
    out = xp.where(c, _data(x1), _data(x2))
    return _op(out, (condition, x1, x2),
               lambda g: (None, xp.where(c, g, 0), xp.where(c, 0, g)))


def matmul(x1, x2):
    a, b = _data(x1), _data(x2)
    if a.ndim == 1 or b.ndim == 1:  # vector cases through the matrix rule
        x1m = expand_dims(x1, 0) if a.ndim == 1 else x1
        x2m = expand_dims(x2, -1) if b.ndim == 1 else x2
        out = matmul(x1m, x2m)
        if b.ndim == 1:
            out = squeeze(out, -1)
        if a.ndim == 1:
            out = squeeze(out, -2 if out.ndim > 1 else 0)
        return out
    xp = _xp(x1, x2)
    return _op(xp.matmul(a, b), (x1, x2),
               lambda g: (xp.matmul(g, xp.swapaxes(b, -1, -2)), xp.matmul(xp.swapaxes(a, -1, -2), g)))


dot = matmul


# -- element-wise, one argument ------------------------------------------------------------
def negative(x):
    return _op(-_data(x), (x,), lambda g: (-g,))


def square(x):
    a = _data(x)
    return _op(a * a, (x,), lambda g: (2 * g * a,))


def sqrt(x):
    out = _xp(x).sqrt(_data(x))
    return _op(out, (x,), lambda g: (g / (2 * out),))


def abs(x):
    xp = _xp(x)
    a = _data(x)
    return _op(xp.abs(a), (x,), lambda g: (g * xp.sign(a),))


absolute = abs


def exp(x):
    out = _xp(x).exp(_data(x))
    return _op(out, (x,), lambda g: (g * out,))


def log(x):
    a = _data(x)
    return _op(_xp(x).log(a), (x,), lambda g: (g / a,))


def log1p(x):
    a = _data(x)
    return _op(_xp(x).log1p(a), (x,), lambda g: (g / (1 + a),))


def expm1(x):
    out = _xp(x).expm1(_data(x))
    return _op(out, (x,), lambda g: (g * (out + 1),))


def tanh(x):
    out = _xp(x).tanh(_data(x))
    return _op(out, (x,), lambda g: (g * (1 - out * out),))


def sigmoid(x):
    out = 0.5 * (1 + _xp(x).tanh(0.5 * _data(x)))  # stable for large |x|
    return _op(out, (x,), lambda g: (g * out * (1 - out),))


def softplus(x):
    """log(1 + exp(x)), stable for large |x|."""
    xp = _xp(x)
    a = _data(x)
    out = xp.maximum(a, 0) + xp.log1p(xp.exp(-xp.abs(a)))
    return _op(out, (x,), lambda g: (g * 0.5 * (1 + xp.tanh(0.5 * a)),))


def log_sigmoid(x):
    return negative(softplus(negative(x)))


def relu(x):
    a = _data(x)
    return _op(_xp(x).maximum(a, 0), (x,), lambda g: (g * (a > 0),))


def clip(x, x_min, x_max):
    """Values clipped to [x_min, x_max]; the gradient is zero where clipping acted."""
    xp = _xp(x)
    a, lo, hi = _data(x), _data(x_min), _data(x_max)
    inside = (a >= lo) & (a <= hi)
    return _op(xp.clip(a, lo, hi), (x,), lambda g: (g * inside,))


def sign(x):
    return _constant(_xp(x).sign(_data(x)), (x,))


def floor(x):
    return _constant(_xp(x).floor(_data(x)), (x,))


def round(x, decimals=0):
    return _constant(_xp(x).round(_data(x), decimals), (x,))


# -- comparisons and logic (no gradient) ----------------------------------------------------
def _comparison(name):
    def compare(x1, x2):
        return _constant(getattr(_xp(x1, x2), name)(_data(x1), _data(x2)), (x1, x2))
    compare.__name__ = name
    return compare


equal, not_equal = _comparison("equal"), _comparison("not_equal")
greater, greater_equal = _comparison("greater"), _comparison("greater_equal")
less, less_equal = _comparison("less"), _comparison("less_equal")
logical_and, logical_or = _comparison("logical_and"), _comparison("logical_or")


def logical_not(x):
    return _constant(_xp(x).logical_not(_data(x)), (x,))


def all(x, axis=None, keepdims=False):
    return _constant(_xp(x).all(_data(x), axis=axis, keepdims=keepdims), (x,))


def any(x, axis=None, keepdims=False):
    return _constant(_xp(x).any(_data(x), axis=axis, keepdims=keepdims), (x,))


def argmax(x, axis=None, keepdims=False):
    return _constant(_xp(x).argmax(_data(x), axis=axis, keepdims=keepdims), (x,))


def argmin(x, axis=None, keepdims=False):
    return _constant(_xp(x).argmin(_data(x), axis=axis, keepdims=keepdims), (x,))


def one_hot(x, num_classes, axis=-1, dtype=None):
    """Integer labels -> one-hot along `axis` (labels outside [0, num_classes) give zeros)."""
    xp = _xp(x)
    labels = _data(x)
    out = (labels[..., None] == xp.arange(num_classes)).astype(dtype or get_backend().float_dtype)
    if axis != -1:
        out = xp.moveaxis(out, -1, axis)
    return _constant(out, (x,))


# -- reductions -------------------------------------------------------------------------
def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % ndim for a in axis)


def _keep(g, axis, ndim):
    """Reinsert reduced axes into g so it broadcasts against the input."""
    for a in sorted(_axes(axis, ndim)):
        g = _xp(g).expand_dims(g, a)
    return g


def sum(x, axis=None, keepdims=False):
    xp = _xp(x)
    a = _data(x)
    out = xp.sum(a, axis=axis, keepdims=keepdims)
    return _op(out, (x,), lambda g: (xp.broadcast_to(g if keepdims else _keep(g, axis, a.ndim), a.shape),))


def mean(x, axis=None, keepdims=False):
    a = _data(x)
    count = 1
    for ax in _axes(axis, a.ndim):
        count *= a.shape[ax]
    return divide(sum(x, axis=axis, keepdims=keepdims), count)


def _extreme(x, axis, keepdims, fn):
    xp = _xp(x)
    a = _data(x)
    out = getattr(xp, fn)(a, axis=axis, keepdims=True)
    hit = (a == out).astype(a.dtype)
    share = hit / hit.sum(axis=axis, keepdims=True)  # ties share the gradient equally
    value = out if keepdims else xp.squeeze(out, axis=_axes(axis, a.ndim))
    return _op(value, (x,), lambda g: ((g if keepdims else _keep(g, axis, a.ndim)) * share,))


def max(x, axis=None, keepdims=False):
    return _extreme(x, axis, keepdims, "max")


def min(x, axis=None, keepdims=False):
    return _extreme(x, axis, keepdims, "min")


def var(x, axis=None, keepdims=False):
    centered = subtract(x, mean(x, axis=axis, keepdims=True))
    return mean(square(centered), axis=axis, keepdims=keepdims)


def std(x, axis=None, keepdims=False):
    return sqrt(var(x, axis=axis, keepdims=keepdims))


def logsumexp(x, axis=None, keepdims=False):
    xp = _xp(x)
    a = _data(x)
    m = xp.max(a, axis=axis, keepdims=True)
    e = xp.exp(a - m)
    s = e.sum(axis=axis, keepdims=True)
    out = m + xp.log(s)
    value = out if keepdims else xp.squeeze(out, axis=_axes(axis, a.ndim))
    return _op(value, (x,), lambda g: ((g if keepdims else _keep(g, axis, a.ndim)) * (e / s),))


def log_softmax(x, axis=-1):
    return subtract(x, logsumexp(x, axis=axis, keepdims=True))


def softmax(x, axis=-1):
    return exp(log_softmax(x, axis=axis))


# -- shapes -------------------------------------------------------------------------------
def shape(x):
    return tuple(_data(x).shape)


def reshape(x, newshape):
    a = _data(x)
    return _op(a.reshape(newshape), (x,), lambda g: (g.reshape(a.shape),))


def expand_dims(x, axis):
    a = _data(x)
    return _op(_xp(x).expand_dims(a, axis), (x,), lambda g: (g.reshape(a.shape),))


def squeeze(x, axis=None):
    a = _data(x)
    return _op(_xp(x).squeeze(a, axis=axis), (x,), lambda g: (g.reshape(a.shape),))


def transpose(x, axes=None):
    xp = _xp(x)
    a = _data(x)
    inverse = None if axes is None else tuple(numpy.argsort(axes))
    return _op(xp.transpose(a, axes), (x,), lambda g: (xp.transpose(g, inverse),))


def concatenate(xs, axis=0):
    xp = _xp(*xs)
    arrays = [_data(x) for x in xs]
    cuts = numpy.cumsum([a.shape[axis] for a in arrays])[:-1].tolist()
    return _op(xp.concatenate(arrays, axis=axis), tuple(xs),
               lambda g: tuple(xp.split(g, cuts, axis=axis)))


def stack(xs, axis=0):
    return concatenate([expand_dims(x, axis) for x in xs], axis=axis)


def ones_like(x, dtype=None):
    return _constant(_xp(x).ones_like(_data(x), dtype=dtype), (x,))


def zeros_like(x, dtype=None):
    return _constant(_xp(x).zeros_like(_data(x), dtype=dtype), (x,))


def _getitem(x, key):
    xp = _xp(x)
    a = _data(x)
    key = tuple(_data(k) for k in key) if isinstance(key, tuple) else _data(key)

    basic = builtins.all(k is None or k is Ellipsis or isinstance(k, (int, slice))
                         for k in (key if isinstance(key, tuple) else (key,)))

    def vjp(g):
        full = xp.zeros_like(a)
        if basic:  # slices and integers pick each element at most once
            full[key] = g
        else:
            xp.add.at(full, key, g)  # advanced indices may repeat: accumulate
        return (full,)
    return _op(a[key], (x,), vjp)


# NumPy ufuncs and functions a Tensor accepts (they run the ops above, on the tape).
_UFUNCS = {"add": add, "subtract": subtract, "multiply": multiply, "divide": divide,
           "true_divide": divide, "power": power, "negative": negative, "square": square,
           "sqrt": sqrt, "absolute": abs, "exp": exp, "log": log, "log1p": log1p, "expm1": expm1,
           "tanh": tanh, "maximum": maximum, "minimum": minimum, "matmul": matmul,
           "equal": equal, "not_equal": not_equal, "greater": greater,
           "greater_equal": greater_equal, "less": less, "less_equal": less_equal,
           "logical_and": logical_and, "logical_or": logical_or, "logical_not": logical_not,
           "sign": sign, "floor": floor}
_NUMPY_FUNCTIONS = {"sum", "mean", "max", "min", "clip", "where", "reshape", "expand_dims",
                    "squeeze", "transpose", "concatenate", "stack", "var", "std", "argmax",
                    "argmin", "all", "any", "ones_like", "zeros_like", "shape", "round"}

amax, amin = max, min  # NumPy's names

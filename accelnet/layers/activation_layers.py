"""Activation layers with arguments: Softmax(axis) and LeakyReLU(negative_slope)."""
import numbers
import warnings

from .. import activations
from ..backend import get_array_module
from ..errors import InvalidArgumentError
from .base import Layer
from .core import ActivationMixin


def _axes(layer, axis):
    """An int or a list of ints -> a tuple of ints (Keras's Softmax axis argument)."""
    items = axis if isinstance(axis, (list, tuple)) else [axis]
    if not items or not all(isinstance(a, numbers.Integral) and not isinstance(a, bool)
                            for a in items):
        raise InvalidArgumentError(f"Layer {layer}: axis must be an int or a list of ints, got {axis!r}.")
    return tuple(int(a) for a in items)


class Softmax(ActivationMixin, Layer):
    """exp(x − max) / sum(exp(x − max)) over `axis` (default the last; a list of axes
    normalizes over all of them). On the last axis it is the `softmax` activation, so a model
    ending in Softmax() with a cross-entropy loss uses the fused softmax-CE kernel."""

    def __init__(self, axis=-1, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.axis = _axes(f"Softmax {self.name!r}", axis)
        # Only the last-axis form is the fusable activation; other axes run _softmax.
        self.activation = activations.get("softmax") if self.axis == (-1,) else None

    def _check_axes(self, ndim):
        for a in self.axis:
            if not -ndim <= a < ndim:
                raise InvalidArgumentError(
                    f"Layer Softmax {self.name!r}: axis {a} is out of range for input of rank {ndim}.")

    def forward(self, x, training=True, logits=False):
        self.ensure_built(x)
        self._check_axes(x.ndim)
        if self.activation is not None:
            return self.activate(x.copy(), logits)
        xp = get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self._out = e / e.sum(axis=self.axis, keepdims=True)
        return self._out

    def backward(self, grad):
        if self.activation is not None:
            return self.activation_grad(grad)
        y = self._out
        return y * (grad - (grad * y).sum(axis=self.axis, keepdims=True))

    def get_config(self):
        config = super().get_config()
        config["axis"] = self.axis[0] if len(self.axis) == 1 else list(self.axis)
        return config


class LeakyReLU(Layer):
    """f(x) = x for x > 0, negative_slope·x otherwise (Keras 3 default 0.3; Keras 2's
    `alpha` is accepted with a deprecation warning, as Keras 3 does)."""

    def __init__(self, negative_slope=0.3, name=None, input_shape=None, alpha=None):
        super().__init__(name=name, input_shape=input_shape)
        if alpha is not None:
            warnings.warn("Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2)
            negative_slope = alpha
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, numbers.Real) \
                or not negative_slope >= 0:
            raise InvalidArgumentError(
                f"Layer LeakyReLU {self.name!r}: negative_slope must be a float >= 0, got "
                f"{negative_slope!r}.")
        self.negative_slope = float(negative_slope)

    def forward(self, x, training=True):
        self.ensure_built(x)
        xp = get_array_module(x)
        self._positive = x > 0
        return xp.where(self._positive, x, x * x.dtype.type(self.negative_slope))

    def backward(self, grad):
        xp = get_array_module(grad)
        return xp.where(self._positive, grad, grad * grad.dtype.type(self.negative_slope))

    def get_config(self):
        config = super().get_config()
        config["negative_slope"] = self.negative_slope
        return config

"""Rescaling: y = x·scale + offset, in training and inference (Keras's preprocessing layer)."""
import numbers

from ..backend import get_array_module, get_backend
from ..errors import InvalidArgumentError, ShapeError
from .base import Layer


def _number_or_list(layer, name, value):
    """A float, or a list of floats (one per channel, broadcast on the last axis)."""
    items = value if isinstance(value, (list, tuple)) else None
    ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (items or [value]))
    if not ok or (items is not None and not items):
        raise InvalidArgumentError(
            f"Layer Rescaling {layer!r}: {name} must be a number or a list of numbers (one per "
            f"channel), got {value!r}.")
    return [float(v) for v in items] if items is not None else float(value)


class Rescaling(Layer):
    """Multiply by `scale` and add `offset` (e.g. scale=1/255 maps [0, 255] to [0, 1])."""

    def __init__(self, scale, offset=0.0, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.scale = _number_or_list(self.name, "scale", scale)
        self.offset = _number_or_list(self.name, "offset", offset)

    def build(self, input_shape):
        for name, value in (("scale", self.scale), ("offset", self.offset)):
            if isinstance(value, list) and len(value) not in (1, int(input_shape[-1])):
                raise ShapeError(
                    f"Layer Rescaling {self.name!r}: {name} has {len(value)} values but the input "
                    f"has {input_shape[-1]} channels (shape {(None,) + tuple(input_shape)}).")
        super().build(input_shape)

    @staticmethod
    def _constant(value, like):
        if isinstance(value, float):
            return like.dtype.type(value)
        return get_array_module(like).asarray(value, dtype=like.dtype)

    def forward(self, x, training=True):
        self.ensure_built(x)
        if x.dtype.kind != "f":  # integer images (uint8): compute in the float dtype, as Keras
            x = x.astype(get_backend().float_dtype)
        return x * self._constant(self.scale, x) + self._constant(self.offset, x)

    def backward(self, grad):
        return grad * self._constant(self.scale, grad)

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, offset=self.offset)
        return config

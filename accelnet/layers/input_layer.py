"""InputLayer: Keras 3's explicit input declaration, usable as the first layer of a Sequential."""
import numbers
import warnings

from ..errors import InvalidArgumentError, ShapeError
from .base import Layer


def _shape(layer, name, value):
    """A tuple of positive ints or None (an unknown dimension, e.g. a sequence length)."""
    try:
        dims = tuple(value)
    except TypeError:
        dims = None
    if dims is None or not all(d is None or (isinstance(d, numbers.Integral) and not isinstance(d, bool)
                                             and d > 0) for d in dims):
        raise InvalidArgumentError(
            f"Layer InputLayer {layer!r}: {name} must be a tuple of positive ints (or None), "
            f"got {value!r}.")
    return tuple(None if d is None else int(d) for d in dims)


class InputLayer(Layer):
    """Declares the per-sample input shape (`shape`, or `batch_shape` with the batch axis)
    and passes data through unchanged. Dimensions given as None are taken from the data
    the first time the model sees it; the known ones are checked."""

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, ragged=None,
                 batch_shape=None, input_tensor=None, optional=False, name=None, input_shape=None):
        super().__init__(name=name)
        for arg, value in (("sparse", sparse), ("ragged", ragged), ("input_tensor", input_tensor),
                           ("optional", optional)):
            if value:
                raise InvalidArgumentError(f"Layer InputLayer {self.name!r}: {arg}= is not "
                                           f"supported by accelnet, got {value!r}.")
        if input_shape is not None:  # Keras 2's name, still accepted by Keras 3
            warnings.warn("Argument `input_shape` is deprecated. Use `shape` instead.", stacklevel=2)
            shape = input_shape if shape is None else shape
        if shape is not None and batch_shape is not None:
            raise InvalidArgumentError(f"Layer InputLayer {self.name!r}: you cannot pass both "
                                       f"`shape` and `batch_shape` at the same time.")
        if shape is None and batch_shape is None:
            raise InvalidArgumentError(f"Layer InputLayer {self.name!r}: you must pass a `shape` "
                                       f"argument.")
        if batch_shape is not None:
            batch_shape = _shape(self.name, "batch_shape", batch_shape)
            if not batch_shape:
                raise InvalidArgumentError(f"Layer InputLayer {self.name!r}: batch_shape needs a "
                                           f"batch axis, got {batch_shape!r}.")
            batch_size, shape = batch_shape[0], batch_shape[1:]
        self.shape = _shape(self.name, "shape", shape)
        self.batch_size = batch_size
        self.dtype = dtype
        if None not in self.shape:
            self.input_shape = self.shape

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != len(self.shape) or any(
                d is not None and d != int(s) for d, s in zip(self.shape, input_shape)):
            declared = ", ".join("None" if d is None else str(d) for d in self.shape)
            raise ShapeError(
                f"Input of layer {self.name!r} is incompatible with the layer: expected shape "
                f"(None, {declared}), but received input with shape {(None,) + input_shape}.")
        super().build(input_shape)

    def forward(self, x, training=True):
        self.ensure_built(x)
        return x

    def backward(self, grad):
        return grad

    def get_config(self):
        return {"name": self.name, "batch_shape": [self.batch_size, *self.shape],
                "dtype": self.dtype}

"""Merge layers of the functional API: called on a list of tensors, return one."""
from ..backend import get_array_module
from ..errors import InvalidArgumentError, ShapeError
from .base import Layer


class _Merge(Layer):
    """Base: `build` takes a list of shapes, `forward` a list of arrays, `backward`
    returns a list of gradients (one per input)."""

    def build(self, input_shape):
        shapes = [tuple(int(d) for d in s) for s in self._shape_list(input_shape)]
        self._check_shapes(shapes)
        self.input_shape = shapes
        self.built = True

    def _shape_list(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or not input_shape or \
                not all(isinstance(s, (list, tuple)) for s in input_shape):
            raise InvalidArgumentError(f"Layer {self.name!r} must be called on a list of at least "
                                       f"2 tensors, got input shape {input_shape!r}.")
        if len(input_shape) < 2:
            raise InvalidArgumentError(f"Layer {self.name!r} must be called on a list of at least "
                                       f"2 tensors, got {len(input_shape)}.")
        return input_shape

    def _check_inputs(self, xs):
        if not isinstance(xs, (list, tuple)):
            raise InvalidArgumentError(f"Layer {self.name!r} must be called on a list of arrays.")
        shapes = [tuple(x.shape[1:]) for x in xs]
        if not self.built:
            self.build(shapes)
        elif shapes != list(self.input_shape):
            raise ShapeError(f"Layer {self.name!r} was built for input shapes {self.input_shape} "
                             f"but receives {shapes}.")

    def get_config(self):
        return {"name": self.name}


class Add(_Merge):
    """Element-wise sum of inputs of one shape."""

    def _check_shapes(self, shapes):
        if any(s != shapes[0] for s in shapes):
            raise ShapeError(f"Layer {self.name!r} (Add) needs inputs of one shape, got "
                             f"{[(None,) + s for s in shapes]}.")

    def compute_output_shape(self, input_shape):
        return tuple(self._shape_list(input_shape)[0])

    def forward(self, xs, training=True):
        self._check_inputs(xs)
        out = xs[0] + xs[1]
        for x in xs[2:]:
            out += x
        self._n = len(xs)
        return out

    def backward(self, grad):
        return [grad] * self._n


class Concatenate(_Merge):
    """Concatenation along `axis` (default -1, the feature axis; the batch axis is 0)."""

    def __init__(self, axis=-1, name=None):
        super().__init__(name=name)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise InvalidArgumentError(f"Concatenate {self.name!r}: axis must be a non-batch axis "
                                       f"(an int other than 0), got {axis!r}.")
        self.axis = axis

    def _feature_axis(self, rank):
        axis = self.axis if self.axis < 0 else self.axis - 1  # in shapes without the batch axis
        if not -rank <= axis < rank:
            raise ShapeError(f"Concatenate {self.name!r}: axis {self.axis} is out of range for "
                             f"inputs of rank {rank + 1}.")
        return axis % rank

    def _check_shapes(self, shapes):
        rank = len(shapes[0])
        axis = self._feature_axis(rank)
        for s in shapes:
            if len(s) != rank or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
                raise ShapeError(f"Concatenate {self.name!r}: inputs must match on every axis but "
                                 f"the concatenation axis {self.axis}, got "
                                 f"{[(None,) + s for s in shapes]}.")

    def compute_output_shape(self, input_shape):
        shapes = [tuple(s) for s in self._shape_list(input_shape)]
        axis = self._feature_axis(len(shapes[0]))
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return tuple(out)

    def forward(self, xs, training=True):
        self._check_inputs(xs)
        xp = get_array_module(*xs)
        axis = self._feature_axis(xs[0].ndim - 1) + 1
        self._sizes = [x.shape[axis] for x in xs]
        return xp.concatenate(list(xs), axis=axis)

    def backward(self, grad):
        xp = get_array_module(grad)
        axis = self._feature_axis(grad.ndim - 1) + 1
        bounds = [0]
        for size in self._sizes:
            bounds.append(bounds[-1] + size)
        index = [slice(None)] * grad.ndim
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            index[axis] = slice(lo, hi)
            parts.append(xp.ascontiguousarray(grad[tuple(index)]))
        return parts

    def get_config(self):
        return {"name": self.name, "axis": self.axis}

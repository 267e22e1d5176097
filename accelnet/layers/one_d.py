"""1-D layers as their 2-D counterparts on a height-1 image: (N, L, C) <-> (N, 1, L, C)."""
from ..errors import ShapeError
from .base import Layer


def check_steps_input(layer, kind, input_shape):
    """Raise ShapeError unless input_shape is (steps, channels)."""
    if len(input_shape) != 2:
        raise ShapeError(
            f"Layer {kind} {layer.name!r} expects input of shape (batch, steps, channels), but "
            f"received input with shape {(None,) + tuple(input_shape)}.")


class Through2D(Layer):
    """Runs `self.inner` (a 2-D layer over windows (1, k)) on x[:, None] and drops the
    height axis again; the inner layer carries the layer's name so its errors name it."""

    inner = None

    def build(self, input_shape):
        check_steps_input(self, type(self).__name__, input_shape)
        self.inner.build((1,) + tuple(input_shape))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        check_steps_input(self, type(self).__name__, input_shape)
        return self.inner.compute_output_shape((1,) + tuple(input_shape))[1:]

    def forward(self, x, training=True):
        self.ensure_built(x)
        return self.inner.forward(x[:, None], training=training)[:, 0]

    def backward(self, grad):
        self.inner.needs_input_grad = self.needs_input_grad
        dx = self.inner.backward(grad[:, None])
        return None if dx is None else dx[:, 0]

"""Embedding: integer indices -> rows of a trainable (input_dim, output_dim) matrix."""
import warnings

from ..backend import get_array_module
from ..errors import InvalidArgumentError
from .base import Layer, positive_int
from .base import serial as _serial


class Embedding(Layer):
    """out[..., :] = embeddings[index] for (N, ...) integer (or integral float) input.

    Indices outside [0, input_dim) raise InvalidArgumentError (one 0-d flag is read back
    per forward call for that). The backward pass adds each position's gradient into its
    row, summed in float64 (rows not seen in the batch get zero). `mask_zero=True` makes
    `compute_mask(x)` return x != 0; models do not propagate masks yet (see the README)."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 input_length=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        who = f"Embedding {self.name!r}"
        if embeddings_constraint is not None:
            raise InvalidArgumentError(f"Layer {who}: embeddings_constraint is not supported by "
                                       f"accelnet, got {embeddings_constraint!r}.")
        self.input_dim = positive_int(who, "input_dim", input_dim)
        self.output_dim = positive_int(who, "output_dim", output_dim)
        self.embeddings_initializer = embeddings_initializer
        self.embeddings_regularizer = embeddings_regularizer
        self.mask_zero = bool(mask_zero)
        if input_length is not None:  # Keras 2: the sequence length, still accepted by Keras 3
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
        if self.mask_zero:
            warnings.warn(f"Embedding {self.name!r}: mask_zero=True gives a mask through "
                          f"compute_mask(x), but accelnet models do not pass masks to the next "
                          f"layers yet; padded steps count in pooling and softmax.", stacklevel=2)

    def weight_shapes(self, input_shape):
        return {"embeddings": (self.input_dim, self.output_dim)}

    def build(self, input_shape):
        super().build(input_shape)
        self.add_param("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
                       self.embeddings_regularizer)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _indices(self, x):
        xp = get_array_module(x)
        idx = x.astype(xp.int32) if x.dtype.kind != "i" else x  # Keras casts floats to int32
        bad = xp.logical_or(idx < 0, idx >= self.input_dim)
        if bool(bad.any()):  # the one host read per call
            first = xp.argmax(bad.reshape(-1))
            value = int(x.reshape(-1)[first])
            raise InvalidArgumentError(
                f"Layer Embedding {self.name!r}: index {value} (at flat position {int(first)} of "
                f"its batch) is out of range; indices must be in [0, {self.input_dim - 1}] "
                f"(input_dim={self.input_dim}).")
        return idx

    def compute_mask(self, x):
        """x != 0 when mask_zero=True (Keras's padding mask), else None."""
        return (x != 0) if self.mask_zero else None

    def forward(self, x, training=True):
        self.ensure_built(x)
        self._idx, self._x_shape = self._indices(x), x.shape
        return self.params["embeddings"][self._idx]

    def backward(self, grad):
        xp = get_array_module(grad)
        d = self.output_dim
        # Repeated indices add up: one bincount over (row, column) cells, summed in float64
        # (portable across NumPy and CuPy, unlike ufunc.at).
        cells = self._idx.reshape(-1, 1).astype(xp.int64) * d + xp.arange(d, dtype=xp.int64)
        sums = xp.bincount(cells.reshape(-1), weights=grad.reshape(-1), minlength=self.input_dim * d)
        self.grads["embeddings"][...] = sums.reshape(self.input_dim, d)
        self.add_regularization_grads()
        self._idx = None
        # Indices are piecewise constant: zero gradient, when an earlier layer asks for one.
        return xp.zeros(self._x_shape, dtype=grad.dtype) if self.needs_input_grad else None

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, output_dim=self.output_dim,
                      embeddings_initializer=_serial(self.embeddings_initializer),
                      embeddings_regularizer=_serial(self.embeddings_regularizer),
                      mask_zero=self.mask_zero)
        return config

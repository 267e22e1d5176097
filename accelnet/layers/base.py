"""The Layer contract, shared by the model and by hand-written training loops.

A layer is built for an input shape (without the batch axis), then
`forward(x, training)` computes and remembers what `backward(grad)` needs;
`backward` fills `grads` (same keys as `params`, arrays written in place so an
optimizer may keep references) and returns the gradient with respect to the input.
Non-trainable arrays (BatchNormalization's running statistics) live in `state`.
"""
import collections
import re

from .. import initializers, regularizers
from ..backend import get_backend
from ..errors import InvalidArgumentError, ShapeError

_name_counts = collections.Counter()


def unique_name(base):
    """'dense', 'dense_1', 'dense_2', ... as Keras names layers."""
    n = _name_counts[base]
    _name_counts[base] += 1
    return base if n == 0 else f"{base}_{n}"


def snake_case(name):
    """Keras's rule: 'Conv1D' -> 'conv1d', 'LeakyReLU' -> 'leaky_re_lu'."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


class Layer:
    """Base layer: subclasses implement build/forward/backward/compute_output_shape."""

    def __init__(self, name=None, input_shape=None, trainable=True):
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.trainable = trainable
        self.built = False
        self.params = {}
        self.grads = {}
        self.state = {}
        self.regularizers = {}
        # The model clears this on the first layer: its input gradient is never used.
        self.needs_input_grad = True

    # -- building -------------------------------------------------------------
    def build(self, input_shape):
        """Create parameters for inputs of shape `input_shape` (no batch axis)."""
        self.input_shape = tuple(int(d) for d in input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def weight_shapes(self, input_shape):
        """{name: shape} of the weights `build(input_shape)` would allocate (none here)."""
        return {}

    @property
    def output_shape(self):
        return self.compute_output_shape(self.input_shape)

    def add_param(self, key, shape, initializer, regularizer=None):
        """Draw a parameter on the host (same values on every backend), move it to the
        active backend, and allocate its gradient buffer."""
        backend = get_backend()
        value = initializers.get(initializer)(tuple(shape), dtype=backend.float_dtype)
        self.params[key] = backend.asarray(value)
        self.grads[key] = backend.xp.zeros_like(self.params[key])
        reg = regularizers.get(regularizer)
        if reg is not None:
            self.regularizers[key] = reg
        return self.params[key]

    def ensure_built(self, x):
        if not self.built:
            self.build(x.shape[1:])
        elif tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(
                f"Input of layer {self.name!r} is incompatible with the layer: expected "
                f"shape (None, {', '.join(map(str, self.input_shape))}), but received input "
                f"with shape {(None,) + tuple(x.shape[1:])}.")

    # -- computing ------------------------------------------------------------
    def __call__(self, x, training=False):
        return self.forward(x, training=training)

    def forward(self, x, training=True):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def add_regularization_grads(self):
        for key, reg in self.regularizers.items():
            self.grads[key] += reg.gradient(self.params[key])

    def regularization_penalty(self):
        """Sum of this layer's penalties as a 0-d array (None when it has none)."""
        total = None
        for key, reg in self.regularizers.items():
            p = reg.penalty(self.params[key])
            total = p if total is None else total + p
        return total

    # -- weights and config ---------------------------------------------------
    @property
    def weights(self):
        """Trainable then non-trainable arrays, in Keras's get_weights order."""
        return list(self.params.values()) + list(self.state.values())

    @property
    def weight_names(self):
        return list(self.params) + list(self.state)

    def count_params(self):
        return int(sum(w.size for w in self.weights))

    def get_config(self):
        config = {"name": self.name}
        if self.input_shape is not None:
            config["input_shape"] = list(self.input_shape)
        return config

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r}>"


class KernelBiasMixin:
    """The `kernel` (+ optional `bias`) weights of Dense and Conv2D: their constructor
    arguments (Keras's names) and their creation in `build`."""

    def _set_weight_args(self, use_bias, kernel_initializer, bias_initializer,
                         kernel_regularizer, bias_regularizer):
        self.use_bias = use_bias
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self.kernel_regularizer = kernel_regularizer
        self.bias_regularizer = bias_regularizer

    def _add_kernel_and_bias(self):
        shapes = self.weight_shapes(self.input_shape)
        self.add_param("kernel", shapes["kernel"], self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_param("bias", shapes["bias"], self.bias_initializer, self.bias_regularizer)


def check_rate(layer, name, value, low=0.0, high=1.0):
    """Raise InvalidArgumentError unless low <= value < high."""
    if not (low <= float(value) < high):
        raise InvalidArgumentError(
            f"Layer {layer}: {name} must be in [{low}, {high}), got {value!r}.")
    return float(value)


def positive_int(layer, name, value):
    """Raise InvalidArgumentError unless value is a positive integer (not a str or bool)."""
    import numbers
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise InvalidArgumentError(f"Layer {layer}: {name} must be a positive integer, got {value!r}.")
    return int(value)


def as_pair(value, what):
    """An int or a 2-tuple of ints -> a 2-tuple (Keras's kernel_size/strides convention)."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
        raise InvalidArgumentError(f"{what} must be a positive int or a pair of ints, got {value!r}.")
    return value

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

    uses_worker_threads = False  # True: runs kernels on accelnet's worker threads (the CPU)

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
        self.params[key] = backend.parameter(value)
        self.grads[key] = backend.parameter(backend.xp.zeros_like(self.params[key]))
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
    def __call__(self, inputs, training=None):
        """On arrays: the forward pass (inference unless `training`). On symbolic tensors
        (`Input(...)` or another layer's symbolic output, or a list of them): record the
        call in a functional graph; a `training` given here fixes the mode of that call, as
        Keras's `base_model(x, training=False)`."""
        from ..graph import call_symbolic, is_symbolic
        if is_symbolic(inputs):
            return call_symbolic(self, inputs, training)
        return self.forward(inputs, training=bool(training))

    def forward(self, x, training=True):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def fuses_with(self, layer, x):
        """Whether a model's training step may run `layer`, which alone consumes this
        layer's output, inside this layer's `forward_fused(x, layer)` /
        `backward_fused(grad)` (see accelnet.fusion). Most layers never do."""
        return False

    def chains_forward(self, layer, x):
        """Whether a model's training step may run `layer`'s forward, which alone consumes
        this layer's output, inside this layer's `forward_chained(x, layer, pool)`, slice by
        slice (see accelnet.fusion). Most layers never do."""
        return False

    def chains_backward(self, layer):
        """Whether a model's training step may run `layer`'s backward, which produced this
        layer's only input and needs no input gradient, inside this layer's
        `backward_chained(grad, layer)`, slice by slice (see accelnet.fusion). Most layers
        never do."""
        return False

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

    @property
    def trainable_params(self):
        """{key: array} the optimizer updates: `params`, or nothing when frozen."""
        return self.params if self.trainable else {}

    @property
    def trainable_grads(self):
        return self.grads if self.trainable else {}

    @property
    def trainable_weights(self):
        return list(self.trainable_params.values())

    @property
    def non_trainable_weights(self):
        return ([] if self.trainable else list(self.params.values())) + list(self.state.values())

    def get_weights(self):
        """This layer's weights as host NumPy arrays (Keras's order)."""
        from ..backend import to_numpy
        return [to_numpy(w).copy() for w in self.weights]

    def set_weights(self, weights):
        """Copy host arrays into this layer's weights, checking count and shapes first."""
        import numpy
        weights = list(weights)
        names, current = self.weight_names, self.weights
        if len(weights) != len(current):
            raise ShapeError(f"Layer {self.name!r} has {len(current)} weight arrays, but "
                             f"{len(weights)} were given.")
        for name, arr, w in zip(names, current, weights):
            if tuple(numpy.shape(w)) != tuple(arr.shape):
                raise ShapeError(f"Weight {name!r} of layer {self.name!r} has shape "
                                 f"{tuple(arr.shape)}, but the value given has shape "
                                 f"{tuple(numpy.shape(w))}.")
        backend = get_backend()
        for arr, w in zip(current, weights):
            arr[...] = backend.asarray(numpy.asarray(w, dtype=arr.dtype))

    def regularization_grads(self):
        """{key: gradient of the penalty} (what backward adds to `grads`)."""
        return {key: reg.gradient(self.params[key]) for key, reg in self.regularizers.items()}

    # -- shared layers: one layer called at several places of a graph ----------
    def snapshot(self):
        """What backward needs from the last forward (the layer's attributes)."""
        return dict(self.__dict__)

    def restore(self, snapshot):
        self.__dict__.update(snapshot)

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

    def _weight_config(self):
        """The config entries of the activation and the kernel/bias arguments."""
        return dict(activation=self.activation.name, use_bias=self.use_bias,
                    kernel_initializer=serial(self.kernel_initializer),
                    bias_initializer=serial(self.bias_initializer),
                    kernel_regularizer=serial(self.kernel_regularizer),
                    bias_regularizer=serial(self.bias_regularizer))

    def _add_kernel_and_bias(self):
        shapes = self.weight_shapes(self.input_shape)
        self.add_param("kernel", shapes["kernel"], self.kernel_initializer, self.kernel_regularizer)
        if self.use_bias:
            self.add_param("bias", shapes["bias"], self.bias_initializer, self.bias_regularizer)


def serial(obj):
    """Config form of an initializer/regularizer argument (strings and None as they are)."""
    if obj is None or isinstance(obj, (str, int, float)):
        return obj
    return {"class_name": type(obj).__name__, "config": obj.get_config()}


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

"""Core layers: Input, Dense, Activation, Flatten, Dropout."""
import math

from .. import activations, kernels
from ..backend import get_array_module, get_backend
from ..errors import InvalidArgumentError
from .base import KernelBiasMixin, Layer, check_rate, positive_int


class Input(Layer):
    """Declares the input shape (no batch axis); passes data through unchanged.

    Also Keras's `Input(shape=...)` tensor: `Dense(8)(Input(shape=(4,)))` starts a
    functional graph (the instance stands for its symbolic `output`)."""

    def __init__(self, shape=None, name=None, batch_size=None, dtype=None, batch_shape=None):
        if shape is None and batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None:
            raise InvalidArgumentError("Input needs a shape, e.g. Input(shape=(784,)).")
        super().__init__(name=name, input_shape=shape)
        from ..graph import Node, SymbolicTensor
        self.built = True
        node = Node(self, [], False)
        self.output = node.output = SymbolicTensor(self.input_shape, node)

    @property
    def shape(self):
        return (None,) + tuple(self.input_shape)

    def forward(self, x, training=True):
        self.ensure_built(x)
        return x

    def backward(self, grad):
        return grad

    def get_config(self):
        return {"name": self.name, "shape": list(self.input_shape)}


class ActivationMixin:
    """Applies `self.activation` after the layer's affine part; in logits mode (the
    model's fused softmax-cross-entropy) the activation is left to the loss kernel."""

    def activate(self, z, logits):
        self._logits = logits
        self._out = z if logits else self.activation.forward(z)
        return self._out

    def activation_grad(self, grad):
        return grad if self._logits else self.activation.backward(grad, self._out)


class Dense(ActivationMixin, KernelBiasMixin, Layer):
    """y = activation(x @ kernel + bias) on the last axis.

    `folds_sgd_update`: when a training step sets `_update_rate` (the model's plain-SGD
    rate, `Model._fold_rate`), `backward` updates kernel and bias itself, the kernel inside
    the weight gradient's GEMM, and leaves `grads['kernel']` unwritten."""

    folds_sgd_update = True
    _update_rate = None

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 input_shape=None, input_dim=None, name=None):
        if input_shape is None and input_dim is not None:
            input_shape = (input_dim,)
        super().__init__(name=name, input_shape=input_shape)
        self.units = positive_int(f"Dense {self.name!r}", "units", units)
        self.activation = activations.get(activation)
        self._set_weight_args(use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                              bias_regularizer)

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (int(input_shape[-1]), self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def build(self, input_shape):
        super().build(input_shape)
        self._add_kernel_and_bias()

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def forward(self, x, training=True, logits=False):
        self.ensure_built(x)
        self._x = x
        x2 = x.reshape(-1, x.shape[-1])
        z = kernels.gemm(x2, self.params["kernel"]).reshape(x.shape[:-1] + (self.units,))
        self._fused = self.use_bias and self.activation.name == "relu" and not logits
        if self._fused:  # bias + ReLU in one pass (z is a fresh C-contiguous array)
            kernels.bias_relu(z.reshape(-1, self.units), self.params["bias"])
            self._logits, self._out = False, z
            return z
        if self.use_bias:
            z += self.params["bias"]
        return self.activate(z, logits)

    def backward(self, grad):
        xp = get_array_module(grad)
        if self._fused:  # ReLU's backward and the bias gradient in one pass
            dz2, bias_grad = kernels.relu_bias_grad(grad.reshape(-1, self.units),
                                                    self._out.reshape(-1, self.units))
            self.grads["bias"][...] = bias_grad
        else:
            dz = self.activation_grad(grad)
            dz2 = dz.reshape(-1, self.units)
            if self.use_bias:
                xp.sum(dz2, axis=0, out=self.grads["bias"])
        x_shape = self._x.shape
        x2 = self._x.reshape(-1, x_shape[-1])
        self._x = None
        dx = None
        if self.needs_input_grad:  # from the kernel as it was before this step's update
            dx = kernels.gemm(dz2, self.params["kernel"].T)
            dx = dx.reshape(x_shape[:-1] + (dx.shape[1],))
        rate = self._update_rate
        if rate is None:
            kernels.gemm(x2.T, dz2, out=self.grads["kernel"])
            self.add_regularization_grads()
        else:  # plain SGD folded into the product: kernel += -rate * x^T dz, one GEMM pass
            kernels.gemm(x2.T, dz2, out=self.params["kernel"], alpha=-rate, beta=1.0)
            if self.use_bias:
                kernels.sgd_update(self.params["bias"], self.grads["bias"], rate)
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, **self._weight_config())
        return config


class Activation(ActivationMixin, Layer):
    """Applies a named activation ('relu', 'sigmoid', 'tanh', 'softmax', 'linear')."""

    def __init__(self, activation, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.activation = activations.get(activation)

    def forward(self, x, training=True, logits=False):
        self.ensure_built(x)
        return self.activate(x.copy(), logits)

    def backward(self, grad):
        return self.activation_grad(grad)

    def get_config(self):
        config = super().get_config()
        config["activation"] = self.activation.name
        return config


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1·d2·...)."""

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=True):
        self.ensure_built(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad):
        return grad.reshape((grad.shape[0],) + self.input_shape)


class Dropout(Layer):
    """Inverted dropout: in training zero each unit with probability `rate` and scale the
    rest by 1/(1-rate); identity in evaluate/predict. Masks come from the backend's
    counter-based `kernels.dropout_mask` (the same on CPU and GPU for a seed). `set_mask`
    fixes one."""

    def __init__(self, rate, seed=None, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.rate = check_rate(f"Dropout {self.name!r}", "rate", rate)
        self.mask = None
        self._fixed_mask = False

    def set_mask(self, mask):
        """Use this (already scaled) mask on every training call: for gradient checks."""
        self.mask, self._fixed_mask = mask, True

    def forward(self, x, training=True):
        self.ensure_built(x)
        if not training or self.rate == 0:
            self._active = False
            return x
        self._active = True
        if self._fixed_mask:
            return x * self.mask
        shape, key = tuple(self.noise_shape(x)), get_backend().dropout_key()
        if shape == x.shape:  # the mask and x * mask in one pass
            self.mask, y = kernels.dropout_mask(x, shape, key, self.rate, x=x)
            return y
        self.mask = kernels.dropout_mask(x, shape, key, self.rate)
        return x * self.mask

    def noise_shape(self, x):
        """Shape of the mask (broadcast against x): one draw per element here."""
        return x.shape

    def backward(self, grad):
        return grad * self.mask if self._active else grad

    def get_config(self):
        config = super().get_config()
        config["rate"] = self.rate
        return config



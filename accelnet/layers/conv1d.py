"""Conv1D on channels-last (N, steps, channels) input: Conv2D on a height-1 image."""
from .. import activations
from ..backend import get_array_module
from ..errors import InvalidArgumentError
from .base import KernelBiasMixin, Layer, positive_int
from .conv import Conv2D
from .core import ActivationMixin
from .one_d import check_steps_input

PADDINGS = ("valid", "same", "causal")


def _one_int(layer, name, value):
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return positive_int(layer, name, value)


class Conv1D(ActivationMixin, KernelBiasMixin, Layer):
    """1-D convolution, Keras kernel layout (K, C, F). Runs as a Conv2D with kernel (1, K)
    whose weights are views of this layer's. 'causal' padding left-pads d·(K−1) zeros, so
    output[t] sees only input[:t+1]."""

    uses_worker_threads = True

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        who = f"Conv1D {self.name!r}"
        if data_format not in (None, "channels_last"):
            raise InvalidArgumentError(f"Layer {who}: only data_format='channels_last' is "
                                       f"supported, got {data_format!r}.")
        self.filters = positive_int(who, "filters", filters)
        self.kernel_size = _one_int(who, "kernel_size", kernel_size)
        self.strides = _one_int(who, "strides", strides)
        self.dilation_rate = _one_int(who, "dilation_rate", dilation_rate)
        if self.strides > 1 and self.dilation_rate > 1:
            raise InvalidArgumentError(
                f"Layer {who}: strides > 1 is not supported together with dilation_rate > 1 (as in "
                f"Keras); got strides={self.strides}, dilation_rate={self.dilation_rate}.")
        self.padding = str(padding).lower()
        if self.padding not in PADDINGS:
            raise InvalidArgumentError(f"Layer {who}: padding must be 'valid', 'same' or "
                                       f"'causal', got {padding!r}.")
        self.activation = activations.get(activation)
        self._set_weight_args(use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                              bias_regularizer)
        self.left_pad = self.dilation_rate * (self.kernel_size - 1) if self.padding == "causal" else 0
        # Zeros: the inner layer's own weights are never used (no draw from the seeded RNG).
        self.inner = Conv2D(self.filters, (1, self.kernel_size), strides=(1, self.strides),
                            padding="valid" if self.padding == "causal" else self.padding,
                            dilation_rate=(1, self.dilation_rate), use_bias=use_bias,
                            kernel_initializer="zeros", name=self.name)

    def _inner_shape(self, input_shape):
        check_steps_input(self, "Conv1D", input_shape)
        steps, channels = input_shape
        return (1, int(steps) + self.left_pad, int(channels))

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (self.kernel_size, int(input_shape[-1]), self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def build(self, input_shape):
        self.inner.build(self._inner_shape(input_shape))
        super().build(input_shape)
        self._add_kernel_and_bias()

    def compute_output_shape(self, input_shape):
        return self.inner.compute_output_shape(self._inner_shape(input_shape))[1:]

    def _bind(self, store, inner_store):
        """Point the inner Conv2D's arrays at views of ours (rebound each call: optimizers
        and to_float64 may replace our arrays)."""
        k = store["kernel"]
        inner_store["kernel"] = k.reshape((1,) + tuple(k.shape))
        if self.use_bias:
            inner_store["bias"] = store["bias"]

    def forward(self, x, training=True, logits=False):
        self.ensure_built(x)
        self._bind(self.params, self.inner.params)
        if self.left_pad:
            xp = get_array_module(x)
            x = xp.pad(x, ((0, 0), (self.left_pad, 0), (0, 0)))
        z = self.inner.forward(x[:, None], training=training)[:, 0]
        return self.activate(z, logits)

    def backward(self, grad):
        dz = self.activation_grad(grad)
        self._bind(self.grads, self.inner.grads)
        self.inner.needs_input_grad = self.needs_input_grad
        dx = self.inner.backward(dz[:, None])
        self.add_regularization_grads()
        if dx is None:
            return None
        return dx[:, 0, self.left_pad:]

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding, dilation_rate=self.dilation_rate,
                      **self._weight_config())
        return config

"""Convolution and pooling on channels-last (N, H, W, C) input, through im2col/col2im.

The im2col workspace is bounded: the batch is processed in chunks whose column matrix
fits in `WORKSPACE_BYTES` (env ACCELNET_CONV_WORKSPACE_MB, default 64), so memory does
not grow with the batch size. When the whole batch fits in one chunk, the columns are
kept for the backward pass instead of being rebuilt.
"""
import os

from .. import kernels
from ..backend import get_array_module, get_backend
from ..errors import InvalidArgumentError, ShapeError
from .base import KernelBiasMixin, Layer, as_pair, positive_int
from .core import ActivationMixin, _serial
from .. import activations

WORKSPACE_BYTES = int(float(os.environ.get("ACCELNET_CONV_WORKSPACE_MB", "128")) * 2**20)
PADDINGS = ("valid", "same")


def _check_padding(layer, padding):
    padding = str(padding).lower()
    if padding not in PADDINGS:
        raise InvalidArgumentError(f"Layer {layer}: padding must be 'valid' or 'same', got {padding!r}.")
    return padding


def _spatial_output(layer, input_shape, kernel, strides, padding):
    """(OH, OW) for an (H, W, C) input, with a clear error for impossible shapes."""
    if len(input_shape) != 3:
        raise ShapeError(
            f"Layer {layer!r} expects input of shape (batch, height, width, channels), but "
            f"received input with shape {(None,) + tuple(input_shape)}; reshape 2-D data with "
            f"x.reshape(-1, height, width, 1).")
    out = []
    for size, k, s in zip(input_shape[:2], kernel, strides):
        padded = size + sum(kernels.same_padding(size, k, s)) if padding == "same" else size
        if k > padded:
            raise ShapeError(
                f"Layer {layer!r}: kernel {tuple(kernel)} is larger than the padded input "
                f"{tuple(input_shape[:2])} (padding={padding!r}).")
        out.append(kernels.conv_output_size(size, k, s, padding))
    return tuple(out)


def _chunk_size(n, row_bytes):
    """How many samples fit in the im2col workspace (at least one)."""
    return max(1, min(n, WORKSPACE_BYTES // max(row_bytes, 1)))


class Conv2D(ActivationMixin, KernelBiasMixin, Layer):
    """2-D convolution, Keras kernel layout (KH, KW, C, F), as im2col followed by a GEMM."""

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        self.filters = positive_int(f"Conv2D {self.name!r}", "filters", filters)
        self.kernel_size = as_pair(kernel_size, f"Conv2D {self.name!r} kernel_size")
        self.strides = as_pair(strides, f"Conv2D {self.name!r} strides")
        self.padding = _check_padding(self.name, padding)
        self.activation = activations.get(activation)
        self._set_weight_args(use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                              bias_regularizer)

    def weight_shapes(self, input_shape):
        shapes = {"kernel": tuple(self.kernel_size) + (int(input_shape[-1]), self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def build(self, input_shape):
        self.out_hw = _spatial_output(self.name, input_shape, self.kernel_size, self.strides,
                                      self.padding)
        super().build(input_shape)
        self._add_kernel_and_bias()

    def compute_output_shape(self, input_shape):
        oh, ow = _spatial_output(self.name, input_shape, self.kernel_size, self.strides, self.padding)
        return (oh, ow, self.filters)

    def _columns(self, x):
        return kernels.im2col(x, self.kernel_size, self.strides, self.padding)

    def _chunks(self, n, itemsize):
        kh, kw = self.kernel_size
        row_bytes = self.out_hw[0] * self.out_hw[1] * kh * kw * self.input_shape[2] * itemsize
        step = _chunk_size(n, row_bytes)
        return [(i, min(i + step, n)) for i in range(0, n, step)]

    def forward(self, x, training=True, logits=False):
        self.ensure_built(x)
        xp = get_array_module(x)
        n = x.shape[0]
        w2 = self.params["kernel"].reshape(-1, self.filters)
        z = xp.empty((n,) + self.out_hw + (self.filters,), dtype=x.dtype)
        chunks = self._chunks(n, x.dtype.itemsize)
        self._x, self._cols = x, None
        for start, stop in chunks:
            cols = self._columns(x[start:stop])
            xp.matmul(cols, w2, out=z[start:stop].reshape(-1, self.filters))
        if len(chunks) == 1 and training:
            self._cols = cols
        if self.use_bias:
            z += self.params["bias"]
        return self.activate(z, logits)

    def backward(self, grad):
        xp = get_array_module(grad)
        dz = self.activation_grad(grad)
        backend = get_backend()
        x = self._x
        n = x.shape[0]
        w2 = self.params["kernel"].reshape(-1, self.filters)
        gw2 = self.grads["kernel"].reshape(-1, self.filters)
        if self.use_bias:
            xp.sum(dz.reshape(-1, self.filters), axis=0, out=self.grads["bias"])
        dx = xp.empty_like(x) if self.needs_input_grad else None
        for i, (start, stop) in enumerate(self._chunks(n, x.dtype.itemsize)):
            cols = self._cols if self._cols is not None else self._columns(x[start:stop])
            dz2 = dz[start:stop].reshape(-1, self.filters)
            if i == 0:
                backend.matmul_long_reduction(cols.T, dz2, out=gw2)
            else:
                gw2 += backend.matmul_long_reduction(cols.T, dz2)
            if dx is not None:
                dx[start:stop] = kernels.col2im(dz2 @ w2.T, x[start:stop].shape, self.kernel_size,
                                                self.strides, self.padding)
        self.add_regularization_grads()
        self._x = self._cols = None
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=list(self.kernel_size),
                      strides=list(self.strides), padding=self.padding,
                      activation=self.activation.name, use_bias=self.use_bias,
                      kernel_initializer=_serial(self.kernel_initializer),
                      bias_initializer=_serial(self.bias_initializer),
                      kernel_regularizer=_serial(self.kernel_regularizer),
                      bias_regularizer=_serial(self.bias_regularizer))
        return config


class MaxPooling2D(Layer):
    """Max over (ph, pw) windows. The gradient goes to one maximum per window (the first),
    as in TensorFlow. 'same' padding never lets a padded cell win. One kernel pass each way:
    the forward records each window's winner, the backward adds the gradient there."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        self.pool_size = as_pair(pool_size, f"MaxPooling2D {self.name!r} pool_size")
        self.strides = as_pair(strides, f"MaxPooling2D {self.name!r} strides") if strides else self.pool_size
        self.padding = _check_padding(self.name, padding)

    def build(self, input_shape):
        self.out_hw = _spatial_output(self.name, input_shape, self.pool_size, self.strides, self.padding)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        oh, ow = _spatial_output(self.name, input_shape, self.pool_size, self.strides, self.padding)
        return (oh, ow, input_shape[2])

    def forward(self, x, training=True):
        self.ensure_built(x)
        out, argmax = kernels.max_pool(x, self.pool_size, self.strides, self.padding)
        self._argmax, self._x_shape = (argmax, x.shape) if training else (None, None)
        return out

    def backward(self, grad):
        dx = kernels.max_pool_backward(grad, self._argmax, self._x_shape, self.pool_size,
                                       self.strides, self.padding)
        self._argmax = None
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=list(self.pool_size), strides=list(self.strides), padding=self.padding)
        return config

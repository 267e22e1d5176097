"""Convolution and pooling on channels-last (N, H, W, C) input, through im2col/col2im.

The batch is processed in chunks, so memory does not grow with the batch size. On the
CPU the chunks are a few MiB (ACCELNET_CHUNK_KB) and run on accelnet's worker threads with
one-thread BLAS (`kernels.run_tasks`): each chunk's columns, GEMM, bias and ReLU (and in the
backward ReLU-backward, bias and weight gradients, and col2im) are done while they are still
in cache; the weight and bias gradients are per-chunk partial sums added in chunk order
(deterministic). There, 3x3 stride-1 kernels with >= 16 input channels run their
forward as Winograd F(2x2, 3x3) (`kernels.winograd_applies`; measured 0.75x the CPU time of
im2col + GEMM at mnist_cnn's conv2), and with 'same' padding their input gradient too; the
weight gradient stays im2col + GEMM. Elsewhere (GPU, ACCELNET_KERNELS=reference) a chunk's
column matrix fills `WORKSPACE_BYTES` (env ACCELNET_CONV_WORKSPACE_MB, default 128); when the
whole batch fits in one chunk, the columns are kept for the backward pass.
"""
import os

from .. import kernels
from ..backend import get_array_module, get_backend
from ..errors import InvalidArgumentError, ShapeError
from .base import KernelBiasMixin, Layer, as_pair, positive_int
from .core import ActivationMixin
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


class Conv2D(ActivationMixin, KernelBiasMixin, Layer):
    """2-D convolution, Keras kernel layout (KH, KW, C, F), as im2col followed by a GEMM.

    `dilation_rate` d spreads the kernel over a window of d·(k−1)+1 pixels: im2col runs on
    that window and the columns of every d-th pixel are kept (backward: scattered back).
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, input_shape=None, name=None,
                 dilation_rate=1):
        super().__init__(name=name, input_shape=input_shape)
        self.filters = positive_int(f"Conv2D {self.name!r}", "filters", filters)
        self.kernel_size = as_pair(kernel_size, f"Conv2D {self.name!r} kernel_size")
        self.strides = as_pair(strides, f"Conv2D {self.name!r} strides")
        self.dilation_rate = as_pair(dilation_rate, f"Conv2D {self.name!r} dilation_rate")
        if min(self.dilation_rate) < 1:
            raise InvalidArgumentError(f"Conv2D {self.name!r}: dilation_rate must be >= 1, got "
                                       f"{dilation_rate!r}.")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise InvalidArgumentError(
                f"Conv2D {self.name!r}: strides > 1 is not supported together with dilation_rate > 1 "
                f"(as in Keras); got strides={self.strides}, dilation_rate={self.dilation_rate}.")
        self.window = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation_rate))
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
        self.out_hw = _spatial_output(self.name, input_shape, self.window, self.strides,
                                      self.padding)
        super().build(input_shape)
        self._add_kernel_and_bias()

    def compute_output_shape(self, input_shape):
        oh, ow = _spatial_output(self.name, input_shape, self.window, self.strides, self.padding)
        return (oh, ow, self.filters)

    def _dilated(self):
        return self.window != self.kernel_size

    def _columns(self, x):
        cols = kernels.im2col(x, self.window, self.strides, self.padding)
        if not self._dilated():
            return cols
        (wh, ww), (dh, dw), c = self.window, self.dilation_rate, x.shape[3]
        taps = cols.reshape(cols.shape[0], wh, ww, c)[:, ::dh, ::dw, :]
        return taps.reshape(cols.shape[0], -1)  # a copy: (rows, KH*KW*C), GEMM-ready

    def _image(self, dcols, x_shape):
        """col2im of the columns' gradient (the adjoint of `_columns`)."""
        if self._dilated():
            (wh, ww), (dh, dw), c = self.window, self.dilation_rate, x_shape[3]
            xp = get_array_module(dcols)
            full = xp.zeros((dcols.shape[0], wh, ww, c), dtype=dcols.dtype)
            full[:, ::dh, ::dw, :] = dcols.reshape(dcols.shape[0], *self.kernel_size, c)
            dcols = full.reshape(dcols.shape[0], -1)
        return kernels.col2im(dcols, x_shape, self.window, self.strides, self.padding)

    def _tasks(self, x):
        """Batch chunks grouped into tasks: chunks of a few MiB on accelnet's worker threads
        on the CPU, else as many samples per chunk as fit in the im2col workspace."""
        kh, kw = self.window  # the dilated window's columns before the taps are picked
        col_bytes = self.out_hw[0] * self.out_hw[1] * kh * kw * self.input_shape[2]
        out_bytes = self.out_hw[0] * self.out_hw[1] * self.filters
        if kernels.threaded(x):  # one sample's working set: columns, output, their gradients
            per_sample = 2 * (col_bytes + out_bytes) * x.dtype.itemsize
        else:
            per_sample = col_bytes * x.dtype.itemsize
        return kernels.batch_tasks(x, x.shape[0], per_sample, WORKSPACE_BYTES)

    def _columns_into(self, x, name="cols"):
        """im2col of a chunk into this thread's scratch buffer (a new array when not threaded
        or dilated)."""
        if self._dilated():
            return self._columns(x)
        (oh, ow), (kh, kw) = self.out_hw, self.kernel_size
        shape = (x.shape[0] * oh * ow, kh * kw * x.shape[3])
        return kernels.im2col(x, self.kernel_size, self.strides, self.padding,
                              out=kernels.scratch(x, name, shape, x.dtype))

    def _fuse_relu(self, logits):
        return self.use_bias and self.activation.name == "relu" and not logits

    def forward(self, x, training=True, logits=False):
        self.ensure_built(x)
        xp = get_array_module(x)
        n, f = x.shape[0], self.filters
        w2 = self.params["kernel"].reshape(-1, f)
        bias = self.params["bias"] if self.use_bias else None
        fused = self._fuse_relu(logits)  # bias + ReLU in one pass, per chunk while in cache
        z = xp.empty((n,) + self.out_hw + (f,), dtype=x.dtype)
        tasks = self._tasks(x)
        keep = training and len(tasks) == 1 and len(tasks[0]) == 1 and not kernels.threaded(x)
        winograd = not self._dilated() and kernels.winograd_applies(x, self.kernel_size,
                                                                     self.strides)
        u = kernels.winograd_weights(self.params["kernel"]) if winograd else None

        def work(chunks):
            cols = None
            for start, stop in chunks:
                if winograd:  # 3x3 stride 1: Winograd F(2x2, 3x3), bias + ReLU in its last pass
                    kernels.winograd_conv(x[start:stop], u, self.padding, out=z[start:stop],
                                          bias=bias if fused else None, relu=fused)
                    continue
                cols = self._columns_into(x[start:stop])
                zc = z[start:stop].reshape(-1, f)
                xp.matmul(cols, w2, out=zc)
                if fused:
                    kernels.bias_relu(zc, bias)
            return cols if keep else None  # the whole batch's columns, kept for backward

        self._x = x
        self._cols = kernels.run_tasks(x, work, tasks)[0]
        self._fused = fused
        if fused:
            self._logits, self._out = False, z
            return z
        if self.use_bias:
            z += bias
        return self.activate(z, logits)

    def backward(self, grad):
        xp = get_array_module(grad)
        x, f, fused = self._x, self.filters, self._fused
        dz = grad if fused else self.activation_grad(grad)
        w2 = self.params["kernel"].reshape(-1, f)
        dx = xp.empty_like(x) if self.needs_input_grad else None
        tasks = self._tasks(x)
        # The whole batch in one GEMM: the backend's long-reduction matmul (one BLAS thread
        # where that wins); in worker threads BLAS is already at one thread.
        first_gemm = xp.matmul if kernels.threaded(x) else get_backend().matmul_long_reduction
        cols_kept = self._cols
        winograd = dx is not None and not self._dilated() and kernels.winograd_applies_input_grad(
            dz.reshape(x.shape[:1] + self.out_hw + (f,)), self.kernel_size, self.strides,
            self.padding)
        u_t = kernels.winograd_weights(self.params["kernel"], transpose=True) if winograd else None
        dx_padding = kernels.winograd_input_grad_padding(self.padding)

        def work(chunks):
            """One task: its chunks' weight (and bias) gradients summed in chunk order."""
            kernel_sum = bias_sum = None
            for start, stop in chunks:
                rows = (stop - start) * self.out_hw[0] * self.out_hw[1]
                dzc = dz[start:stop].reshape(-1, f)
                if fused:  # ReLU backward and the bias gradient in one pass over the chunk
                    dzc, part = kernels.relu_bias_grad(
                        dzc, self._out[start:stop].reshape(-1, f),
                        out=kernels.scratch(x, "dz", (rows, f), dz.dtype))
                    bias_sum = part if bias_sum is None else bias_sum + part
                cols = cols_kept if cols_kept is not None else self._columns_into(x[start:stop])
                if kernel_sum is None:
                    kernel_sum = first_gemm(cols.T, dzc)
                else:
                    kernel_sum += xp.matmul(cols.T, dzc, out=kernels.scratch(
                        x, "dw", kernel_sum.shape, kernel_sum.dtype))
                if winograd:  # dx: the rotated kernel over dz, Winograd F(2x2, 3x3)
                    kernels.winograd_conv(dzc.reshape((stop - start,) + self.out_hw + (f,)),
                                          u_t, dx_padding, out=dx[start:stop])
                elif dx is not None:
                    dcols = xp.matmul(dzc, w2.T, out=kernels.scratch(
                        x, "dcols", (rows, w2.shape[0]), dz.dtype))
                    if self._dilated():
                        dx[start:stop] = self._image(dcols, x[start:stop].shape)
                    else:
                        kernels.col2im(dcols, x[start:stop].shape, self.kernel_size,
                                       self.strides, self.padding, out=dx[start:stop])
            return kernel_sum, bias_sum

        parts = kernels.run_tasks(x, work, tasks)
        gw2 = self.grads["kernel"].reshape(-1, f)
        gw2[...] = parts[0][0]
        for part, _ in parts[1:]:  # task partial sums in task order: deterministic
            gw2 += part
        if self.use_bias:
            if fused:
                total = parts[0][1]
                for _, part in parts[1:]:
                    total = total + part
                self.grads["bias"][...] = total
            else:
                xp.sum(dz.reshape(-1, f), axis=0, out=self.grads["bias"])
        self.add_regularization_grads()
        self._x = self._cols = self._out = None
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=list(self.kernel_size),
                      strides=list(self.strides), padding=self.padding,
                      dilation_rate=list(self.dilation_rate),
                      **self._weight_config())
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

"""Convolution and pooling on channels-last (N, H, W, C) input.

The batch is processed in slices, so memory does not grow with the batch size. On the CPU
each slice is a task of a few MiB (ACCELNET_CHUNK_KB) for accelnet's worker threads, with
one-thread BLAS (`kernels.run_tasks`); each pass over a slice is one GIL-free kernel call
that blocks it for cache: `kernels.conv_forward` / `conv_weight_grad` / `conv_input_grad`
(im2col + GEMM), or, for 3x3 / 5x5 stride-1 kernels with >= 8 input channels,
Winograd F(m x m, r x r) where `kernels.winograd_tile` says it was measured faster (3x3:
F(4x4, 3x3), 5x5: F(3x3, 5x5), for the forward, the weight gradient and the input
gradient). Weight and bias gradients are per-task
partial sums added in task order (deterministic, whatever the thread count). Elsewhere
(GPU, ACCELNET_KERNELS=reference) a slice's column matrix fills `WORKSPACE_BYTES` (env
ACCELNET_CONV_WORKSPACE_MB, default 128). Dilated kernels take their columns' taps in
NumPy/CuPy (`Conv2D._columns`).
"""
import os

from .. import kernels
from ..backend import get_array_module
from ..fusion import enabled as fusion_enabled
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

    uses_worker_threads = True

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
        self._pool = None  # the MaxPooling2D of the last forward_fused

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
        """Batch slices grouped into tasks: on the CPU one slice of a few MiB per task, run
        on accelnet's worker threads (the kernels block it for cache inside one GIL-free
        call); else slices of as many samples as fit in the im2col workspace."""
        kh, kw = self.window  # the dilated window's columns before the taps are picked
        col_bytes = self.out_hw[0] * self.out_hw[1] * kh * kw * self.input_shape[2]
        out_bytes = self.out_hw[0] * self.out_hw[1] * self.filters
        if kernels.threaded(x):  # one sample's working set: columns, output, their gradients
            per_sample = 2 * (col_bytes + out_bytes) * x.dtype.itemsize
        else:
            per_sample = col_bytes * x.dtype.itemsize
        return kernels.task_slices(x, x.shape[0], per_sample, WORKSPACE_BYTES)

    def _fuse_relu(self, logits):
        return self.use_bias and self.activation.name == "relu" and not logits

    def _conv_args(self):
        return self.kernel_size, self.strides, self.padding

    def forward(self, x, training=True, logits=False):
        self._pool = None
        return self._forward(x, logits)

    def fuses_with(self, layer, x):
        """Whether a model's training step may run `layer` inside this layer's forward
        (`forward_fused`): a MaxPooling2D after this layer's bias + ReLU, on the CPU's
        worker threads (ACCELNET_FUSE=0 turns it off)."""
        return (isinstance(layer, MaxPooling2D) and self._fuse_relu(False)
                and kernels.threaded(x) and fusion_enabled())

    def forward_fused(self, x, pool):
        """This convolution, bias + ReLU, then `pool`, one batch slice at a time: a slice's
        convolution output lives only in a per-thread scratch buffer, in cache, while it is
        pooled (never written to memory whole, nor read back); on the Winograd path one
        image block at a time inside the slice (`kernels.winograd_conv_pool`, and
        `winograd_pool_grads` backward). Returns pool's output; the
        backward is `backward_fused`, from pool's output gradient. Same bits as the two
        layers' forward and backward in a row."""
        self._check_pool(pool)
        self._pool = pool
        return self._forward(x, False)

    def chains_forward(self, layer, x):
        """Whether a model's training step may run `layer`'s forward, which alone consumes
        this layer's output, inside this layer's, per batch slice (`forward_chained`): a
        Conv2D after this layer's bias + ReLU, on the CPU's worker threads, neither
        dilated (ACCELNET_FUSE=0 turns it off)."""
        return (isinstance(layer, Conv2D) and layer is not self and self._fuse_relu(False)
                and not self._dilated() and not layer._dilated() and kernels.threaded(x)
                and fusion_enabled())

    def forward_chained(self, x, consumer, pool=None):
        """This layer's forward (bias + ReLU) and then `consumer`'s (a Conv2D, with `pool`
        fused as in `forward_fused` when given), slice by slice on the consumer's batch
        slices: each slice of this layer's output is written whole (the backward needs it)
        and convolved again while it is in cache. Returns (this layer's output, the
        consumer's or pool's output). Same bits as the layers one after the other: every
        image's convolution is computed alike whatever the slice."""
        self._pool = None
        mine = self._forward_state(x, False)
        consumer._pool = None
        consumer.ensure_built(mine["z"])
        if pool is not None:
            consumer._check_pool(pool)
            consumer._pool = pool
        theirs = consumer._forward_state(mine["z"], False)

        def work(chunks):
            for start, stop in chunks:
                self._forward_slice(mine, start, stop)
                consumer._forward_slice(theirs, start, stop)

        kernels.run_tasks(x, work, consumer._tasks(mine["z"]))
        return self._forward_finish(mine, False), consumer._forward_finish(theirs, False)

    def _check_pool(self, pool):
        if pool.input_shape != self.out_hw + (self.filters,):
            raise ShapeError(f"Layer {pool.name!r} expects input of shape "
                             f"{(None,) + tuple(pool.input_shape)}, but Conv2D {self.name!r} "
                             f"gives {(None,) + self.out_hw + (self.filters,)}.")

    def _forward(self, x, logits):
        st = self._forward_state(x, logits)

        def work(chunks):
            for start, stop in chunks:
                self._forward_slice(st, start, stop)

        kernels.run_tasks(x, work, self._tasks(x))
        return self._forward_finish(st, logits)

    def _forward_state(self, x, logits):
        """What every slice of a forward pass needs: the input, the output array (pooled,
        with its argmax, when a pool is fused), the algorithm and the epilogue."""
        self.ensure_built(x)
        xp = get_array_module(x)
        n, f, pool = x.shape[0], self.filters, self._pool
        fused = self._fuse_relu(logits)  # bias + ReLU in the convolution's last pass
        bias = self.params["bias"] if self.use_bias else None
        st = {"x": x, "fused": fused, "w2": self.params["kernel"].reshape(-1, f), "bias": bias,
              "epilogue": dict(bias=bias if fused else None, relu=fused)}
        if pool is None:
            st["z"] = xp.empty((n,) + self.out_hw + (f,), dtype=x.dtype)
        else:
            st["z"] = xp.empty((n,) + pool.out_hw + (f,), dtype=x.dtype)
            st["argmax"] = xp.empty(st["z"].shape,
                                    dtype=kernels.max_pool_argmax_dtype(pool.pool_size))
        st["tile"] = None if self._dilated() else kernels.winograd_tile(
            x, self.kernel_size, self.strides, self.padding, "forward")
        st["u"] = (kernels.winograd_weights(self.params["kernel"], m=st["tile"])
                   if st["tile"] is not None else None)
        return st

    def _forward_slice(self, st, start, stop):
        """The convolution (+ bias, ReLU, and the fused pool) of images start..stop."""
        x, z, f, pool = st["x"], st["z"], self.filters, self._pool
        xp = get_array_module(x)
        xc, zc = x[start:stop], z[start:stop]
        if pool is not None and st["u"] is not None:  # pooled per image block, in cache
            kernels.winograd_conv_pool(xc, st["u"], pool.pool_size, pool.strides, self.padding,
                                       pool.padding, r=self.kernel_size[0], out=zc,
                                       argmax=st["argmax"][start:stop], **st["epilogue"])
            return
        if pool is not None:  # the slice's output, pooled below while in cache
            shape = (stop - start,) + self.out_hw + (f,)
            zc = kernels.scratch(x, "conv_out", shape, x.dtype)
            zc = xp.empty(shape, dtype=x.dtype) if zc is None else zc
        if st["u"] is not None:  # 3x3 / 5x5 stride 1: Winograd F(m x m, r x r)
            kernels.winograd_conv(xc, st["u"], self.padding, out=zc, r=self.kernel_size[0],
                                  **st["epilogue"])
        elif self._dilated():
            zc2 = zc.reshape(-1, f)
            xp.matmul(self._columns(xc), st["w2"], out=zc2)
            if st["fused"]:
                kernels.bias_relu(zc2, st["bias"])
        else:
            kernels.conv_forward(xc, st["w2"], *self._conv_args(), out=zc, **st["epilogue"])
        if pool is not None:
            kernels.max_pool(zc, pool.pool_size, pool.strides, pool.padding,
                             out=z[start:stop], argmax=st["argmax"][start:stop])

    def _forward_finish(self, st, logits):
        """Keep what the backward needs; the output (activated unless fused)."""
        z, pool = st["z"], self._pool
        self._x, self._fused = st["x"], st["fused"]
        if pool is not None:
            self._out, self._argmax = z, st["argmax"]  # pool's output: the ReLU's mask
            return z
        if st["fused"]:
            self._logits, self._out = False, z
            return z
        if self.use_bias:
            z += st["bias"]
        return self.activate(z, logits)

    def backward(self, grad):
        if self._pool is not None:
            raise InvalidArgumentError(f"Conv2D {self.name!r}: the last forward was "
                                       f"forward_fused; call backward_fused.")
        return self._backward(grad)

    def backward_fused(self, grad):
        """The backward of `forward_fused` from the pooled output's gradient: per slice,
        the pooling and ReLU backward (`max_pool_relu_grad`) into a scratch buffer, then
        this layer's passes; pool's backward never runs."""
        if self._pool is None:
            raise InvalidArgumentError(f"Conv2D {self.name!r}: backward_fused needs "
                                       f"forward_fused first.")
        return self._backward(grad)

    def chains_backward(self, layer):
        """Whether this layer's backward may run `layer`'s backward slice by slice (see
        `backward_chained`): `layer` is a Conv2D whose output (after its own ReLU, or its
        fused pooling) only this layer consumes and whose input gradient nobody needs, on
        the CPU's worker threads, neither dilated (ACCELNET_FUSE=0 turns it off)."""
        return (isinstance(layer, Conv2D) and layer is not self and fusion_enabled()
                and self._x is not None and layer._x is not None and kernels.threaded(self._x)
                and not self._dilated() and not layer._dilated() and not layer.needs_input_grad
                and (layer._fused or layer._pool is not None))

    def backward_chained(self, grad, producer):
        """This layer's backward (plain or fused, as its forward ran) with `producer`'s
        backward inside it, per batch slice: each slice's input gradient goes to a per-thread
        scratch buffer, in cache, and `producer` turns it into its weight and bias
        gradients right away (its output gradient is never written whole, nor its output
        read back from memory). Returns None (nobody needs this layer's input gradient)."""
        return self._backward(grad, producer)

    def _backward(self, grad, producer=None):
        try:
            mine = self._backward_state(grad, dx_wanted=producer is None)
            theirs = None if producer is None else producer._backward_state(None, False)

            def work(chunks):
                """One task: its slices' gradient parts summed in slice order."""
                sums = [None, None, None, None]
                for start, stop in chunks:
                    dx_slice = None
                    if producer is not None:  # this slice's input gradient: producer's output's
                        shape = (stop - start,) + self._x.shape[1:]
                        dx_slice = kernels.scratch(self._x, "chain_dx", shape, self._x.dtype)
                        if dx_slice is None:  # larger than a scratch buffer may be
                            dx_slice = get_array_module(self._x).empty(shape, self._x.dtype)
                    parts = self._backward_slice(mine, start, stop, dx_out=dx_slice)
                    if producer is not None:
                        parts += producer._backward_slice(theirs, start, stop, dz=dx_slice)
                    sums = [p if s is None else (s if p is None else s + p)
                            for s, p in zip(sums, parts + (None,) * (4 - len(parts)))]
                return sums

            tasks = kernels.run_tasks(self._x, work, self._tasks(self._x))
            if producer is not None:
                producer._backward_finish(theirs, [t[2:] for t in tasks])
            return self._backward_finish(mine, [t[:2] for t in tasks])
        finally:
            if producer is not None:
                producer._pool = producer._argmax = None
            self._pool = self._argmax = None

    def _backward_state(self, grad, dx_wanted):
        """What every slice of a backward pass needs: the output gradient (None: handed in
        per slice by a chained consumer), the input-gradient array and the algorithms."""
        x, f = self._x, self.filters
        st = {"dz": None if grad is None else (grad if self._fused else self.activation_grad(grad))}
        st["w2"] = self.params["kernel"].reshape(-1, f)
        wants_dx = dx_wanted and self.needs_input_grad
        st["dx"] = get_array_module(x).empty_like(x) if wants_dx else None
        computes_dx = self.needs_input_grad and grad is not None and not self._dilated()
        st["tile_dx"] = kernels.winograd_tile(st["dz"], self.kernel_size, self.strides,
                                              self.padding, "input_grad") if computes_dx else None
        st["tile_dw"] = None if self._dilated() else kernels.winograd_tile(
            x, self.kernel_size, self.strides, self.padding, "weight_grad")
        # both gradients from one transform of dz: where winograd_grads pays, and always with
        # a fused pool, whose dz then never leaves the cache (`winograd_pool_grads`; seed 004's
        # 'same' conv2: step min 21.0 -> 20.2 ms, median 22.8 -> 21.4, mean of 5 alternated
        # rounds of 40 steps)
        both = (st["tile_dx"] is not None and st["tile_dw"] is not None
                and (kernels.winograd_grads_applies(self.padding, x.shape[-1], f)
                     or self._pool is not None))
        kernel = self.params["kernel"]
        # weights once a call: the forward's U (and U^T) for both gradients at once, else the
        # rotated kernel's for a separate Winograd input gradient
        st["u"] = kernels.winograd_weights(kernel, m=st["tile_dw"]) if both else None
        st["u_grads_t"] = kernels.winograd_transposed(st["u"]) if both else None
        st["u_t"] = (kernels.winograd_weights(kernel, transpose=True, m=st["tile_dx"])
                     if st["tile_dx"] is not None and not both else None)
        return st

    def _backward_slice(self, st, start, stop, dz=None, dx_out=None):
        """(kernel gradient part, bias gradient part or None) of images start..stop; the
        slice's output gradient is st's or `dz`, its input gradient goes to `dx_out` or
        st's dx[start:stop] (when wanted)."""
        xp = get_array_module(self._x)
        x, f, pool, r = self._x, self.filters, self._pool, self.kernel_size[0]
        rows = (stop - start) * self.out_hw[0] * self.out_hw[1]
        grad = st["dz"][start:stop] if dz is None else dz
        xc, dzc, bias_part = x[start:stop], grad.reshape(-1, f), None
        dx = st["dx"][start:stop] if dx_out is None and st["dx"] is not None else dx_out
        if pool is not None and dx is not None and st["u"] is not None:  # per image block
            kernel_part, bias_part, _ = kernels.winograd_pool_grads(
                xc, grad, self._argmax[start:stop], self._out[start:stop], st["u"],
                pool.pool_size, pool.strides, self.padding, pool.padding, out=dx, r=r,
                u_t=st["u_grads_t"], transformed=True)
            return kernel_part, bias_part
        if pool is not None:  # pooling, ReLU and bias backward into the scratch
            dzc, bias_part = kernels.max_pool_relu_grad(
                grad, self._argmax[start:stop], self._out[start:stop],
                (stop - start,) + self.out_hw + (f,), pool.pool_size, pool.strides,
                pool.padding, out=kernels.scratch(x, "dz", (rows, f), grad.dtype))
        elif self._fused:  # ReLU backward and the bias gradient in one pass over the slice
            dzc, bias_part = kernels.relu_bias_grad(
                dzc, self._out[start:stop].reshape(-1, f),
                out=kernels.scratch(x, "dz", (rows, f), grad.dtype))
        # Winograd kernel-gradient parts stay transformed, (n*n, F, C): summed over the
        # slices, then finished once (`_backward_finish`)
        if dx is not None and st["u"] is not None:  # both from one transform of dz
            kernel_part, _ = kernels.winograd_grads(xc, dzc, st["u"], self.padding, out=dx, r=r,
                                                    u_t=st["u_grads_t"], transformed=True)
            return kernel_part, bias_part
        if self._dilated():
            kernel_part = xp.matmul(self._columns(xc).T, dzc)
        elif st["tile_dw"] is not None:
            kernel_part = kernels.winograd_weight_grad(xc, dzc, self.padding, m=st["tile_dw"],
                                                       r=r, transformed=True)
        else:
            kernel_part = kernels.conv_weight_grad(xc, dzc, *self._conv_args())
        if dx is not None and st["tile_dx"] is not None:  # the rotated kernel over dz
            kernels.winograd_conv(dzc.reshape((stop - start,) + self.out_hw + (f,)), st["u_t"],
                                  kernels.winograd_input_grad_padding(self.padding), out=dx, r=r)
        elif dx is not None and self._dilated():
            dx[...] = self._image(xp.matmul(dzc, st["w2"].T), xc.shape)
        elif dx is not None:
            kernels.conv_input_grad(dzc, st["w2"], xc.shape, *self._conv_args(), out=dx)
        return kernel_part, bias_part

    def _backward_finish(self, st, parts):
        """Sum the tasks' (kernel, bias) parts in task order (deterministic) into the
        gradients (Winograd's transformed parts finished once, after the sum); returns the
        input gradient."""
        f = self.filters
        gw2 = self.grads["kernel"].reshape(-1, f)
        total = parts[0][0]  # a task's own array (a kernel's result or a sum): added into
        for part, _ in parts[1:]:
            total += part
        if st["tile_dw"] is not None:
            total = kernels.winograd_weight_grad_finish(total, m=st["tile_dw"],
                                                        r=self.kernel_size[0])
        gw2[...] = total.reshape(-1, f)
        if self.use_bias:
            if self._fused:
                total = parts[0][1]
                for _, part in parts[1:]:
                    total = total + part
                self.grads["bias"][...] = total
            else:
                get_array_module(st["dz"]).sum(st["dz"].reshape(-1, f), axis=0,
                                              out=self.grads["bias"])
        self.add_regularization_grads()
        self._x = self._out = None
        return st["dx"]

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

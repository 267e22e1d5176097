"""Average pooling, 1-D pooling and global pooling on channels-last input.

(MaxPooling2D lives in conv.py beside Conv2D.) Windows follow Keras: `strides=None` means
`pool_size`; 'same' pads so the output has ceil(size/stride) positions, and an average
counts only the cells inside the input (TensorFlow's rule, which Keras 3 follows on
every backend).
"""
import numpy

from .. import kernels
from ..backend import get_array_module
from ..errors import InvalidArgumentError, ShapeError
from .base import Layer, as_pair
from .conv import MaxPooling2D, _check_padding, _spatial_output
from .one_d import Through2D

DATA_FORMATS = (None, "channels_last")


def _check_data_format(layer, data_format):
    if data_format not in DATA_FORMATS:
        raise InvalidArgumentError(
            f"Layer {layer}: only data_format='channels_last' (or None) is supported, got "
            f"{data_format!r}; transpose channels-first data with x.transpose(0, 2, 3, 1).")


def _positive(layer, name, value):
    """An int >= 1 (1-D pool_size/strides)."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"Layer {layer}: {name} must be a positive int, got {value!r}.")
    return value


class AveragePooling2D(Layer):
    """Mean over (ph, pw) windows; with 'same' padding, over the window's cells inside the
    input. A window sum is ph·pw strided slices added up (no im2col copy of the input);
    windows that tile the input exactly are a plain reshape."""

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None,
                 name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        who = f"AveragePooling2D {self.name!r}"
        _check_data_format(who, data_format)
        self.pool_size = as_pair(pool_size, f"{who} pool_size")
        self.strides = as_pair(strides, f"{who} strides") if strides is not None else self.pool_size
        if min(self.pool_size + self.strides) < 1:
            raise InvalidArgumentError(f"{who}: pool_size and strides must be >= 1, got "
                                       f"{pool_size!r}, {strides!r}.")
        self.padding = _check_padding(self.name, padding)

    def build(self, input_shape):
        self.out_hw = _spatial_output(self.name, input_shape, self.pool_size, self.strides,
                                      self.padding)
        super().build(input_shape)
        h, w = self.input_shape[:2]
        self._pads = ((0, 0), (0, 0)) if self.padding == "valid" else tuple(
            kernels.same_padding(size, k, st)
            for size, k, st in zip((h, w), self.pool_size, self.strides))
        self._counts = None  # made on the first call (nothing input-sized is allocated here)

    def compute_output_shape(self, input_shape):
        oh, ow = _spatial_output(self.name, input_shape, self.pool_size, self.strides, self.padding)
        return (oh, ow, input_shape[2])

    def _tiled(self):
        """Windows tile the input exactly (e.g. 2x2, stride 2, even sizes): plain reshapes."""
        (ph, pw), (oh, ow) = self.pool_size, self.out_hw
        return self.strides == self.pool_size and self.input_shape[:2] == (oh * ph, ow * pw)

    def _taps(self):
        """For each window cell (a, b): the strided slices of the padded input it reads."""
        (ph, pw), (sh, sw), (oh, ow) = self.pool_size, self.strides, self.out_hw
        for a in range(ph):
            for b in range(pw):
                yield (slice(None), slice(a, a + sh * (oh - 1) + 1, sh),
                       slice(b, b + sw * (ow - 1) + 1, sw), slice(None))

    def _window_counts(self, like):
        """Cells of each window inside the input, (1, OH, OW, 1), in like's dtype and module:
        per axis min(start + k, size) − max(start, 0); a window is a rectangle."""
        if self._counts is None or self._counts.dtype != like.dtype:
            per_axis = [numpy.minimum(starts + k, size) - numpy.maximum(starts, 0)
                        for size, k, starts in zip(
                            self.input_shape[:2], self.pool_size,
                            (numpy.arange(o) * s - pad[0]
                             for o, s, pad in zip(self.out_hw, self.strides, self._pads)))]
            counts = numpy.outer(*per_axis).reshape((1,) + self.out_hw + (1,))
            self._counts = get_array_module(like).asarray(counts, dtype=like.dtype)
        return self._counts

    def _window_sums(self, x):
        xp = get_array_module(x)
        if self._pads != ((0, 0), (0, 0)):
            x = xp.pad(x, ((0, 0),) + self._pads + ((0, 0),))
        out = xp.zeros((x.shape[0],) + self.out_hw + (x.shape[3],), dtype=x.dtype)
        for tap in self._taps():
            out += x[tap]
        return out

    def forward(self, x, training=True):
        self.ensure_built(x)
        n, _, _, c = x.shape
        (ph, pw), (oh, ow) = self.pool_size, self.out_hw
        if self._tiled():
            return x.reshape(n, oh, ph, ow, pw, c).mean(axis=(2, 4))
        return self._window_sums(x) / self._window_counts(x)

    def backward(self, grad):
        """The adjoint: every cell of a window gets grad / (cells in the window)."""
        xp = get_array_module(grad)
        n, _, _, c = grad.shape
        (ph, pw), (oh, ow) = self.pool_size, self.out_hw
        if self._tiled():
            share = grad[:, :, None, :, None, :] / grad.dtype.type(ph * pw)
            dx = xp.broadcast_to(share, (n, oh, ph, ow, pw, c))
            return dx.reshape((n,) + self.input_shape)  # reshape copies the broadcast
        share = grad / self._window_counts(grad)
        (t, b), (l, r) = self._pads
        h, w = self.input_shape[:2]
        dx = xp.zeros((n, t + h + b, l + w + r, c), dtype=grad.dtype)
        for tap in self._taps():
            dx[tap] += share
        return dx[:, t:t + h, l:l + w, :]

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=list(self.pool_size), strides=list(self.strides), padding=self.padding)
        return config


class _Pooling1D(Through2D):
    """MaxPooling1D/AveragePooling1D: the 2-D layer with windows (1, pool_size)."""

    pool_2d = None

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, name=None,
                 input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        who = f"{type(self).__name__} {self.name!r}"
        _check_data_format(who, data_format)
        self.pool_size = _positive(who, "pool_size", pool_size)
        self.strides = _positive(who, "strides", strides) if strides is not None else self.pool_size
        self.padding = _check_padding(self.name, padding)
        self.inner = self.pool_2d((1, self.pool_size), strides=(1, self.strides),
                                  padding=self.padding, name=self.name)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding)
        return config


class MaxPooling1D(_Pooling1D):
    """Max over windows of `pool_size` steps (default 2) of (N, steps, channels) input."""

    pool_2d = MaxPooling2D

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, name=None,
                 input_shape=None):
        super().__init__(pool_size, strides, padding, data_format, name, input_shape)


class AveragePooling1D(_Pooling1D):
    """Mean over windows of `pool_size` steps of (N, steps, channels) input."""

    pool_2d = AveragePooling2D


class _GlobalPooling(Layer):
    """Reduce every spatial axis of channels-last input: (N, *spatial, C) -> (N, C), or
    (N, 1, ..., 1, C) with keepdims=True."""

    rank = None  # number of spatial axes

    def __init__(self, data_format=None, keepdims=False, name=None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        _check_data_format(f"{type(self).__name__} {self.name!r}", data_format)
        self.keepdims = bool(keepdims)
        self.axes = tuple(range(1, self.rank + 1))

    def build(self, input_shape):
        if len(input_shape) != self.rank + 1:
            spatial = "steps" if self.rank == 1 else "height, width"
            raise ShapeError(
                f"Layer {type(self).__name__} {self.name!r} expects input of shape (batch, "
                f"{spatial}, channels), but received input with shape "
                f"{(None,) + tuple(input_shape)}.")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return (1,) * self.rank + (input_shape[-1],) if self.keepdims else (input_shape[-1],)

    def _out(self, kept):
        return kept if self.keepdims else kept.reshape(kept.shape[0], kept.shape[-1])

    def _kept(self, grad):
        """The output gradient with the reduced axes back as size-1 axes."""
        return grad.reshape((grad.shape[0],) + (1,) * self.rank + (grad.shape[-1],))

    def get_config(self):
        config = super().get_config()
        config["keepdims"] = self.keepdims
        return config


class _GlobalAverage(_GlobalPooling):
    def forward(self, x, training=True, mask=None):
        self.ensure_built(x)
        self._x_shape, self._weights = x.shape, None
        if mask is None:
            return self._out(x.mean(axis=self.axes, keepdims=True))
        # Keras: sum over unmasked steps / their number (mask (N, *spatial), 1 = keep).
        w = mask.astype(x.dtype).reshape(mask.shape + (1,))
        self._weights = w / w.sum(axis=self.axes, keepdims=True)
        return self._out((x * self._weights).sum(axis=self.axes, keepdims=True))

    def backward(self, grad):
        xp = get_array_module(grad)
        g = self._kept(grad)
        if self._weights is not None:
            return g * self._weights  # (N, *spatial, 1) * (N, 1.., C): full shape
        size = 1
        for d in self._x_shape[1:-1]:
            size *= d
        dx = xp.empty(self._x_shape, dtype=grad.dtype)
        dx[...] = g / grad.dtype.type(size)
        return dx


class _GlobalMax(_GlobalPooling):
    """Ties share the gradient equally (TensorFlow's reduce_max gradient, which Keras uses)."""

    def forward(self, x, training=True):
        self.ensure_built(x)
        self._x = x
        self._max = x.max(axis=self.axes, keepdims=True)
        return self._out(self._max)

    def backward(self, grad):
        hit = (self._x == self._max).astype(grad.dtype)
        share = hit / hit.sum(axis=self.axes, keepdims=True)
        self._x = self._max = None
        return self._kept(grad) * share


class GlobalAveragePooling2D(_GlobalAverage):
    """Mean over height and width: (N, H, W, C) -> (N, C)."""
    rank = 2


class GlobalMaxPooling2D(_GlobalMax):
    """Max over height and width: (N, H, W, C) -> (N, C)."""
    rank = 2


class GlobalAveragePooling1D(_GlobalAverage):
    """Mean over steps: (N, L, C) -> (N, C); `forward(x, mask=m)` averages only the steps
    where m (N, L) is true, as Keras does with an Embedding(mask_zero=True) mask."""
    rank = 1


class GlobalMaxPooling1D(_GlobalMax):
    """Max over steps: (N, L, C) -> (N, C)."""
    rank = 1

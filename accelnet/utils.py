"""Small helpers around training: one-hot labels, noisy inputs, splits and plots."""
import math
import os

import numpy as np

from . import backend, fileio
from . import random as _random
from .errors import InvalidArgumentError, InvalidDTypeError, ShapeError


def _numeric(a, name):
    if a.dtype.kind not in "biuf":
        raise InvalidDTypeError(f"{name} must be a numeric array, got dtype {a.dtype}.")


def to_categorical(y, num_classes=None, dtype="float32"):
    """Integer class labels -> one-hot matrix, as in Keras.

    A trailing axis of size 1 is dropped, so (N, 1) and (N,) both give (N, num_classes).
    `num_classes` defaults to max(y) + 1; labels outside [0, num_classes) are an error,
    not silently wrapped. CuPy input gives a CuPy result.
    """
    xp = backend.get_array_module(y)
    y = xp.asarray(y)
    _numeric(y, "to_categorical: y")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise InvalidDTypeError(f"to_categorical: {dtype!r} is not a dtype.") from None
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if y.dtype.kind == "f":
        if y.size and not bool(xp.all(xp.isfinite(y) & (y == xp.round(y)))):
            raise InvalidArgumentError("to_categorical: labels must be integers; y holds "
                                       "non-integer or non-finite values.")
    y = y.astype(np.int64)
    lo, hi = (int(y.min()), int(y.max())) if y.size else (0, -1)
    if num_classes is None:
        if not y.size:
            raise InvalidArgumentError("to_categorical: cannot infer num_classes from an "
                                       "empty y; pass num_classes.")
        num_classes = hi + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise InvalidArgumentError(f"to_categorical: num_classes must be a positive int, "
                                   f"got {num_classes!r}.")
    num_classes = int(num_classes)
    if y.size and (lo < 0 or hi >= num_classes):
        bad = lo if lo < 0 else hi
        raise InvalidArgumentError(f"to_categorical: label {bad} is outside [0, "
                                   f"{num_classes - 1}] for num_classes={num_classes}.")
    out = xp.zeros(y.shape + (num_classes,), dtype=dtype)
    flat = out.reshape(-1, num_classes)
    flat[xp.arange(flat.shape[0]), y.reshape(-1)] = 1
    return out


def add_gaussian_noise(x, scale, seed=None):
    """`x + N(0, scale)` as float32 on the host, an independent draw for every element.

    Every image gets its own noise, and repeated calls differ; `seed` makes a call
    reproducible, otherwise accelnet's host generator is used (so `accelnet.random.seed`
    makes it reproducible too). Values are not clipped.
    """
    x = backend.to_numpy(x)
    _numeric(x, "add_gaussian_noise: x")
    try:
        scale = float(scale)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"add_gaussian_noise: scale must be a number, "
                                   f"got {scale!r}.") from None
    if not math.isfinite(scale) or scale < 0:
        raise InvalidArgumentError(f"add_gaussian_noise: scale must be finite and >= 0, "
                                   f"got {scale}.")
    rng = _random.host_rng() if seed is None else np.random.default_rng(seed)
    noise = rng.standard_normal(x.shape, dtype=np.float32)
    noise *= np.float32(scale)
    noise += x.astype(np.float32, copy=False)
    return noise


def train_test_split(x, y=None, test_size=0.2, shuffle=True, seed=None, random_state=None):
    """Split samples into train and test parts, in scikit-learn's order.

    Returns `x_train, x_test, y_train, y_test` (or `x_train, x_test` without `y`).
    `test_size` is a fraction in (0, 1) (the test part gets ceil(fraction * N)) or a
    sample count; both parts must be non-empty. `seed=None` shuffles with accelnet's
    host generator; `random_state` is scikit-learn's name for `seed`.
    """
    if seed is None:
        seed = random_state
    x = x if backend.is_device_array(x) else np.asarray(x)
    n = len(x)
    if y is not None:
        y = y if backend.is_device_array(y) else np.asarray(y)
        if len(y) != n:
            raise ShapeError(f"train_test_split: x has {n} samples but y has {len(y)}.")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer,
                                                                  np.floating)):
        raise InvalidArgumentError(f"train_test_split: test_size must be a fraction or a "
                                   f"count, got {test_size!r}.")
    if isinstance(test_size, (float, np.floating)):
        if not 0 < test_size < 1:
            raise InvalidArgumentError(f"train_test_split: a fractional test_size must be "
                                       f"in (0, 1), got {test_size}.")
        n_test = math.ceil(test_size * n)
    else:
        n_test = int(test_size)
    if not 0 < n_test < n:
        raise InvalidArgumentError(f"train_test_split: test_size={test_size!r} leaves "
                                   f"{n - n_test} train and {n_test} test samples of {n}; "
                                   f"both must be at least 1.")
    if shuffle:
        rng = _random.host_rng() if seed is None else np.random.default_rng(seed)
        order = rng.permutation(n)
        parts = []
        for a in (x, y):
            if a is not None:
                idx = backend.get_array_module(a).asarray(order)
                parts.append((a[idx[n_test:]], a[idx[:n_test]]))
    else:
        parts = [(a[:n - n_test], a[n - n_test:]) for a in (x, y) if a is not None]
    return tuple(p for pair in parts for p in pair)


def plot_history(history, path, metrics=("loss", "accuracy")):
    """Plot training curves (and their `val_` twins) to a PNG at `path`; returns `path`.

    `history` is a History (with a `.history` dict) or a plain dict of lists. Uses
    matplotlib's Agg canvas directly, so pyplot's global backend and figures are left
    alone; the PNG is written atomically.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError("plot_history needs matplotlib: pip install 'accelnet[plot]'") \
            from None
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict):
        raise InvalidArgumentError(f"plot_history: expected a History or a dict of lists, "
                                   f"got {type(history).__name__}.")
    if isinstance(metrics, str):
        metrics = (metrics,)
    shown = [m for m in metrics if m in logs or f"val_{m}" in logs]
    if not shown:
        raise InvalidArgumentError(f"plot_history: none of the metrics {list(metrics)} is in "
                                   f"the history; it has {sorted(logs) or 'nothing'}.")
    fig = Figure(figsize=(5 * len(shown), 4), layout="tight")
    FigureCanvasAgg(fig)
    for i, metric in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), i + 1)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if key in logs:
                values = [float(backend.to_numpy(v)) for v in logs[key]]
                ax.plot(range(1, len(values) + 1), values, marker="o", markersize=3,
                        label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(metric)
        ax.grid(True, alpha=0.3)
        ax.legend()
    from . import distributed
    if distributed.is_main():  # data-parallel runs: only rank 0 writes files
        with fileio.atomic_write(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    return os.fspath(path)


def set_random_seed(seed):
    """Seed every generator a program may draw from: accelnet's (host and device), NumPy's
    global one and Python's `random` (Keras's keras.utils.set_random_seed)."""
    import random as _python_random
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgumentError(f"set_random_seed: seed must be an integer, got {seed!r}.")
    seed = int(seed)
    _python_random.seed(seed)
    np.random.seed(seed % 2**32)
    _random.seed(seed)


_PAD_SIDES = ("pre", "post")


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Sequences of different lengths -> one (num_samples, maxlen, ...) NumPy array, as
    Keras's pad_sequences: `maxlen` defaults to the longest; longer sequences lose their
    start (`truncating='pre'`) or end ('post'); `value` fills the start ('pre') or end ('post')."""
    for name, side in (("padding", padding), ("truncating", truncating)):
        if side not in _PAD_SIDES:
            raise InvalidArgumentError(f"pad_sequences: {name} must be 'pre' or 'post', "
                                       f"got {side!r}.")
    if not hasattr(sequences, "__len__"):
        raise InvalidArgumentError(f"pad_sequences: sequences must be a list of sequences, got "
                                   f"{type(sequences).__name__}.")
    lengths, sample_shape = [], None
    for i, s in enumerate(sequences):
        if not hasattr(s, "__len__"):
            raise InvalidArgumentError(f"pad_sequences: sequence {i} is not a sequence: {s!r}.")
        lengths.append(len(s))
        if sample_shape is None and len(s):
            sample_shape = np.asarray(s).shape[1:]
    sample_shape = sample_shape or ()
    if maxlen is None:
        maxlen = max(lengths, default=0)
    elif isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
        raise InvalidArgumentError(f"pad_sequences: maxlen must be an integer >= 0 or None, "
                                   f"got {maxlen!r}.")
    is_text = np.dtype(dtype).kind in "USO"
    if isinstance(value, str) and not is_text:
        raise InvalidArgumentError(f"pad_sequences: value {value!r} is a string but dtype "
                                   f"{np.dtype(dtype)} is not; pass dtype=object or a str dtype.")
    out = np.full((len(lengths), int(maxlen)) + tuple(sample_shape), value, dtype=dtype)
    if not maxlen:
        return out
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        kept = np.asarray(s[-maxlen:] if truncating == "pre" else s[:maxlen], dtype=dtype)
        if kept.shape[1:] != tuple(sample_shape):
            raise ShapeError(f"pad_sequences: sequence {i} has elements of shape {kept.shape[1:]}, "
                             f"the first non-empty one {tuple(sample_shape)}.")
        if padding == "post":
            out[i, :len(kept)] = kept
        else:
            out[i, -len(kept):] = kept
    return out

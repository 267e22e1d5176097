"""Checks run once per fit/evaluate/predict call, before any work and off the per-batch path.

Each failure raises an `accelnet.errors` exception naming the argument, the layer and
the expected vs actual value.
"""
import math
import warnings

import numpy

from .backend import get_array_module, get_backend, is_device_array, to_numpy
from .errors import InvalidArgumentError, InvalidDTypeError, ShapeError
from .kernels import _workers


def as_float_input(x, what="x"):
    """Numeric array-like -> float32 array (host or device as given); refuse junk.

    Host arrays go to any backend (fit moves them to the device once). A device array
    given to a model on another backend (a CuPy array into a CPU model) is copied to the
    host once, with a warning, rather than failing deep inside a layer."""
    if is_device_array(x):
        active = get_backend()
        if get_array_module(x) is not active.xp:
            warnings.warn(f"{what} is a device array, but the active accelnet backend is "
                          f"{active.name!r}; copying it to the host once. Pass NumPy arrays, or "
                          f"call accelnet.use('gpu') before building the model.", stacklevel=4)
            x = to_numpy(x)
    else:
        x = numpy.asarray(x)
    if x.dtype.kind not in "biuf":
        raise InvalidDTypeError(
            f"{what} must be a numeric array, but it has dtype {x.dtype} ({x.dtype.kind!r}); "
            f"convert it with numpy.asarray({what}, dtype='float32') after parsing strings/objects.")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ShapeError(f"{what} is empty (shape {x.shape}); there is nothing to train or predict on.")
    return x.astype("float32", copy=False)


def check_finite(x, what="x"):
    """Raise if x holds NaN or inf (one vectorised pass; once per fit)."""
    xp = get_array_module(x)
    # A sum is NaN/inf when some element is, and streams through x without allocating an
    # x-sized boolean mask. In x's own dtype (float32: 12 ms for MNIST's 60,000 x 784 against
    # 21 in float64) it can also overflow to inf from finite values: then the exact check.
    # On the CPU's worker threads one sum per slice (the MLP bench's fit: 12.6 -> 7 ms).
    dtype = x.dtype if x.dtype.kind == "f" else xp.float64
    sums = []

    def part(start, stop):
        with numpy.errstate(over="ignore", invalid="ignore"):  # no warning from the sum itself
            sums.append((x if start is None else x[start:stop]).sum(dtype=dtype))

    if x.ndim and len(x):
        _workers.split_batch(x, len(x), part)
    else:
        part(None, None)
    if all(bool(xp.isfinite(total)) for total in sums):
        return
    bad = ~numpy.isfinite(to_numpy(x))
    if not bad.any():  # the sum overflowed; every value is finite
        return
    first = numpy.argwhere(bad)[0]
    raise InvalidArgumentError(
        f"{what} contains {int(bad.sum())} NaN or inf values (first at index "
        f"{tuple(first.tolist())}); clean or impute them before fit.")


def check_input_shape(model_name, layer, expected, x):
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        raise ShapeError(
            f"Input 0 of layer {layer!r} of model {model_name!r} is incompatible: expected shape "
            f"{(None,) + tuple(expected)}, but received input with shape {(None,) + tuple(x.shape[1:])}.")


def prepare_labels(y, loss_name, output_shape, layer):
    """Labels -> int32 class indices (sparse CE) or float32 targets; range/width checked."""
    if not is_device_array(y):
        y = numpy.asarray(y)
    if y.dtype.kind not in "biuf":
        raise InvalidDTypeError(f"y must be numeric, got dtype {y.dtype}.")
    units = output_shape[-1]
    if loss_name == "sparse_categorical_crossentropy":
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.reshape(-1)
        if y.ndim != 1:
            raise ShapeError(
                f"sparse_categorical_crossentropy expects integer labels of shape (N,), got shape "
                f"{y.shape}; for one-hot labels use loss='categorical_crossentropy'.")
        lo, hi = (int(v) for v in _minmax(y))
        if lo < 0 or hi >= units:
            bad = lo if lo < 0 else hi
            raise InvalidArgumentError(
                f"Label {bad} is out of range for layer {layer!r} with {units} output units: "
                f"sparse labels must be in [0, {units - 1}].")
        return y.astype("int32", copy=False)
    if loss_name == "categorical_crossentropy" and (y.ndim != 2 or y.shape[1] != units):
        raise ShapeError(
            f"categorical_crossentropy expects one-hot labels of shape (N, {units}) to match the "
            f"{units} output units of layer {layer!r}, got shape {y.shape}; for integer labels use "
            f"loss='sparse_categorical_crossentropy' or an.utils.to_categorical(y, {units}).")
    return y.astype("float32", copy=False)


def _minmax(y):
    return float(y.min()), float(y.max())


def check_fit_args(batch_size, epochs, validation_split):
    if not isinstance(batch_size, (int, numpy.integer)) or batch_size <= 0:
        raise InvalidArgumentError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if not isinstance(epochs, (int, numpy.integer)) or epochs < 0:
        raise InvalidArgumentError(f"epochs must be an integer >= 0, got {epochs!r}.")
    if not (isinstance(validation_split, (int, float)) and 0 <= validation_split < 1) or (
            isinstance(validation_split, float) and math.isnan(validation_split)):
        raise InvalidArgumentError(f"validation_split must be in [0, 1), got {validation_split!r}.")

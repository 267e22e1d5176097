"""Out-of-memory errors that say where and what to change.

NumPy's `MemoryError` ("Unable to allocate ...") and CuPy's `OutOfMemoryError` (a
MemoryError subclass) come from deep inside a layer. `out_of_memory_errors(model)` turns
them into an `OutOfMemoryError` naming the layer (the innermost layer method on the
traceback), its input shape, the bytes asked for, and the knobs: the batch size and, for
convolutions, `ACCELNET_CONV_WORKSPACE_MB`. The frames of the failed step are cleared so
the memory they held is free again and the model can go on with a smaller batch.
"""
import math
import re
import traceback

from .errors import OutOfMemoryError


class out_of_memory_errors:
    """Translate a MemoryError raised inside the block (a training step of `model`)."""

    __slots__ = ("model",)

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is None or not issubclass(kind, MemoryError) or issubclass(kind, OutOfMemoryError):
            return False
        error = describe(exc, self.model)
        traceback.clear_frames(exc.__traceback__)  # drop the failed step's arrays
        raise error from None


def describe(exc, model):
    """OutOfMemoryError for `exc`, raised while `model` ran a step."""
    layer, method, shape = _failing_layer(exc.__traceback__, model)
    asked = requested_bytes(exc)
    what = f"{asked:,} bytes ({_human(asked)})" if asked is not None else "an unknown amount"
    if layer is None:
        where = f"Out of memory in model {model.name!r} (outside the layers: loss or optimizer)"
    else:
        where = (f"Out of memory in layer {layer.name!r} ({type(layer).__name__}.{method}) of model "
                 f"{model.name!r}, input shape {shape}")
    hints = ["a smaller batch_size" + (f" (this batch has {shape[0]} samples)" if shape else "")]
    if layer is not None and "Conv" in type(layer).__name__:
        from .layers import conv
        hints.append(f"a lower ACCELNET_CONV_WORKSPACE_MB (now {conv.WORKSPACE_BYTES / 2**20:g}; "
                     f"set it before importing accelnet) so the convolution works in smaller chunks")
    return OutOfMemoryError(f"{where}: {what} asked for. Use " + ", or ".join(hints)
                            + f". The model can go on with a smaller batch. ({type(exc).__name__}: "
                            + f"{exc})"[:200])


def requested_bytes(exc):
    """Bytes the failed allocation asked for: NumPy's error carries shape and dtype, CuPy's
    message says 'allocating N bytes'; None when neither is there."""
    shape, dtype = getattr(exc, "shape", None), getattr(exc, "dtype", None)
    if shape is not None and dtype is not None:
        return math.prod(shape) * dtype.itemsize
    match = re.search(r"([\d,]+) bytes", str(exc))
    return int(match.group(1).replace(",", "")) if match else None


def _failing_layer(tb, model=None):
    """(layer, method name, input shape) of the innermost layer frame on the traceback;
    the model's own frames (a model is a Layer too: its training step) do not count, nor
    a layer's private helpers below its public method (Conv2D._forward under forward)."""
    from .layers import Layer
    found = (None, None, None)
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        helper = found[0] is owner and frame.f_code.co_name.startswith("_")
        if isinstance(owner, Layer) and owner is not model and not helper:
            names = frame.f_code.co_varnames[1:frame.f_code.co_argcount]
            first = frame.f_locals.get(names[0]) if names else None
            found = (owner, frame.f_code.co_name, tuple(getattr(first, "shape", ())) or None)
        tb = tb.tb_next
    return found


def _human(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "bytes" else f"{n} bytes"
        n /= 1024

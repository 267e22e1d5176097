"""Out of memory: an allocation too large for the machine, injected by patching the array
module (NumPy's MemoryError on CPU; a CuPy-style OutOfMemoryError on the strict GPU
stand-in), becomes an `OutOfMemoryError` naming the layer, its input shape, the bytes asked
for and what to change; the model then trains on with a smaller batch."""
import math

import numpy as np
import pytest

import accelnet as an
from accelnet import kernels
from accelnet.errors import AccelnetError, OutOfMemoryError

from gpu_standin import gpu_backend

LIMIT = 4 << 20  # the pretend machine: no single array above 4 MiB


def _numpy_memory_error_type():
    """NumPy's own MemoryError type (private), got from a real impossible allocation."""
    try:
        np.empty(1 << 62, np.uint8)
    except MemoryError as exc:
        return type(exc)
    raise AssertionError("this machine allocated 4 EiB")


ARRAY_MEMORY_ERROR = _numpy_memory_error_type()


def numpy_memory_error(shape, dtype):
    return ARRAY_MEMORY_ERROR(tuple(shape), np.dtype(dtype))


def limited(real, make_error):
    def allocate(shape, dtype=float, *args, **kwargs):
        dims = (shape,) if isinstance(shape, int) else tuple(shape)
        nbytes = math.prod(dims) * np.dtype(dtype).itemsize
        if nbytes > LIMIT:
            raise make_error(dims, dtype, nbytes)
        return real(shape, dtype, *args, **kwargs)
    return allocate


def convnet():
    an.random.seed(0)
    model = an.Sequential([an.layers.Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1)),
                           an.layers.Flatten(), an.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def data(n):
    rng = np.random.default_rng(0)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n)


def check_error_then_smaller_batch(model, x, y):
    before = model.get_weights()
    with pytest.raises(OutOfMemoryError) as info:
        model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    message = str(info.value)
    assert isinstance(info.value, AccelnetError) and isinstance(info.value, MemoryError)
    assert "layer 'conv2d" in message and "Conv2D.forward" in message
    assert f"input shape ({len(x)}, 28, 28, 1)" in message
    asked = len(x) * 26 * 26 * 8 * 4  # the (N, 26, 26, 8) float32 output
    assert f"{asked:,} bytes" in message
    assert "batch_size" in message and "ACCELNET_CONV_WORKSPACE_MB" in message
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)  # the failed step changed nothing
    history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    return message


def test_cpu_memory_error_names_layer_shape_bytes_and_fix(monkeypatch):
    monkeypatch.setattr(np, "empty", limited(np.empty, lambda dims, dtype, n: numpy_memory_error(dims, dtype)))
    model = convnet()
    x, y = data(256)
    message = check_error_then_smaller_batch(model, x, y)
    assert "Unable to allocate" in message  # NumPy's own words are kept at the end


def test_gpu_stand_in_out_of_memory(monkeypatch):
    """The real GpuBackend on the CuPy stand-in, whose `empty` raises CuPy's own
    `cupy.cuda.memory.OutOfMemoryError` above the pretend limit."""
    with gpu_backend() as backend, kernels.implementation("reference"):
        cupy = backend.xp
        real = cupy.__getattr__("empty")
        oom = cupy.cuda.memory.OutOfMemoryError
        monkeypatch.setattr(cupy, "empty", limited(real, lambda dims, dtype, n: oom(n, 0, LIMIT)),
                            raising=False)
        model = convnet()
        x, y = data(256)
        message = check_error_then_smaller_batch(model, x, y)
        assert "OutOfMemoryError" in message and "Out of memory allocating" in message


def test_memory_error_outside_layers_is_still_explained(monkeypatch):
    model = convnet()
    x, y = data(32)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)

    def broken(*a, **k):
        raise MemoryError()
    monkeypatch.setattr(model.optimizer, "apply", broken)
    with pytest.raises(OutOfMemoryError, match="outside the layers.*batch_size"):
        model.train_on_batch(an.backend.get_backend().asarray(x[:4]),
                             an.backend.get_backend().asarray(y[:4]))

"""Every bad input gets a clear accelnet error naming the cause (the README's Errors table).

One row per case: what the user did, the exception class (which also derives from the
matching builtin), and words the message must contain.
"""
import gzip
import struct
import warnings

import numpy as np
import pytest

import accelnet as an
from accelnet import errors, layers


def mlp(compile=True, units=10):
    model = an.Sequential([layers.Dense(8, activation="relu", input_shape=(784,)),
                           layers.Dense(units, activation="softmax")])
    if compile:
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def onehot_model():
    model = mlp(compile=False)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    return model


X = np.zeros((4, 784), np.float32)
Y = np.array([0, 1, 2, 3])


def fit(model=None, x=X, y=Y, **kwargs):
    return (model or mlp()).fit(x, y, verbose=0, **kwargs)


def with_nan():
    x = X.copy()
    x[2, 5] = np.nan
    return fit(x=x)


def bad_idx(tmp_path):
    path = tmp_path / "bad-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">HBB", 1, 8, 3))
    return an.datasets.readers.read_idx(path)


def truncated_idx(tmp_path):
    path = tmp_path / "short-idx1-ubyte"
    path.write_bytes(struct.pack(">HBBI", 0, 8, 1, 100) + bytes(10))
    return an.datasets.readers.read_idx(path)


def bad_csv(tmp_path):
    path = tmp_path / "mnist.csv"
    path.write_text("label,p1,p2\n1,0,0\n2,0\n")
    return an.datasets.readers.read_csv(path)


def wrong_shape_weights(tmp_path):
    path = tmp_path / "w.npz"
    mlp().save_weights(path)
    other = an.Sequential([layers.Dense(9, activation="relu", input_shape=(784,)),
                           layers.Dense(10, activation="softmax")])
    return other.load_weights(path)


def truncated_model(tmp_path):
    path = tmp_path / "m.npz"
    mlp().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return an.models.load_model(path)


def not_accelnet(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.ones(3))
    return an.models.load_model(path)


def newer_version(tmp_path):
    import json
    path = tmp_path / "future.npz"
    header = {"format": "accelnet", "format_version": 99, "kind": "model"}
    np.savez(path, **{"accelnet.json": np.array(json.dumps(header))})
    return an.models.load_model(path)


def nan_loss_terminates():
    model = an.Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=an.optimizers.SGD(1e30), loss="mse")
    x = np.ones((64, 2), np.float32) * 1e20
    model.fit(x, np.ones(64, np.float32), batch_size=8, epochs=3, verbose=0,
              callbacks=[an.callbacks.TerminateOnNaN()])


def bad_backend(monkeypatch):
    monkeypatch.setattr(an.backend, "_active", None)
    monkeypatch.setenv("ACCELNET_BACKEND", "tpu")
    try:
        return an.get_backend()
    finally:
        an.use("cpu")


def gpu_without_cuda():
    """Without CuPy, or with the test suite's CuPy stand-in showing no device; skipped on a
    machine with a real GPU (where the GPU backend rightly starts)."""
    from conftest import real_gpu_available
    from gpu_standin import environment
    if real_gpu_available():
        pytest.skip("a real CUDA GPU is present")
    an.backend._created.pop("gpu", None)
    try:
        with environment(STANDIN_CUPY_DEVICES=0):
            return an.backend.resolve("gpu")
    finally:
        an.backend._created.pop("gpu", None)


CASES = [
    # 1. feature size differs from input_shape
    ("input 785 vs 784", lambda: fit(x=np.zeros((4, 785))), errors.ShapeError, r"expected shape \(None, 784\).*\(None, 785\)"),
    ("predict 785 vs 784", lambda: mlp().predict(np.zeros((2, 785))), errors.ShapeError, "dense"),
    # 2. x and y of different lengths
    ("x/y lengths", lambda: fit(y=Y[:3]), errors.ShapeError, "same number of samples, got 4 and 3"),
    # 3. empty x
    ("empty x", lambda: fit(x=np.zeros((0, 784)), y=Y[:0]), errors.ShapeError, "empty"),
    # 4. label out of range, negative label
    ("label >= classes", lambda: fit(y=np.array([0, 1, 2, 10])), errors.InvalidArgumentError, r"Label 10 .*\[0, 9\]"),
    ("negative label", lambda: fit(y=np.array([0, -1, 2, 3])), errors.InvalidArgumentError, "Label -1"),
    # 5. one-hot width differs from output units
    ("one-hot width", lambda: fit(onehot_model(), y=np.eye(4)), errors.ShapeError, r"\(N, 10\).*\(4, 4\)"),
    # 6. NaN/inf in x
    ("nan in x", with_nan, errors.InvalidArgumentError, r"NaN or inf.*\(2, 5\)"),
    # 7. batch_size, epochs, validation_split
    ("batch_size 0", lambda: fit(batch_size=0), errors.InvalidArgumentError, "batch_size"),
    ("epochs -1", lambda: fit(epochs=-1), errors.InvalidArgumentError, "epochs"),
    ("validation_split 1", lambda: fit(validation_split=1.0), errors.InvalidArgumentError, "validation_split"),
    # 8. unknown names, with the closest suggestion
    ("unknown layer activation", lambda: layers.Dense(3, activation="rellu"), errors.UnknownNameError, "Did you mean 'relu'"),
    ("unknown loss", lambda: mlp(False).compile(loss="categorical_crossentropyy"), errors.UnknownNameError, "categorical_crossentropy"),
    ("unknown optimizer", lambda: mlp(False).compile(optimizer="adma", loss="mse"), errors.UnknownNameError, "adam"),
    ("unknown initializer", lambda: layers.Dense(3, kernel_initializer="he_unifrom").build((2,)), errors.UnknownNameError, "he_uniform"),
    ("unknown layer class", lambda: an.models.model_from_config({"layers": [{"class_name": "Dence", "config": {}}]}), errors.DataFileError, "unknown class 'Dence'"),
    # 9. Conv2D on 2-D input; kernel larger than the (padded) input
    ("conv on 2-D input", lambda: an.Sequential([layers.Conv2D(2, 3, input_shape=(28, 28))]).build(), errors.ShapeError, r"\(batch, height, width, channels\).*\(None, 28, 28\)"),
    ("kernel larger than input", lambda: an.Sequential([layers.Conv2D(2, 5, input_shape=(3, 3, 1))]).build(), errors.ShapeError, "kernel"),
    # 10. fit before compile
    ("fit before compile", lambda: fit(mlp(compile=False)), errors.NotCompiledError, "compile"),
    # 11. backend name; gpu without CUDA
    ("ACCELNET_BACKEND unknown", "bad_backend", ValueError, "valid names: cpu, gpu, auto"),
    ("gpu without CUDA", gpu_without_cuda, errors.BackendError, r"pip install 'accelnet\[gpu"),
    # 12. weights of the wrong shape
    ("load_weights shapes", "wrong_shape_weights", errors.ShapeError, r"dense.*\(784, 8\).*\(784, 9\)|\(784, 9\).*\(784, 8\)"),
    ("set_weights shapes", lambda: mlp().set_weights([np.zeros((3, 3))] * 4), errors.ShapeError, "kernel"),
    # 13. truncated / not accelnet / newer format
    ("truncated model file", "truncated_model", errors.DataFileError, "m.npz"),
    ("not an accelnet file", "not_accelnet", errors.DataFileError, "not an accelnet model file"),
    ("newer format version", "newer_version", errors.DataFileError, "version 99"),
    # 14. IDX bad magic / truncated
    ("IDX bad magic", "bad_idx", errors.DataFileError, "bad-images-idx3-ubyte.gz"),
    ("IDX truncated", "truncated_idx", errors.DataFileError, "short-idx1-ubyte"),
    # 15. CSV with a wrong number of columns
    ("CSV columns", "bad_csv", errors.DataFileError, "mnist.csv"),
    # 16. object / string arrays as x
    ("string x", lambda: fit(x=np.array([["a"] * 784] * 4)), errors.InvalidDTypeError, "numeric"),
    ("object x", lambda: fit(x=np.empty((4, 784), dtype=object)), errors.InvalidDTypeError, "dtype object"),
    # 17. learning rate <= 0 or NaN
    ("lr 0", lambda: an.optimizers.SGD(learning_rate=0), errors.InvalidArgumentError, "learning_rate"),
    ("lr NaN", lambda: an.optimizers.Adam(learning_rate=float("nan")), errors.InvalidArgumentError, "learning_rate"),
    # 18. dropout rate outside [0, 1)
    ("dropout 1.0", lambda: layers.Dropout(1.0), errors.InvalidArgumentError, r"rate must be in \[0.0, 1.0\)"),
    ("dropout -0.1", lambda: layers.Dropout(-0.1), errors.InvalidArgumentError, "rate"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(case, tmp_path, monkeypatch):
    _, action, exc_type, pattern = case
    if isinstance(action, str):
        fn = globals()[action]
        action = (lambda: fn(monkeypatch)) if action == "bad_backend" else (lambda: fn(tmp_path))
    with pytest.raises(exc_type, match=pattern) as info:
        action()
    assert isinstance(info.value, (errors.AccelnetError, ValueError))


def test_errors_derive_from_builtins():
    assert issubclass(errors.ShapeError, ValueError)
    assert issubclass(errors.InvalidDTypeError, TypeError)
    assert issubclass(errors.DataNotFoundError, FileNotFoundError)
    assert issubclass(errors.BackendError, RuntimeError)
    assert issubclass(errors.TrainingError, RuntimeError)


def test_19_nan_loss_stops_and_keeps_the_weights_from_before(capsys):
    model = an.Sequential([layers.Dense(1, input_shape=(2,))])
    model.compile(optimizer=an.optimizers.SGD(0.1), loss="mse")
    x = np.ones((64, 2), np.float32)
    y = np.ones(64, np.float32)
    y[40] = np.inf  # batch 5 (batch_size 8) of the first epoch has an infinite target
    weights = []
    cb = an.callbacks.LambdaCallback(on_batch_end=lambda b, logs: weights.append(model.get_weights()))
    history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0,
                        callbacks=[an.callbacks.TerminateOnNaN(), cb])
    out = capsys.readouterr().out
    assert "Epoch 1, batch 5" in out and "invalid loss" in out
    assert len(weights) == 5  # batches 0-4 ran; batch 5 was not applied
    for kept, before in zip(model.get_weights(), weights[-1]):
        np.testing.assert_array_equal(kept, before)
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert len(history.history["loss"]) == 1


def test_20_device_array_into_cpu_model_is_moved_once_with_a_warning():
    from strict_backend import StrictBackend
    strict = StrictBackend()
    x_dev = strict.asarray(np.zeros((4, 784), np.float32))
    model = mlp()
    with pytest.warns(UserWarning, match="device array.*copying it to the host once"):
        probs = model.predict(x_dev)
    assert probs.shape == (4, 10)


def test_finite_values_whose_float32_sum_overflows_are_not_called_nan():
    """check_finite sums in x's dtype; large finite values can overflow that sum to inf,
    which must fall back to the exact check (passes), while a real inf is still named."""
    from accelnet import validation
    x = np.full((4, 784), 3e37, np.float32)  # the sum is inf in float32, every value finite
    with np.errstate(over="ignore"):
        assert not np.isfinite(x.sum(dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no overflow warning for the user
        validation.check_finite(x)
    x[1, 7] = np.inf
    with pytest.raises(errors.InvalidArgumentError, match=r"NaN or inf.*\(1, 7\)"):
        validation.check_finite(x)


@pytest.mark.parametrize("row", [0, 1499, 2999])
def test_a_large_x_is_checked_in_slices_and_every_slice_counts(row):
    """x of 4 MiB and more is summed per worker thread's slice: a NaN in the first, a middle
    or the last row is found, and a sum that overflows only in one slice warns nothing."""
    from accelnet import validation
    x = np.zeros((3000, 784), np.float32)
    assert x.nbytes >= 4 << 20
    x[row] = 3e37  # that slice's float32 sum overflows; every value finite
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validation.check_finite(x)
    x[row, 5] = np.nan
    with pytest.raises(errors.InvalidArgumentError, match=rf"NaN or inf.*\({row}, 5\)"):
        validation.check_finite(x)

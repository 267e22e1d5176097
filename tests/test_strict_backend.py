"""fit/evaluate/predict on the real GpuBackend over the CuPy stand-in, which refuses
implicit host conversion as CuPy does.

Proves on CPU-only CI that the training loop never hands a device array to NumPy and
reads back from the device about once per epoch, not once per batch.
"""
import numpy as np
import pytest

import accelnet as an
from accelnet import kernels

from gpu_standin import gpu_backend, install

_cupy = install()
StrictArray, reset_syncs, syncs = _cupy.ndarray, _cupy.reset_syncs, _cupy.syncs


@pytest.fixture
def strict():
    with gpu_backend() as backend:
        with kernels.implementation("reference"):
            yield backend


def test_strict_arrays_refuse_numpy_and_count_syncs(strict):
    a = strict.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError):
        a + np.ones(3)  # host array mixed into a device operation
    reset_syncs()
    total = a.sum()
    assert isinstance(total, StrictArray) and total.shape == ()
    assert float(total) == 15.0 and syncs() == 1
    assert strict.to_numpy(a).tolist() == [[0, 1, 2], [3, 4, 5]] and syncs() == 2


def data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].sum(axis=(1, 2, 3)) > 0).astype(np.int64) + 2 * (x[:, 4:].sum(axis=(1, 2, 3)) > 0)
    return x, y


def make_model():
    an.random.seed(0)
    model = an.Sequential([
        an.layers.Conv2D(4, 3, padding="same", activation="relu", input_shape=(8, 8, 1)),
        an.layers.MaxPooling2D(2),
        an.layers.BatchNormalization(),
        an.layers.Flatten(),
        an.layers.Dropout(0.2),
        an.layers.Dense(16, activation="relu", kernel_regularizer=an.regularizers.l2(1e-4)),
        an.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=an.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def fit_syncs(model, x, y, **kwargs):
    reset_syncs()
    model.fit(x, y, verbose=0, **kwargs)
    return syncs()


def test_fit_syncs_once_per_epoch_not_per_batch(strict):
    x, y = data()
    per_call = fit_syncs(make_model(), x, y, batch_size=200, epochs=1)   # 3 batches
    many_batches = fit_syncs(make_model(), x, y, batch_size=20, epochs=1)  # 30 batches
    three_epochs = fit_syncs(make_model(), x, y, batch_size=20, epochs=3)
    assert many_batches == per_call, "host reads grew with the number of batches"
    per_epoch = (three_epochs - many_batches) / 2
    assert 1 <= per_epoch <= 3, f"{per_epoch} host reads per epoch"
    assert per_call <= 10, f"{per_call} host reads in one fit call"


def test_fit_with_validation_learns_and_weights_stay_on_device(strict):
    x, y = data()
    model = make_model()
    history = model.fit(x[:500], y[:500], batch_size=32, epochs=3, verbose=0,
                        validation_data=(x[500:], y[500:]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert all(isinstance(p, StrictArray) for p in model.params.values())


def test_evaluate_and_predict_sync_a_bounded_number_of_times(strict):
    x, y = data()
    model = make_model()
    model.fit(x, y, batch_size=50, epochs=1, verbose=0)
    reset_syncs()
    model.evaluate(x, y, batch_size=10, verbose=0)   # 60 batches
    assert syncs() <= 6
    reset_syncs()
    probs = model.predict(x, batch_size=10)
    assert isinstance(probs, np.ndarray) and probs.shape == (600, 4)
    assert syncs() <= 2
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)


def test_per_batch_callbacks_are_the_only_per_batch_reads(strict):
    x, y = data()
    seen = []
    cb = an.callbacks.LambdaCallback(on_batch_end=lambda b, logs: seen.append(logs["loss"]))
    reset_syncs()
    make_model().fit(x, y, batch_size=60, epochs=1, verbose=0, callbacks=[cb])
    assert len(seen) == 10 and all(isinstance(v, float) for v in seen)

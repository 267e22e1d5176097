"""The same training script on `cpu` and on the GPU backend (the CuPy stand-in here; real
CuPy under the `gpu` marker) ends with the same weights: the GPU path computes the same
math, draws the same dropout masks (counter-based) and the same initial weights (host)."""
import os

import numpy as np
import pytest

import accelnet as an

from conftest import real_gpu_available
from gpu_standin import gpu_backend

pytestmark = pytest.mark.filterwarnings("ignore:accelnet. numba-cuda cannot")

OPTIMIZERS = ["sgd", "adam", "rmsprop", "adagrad", "adadelta"]
# Under the CUDA simulator (tests/test_cuda_simulator.py) the GPU side runs the numba-cuda
# kernels; the simulator is slow, so there one optimizer per model.
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
GPU_KERNELS = "numba" if SIM else None


def _layers(kind):
    if kind == "mlp-dropout":
        return [an.layers.Dense(32, activation="relu", input_shape=(8, 8, 1)),
                an.layers.Flatten(), an.layers.Dropout(0.3),
                an.layers.Dense(16, activation="relu"), an.layers.Dropout(0.2),
                an.layers.Dense(4, activation="softmax")]
    if kind == "convnet":
        return [an.layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
                an.layers.Conv2D(6, 3, padding="same", activation="relu"),
                an.layers.MaxPooling2D(2), an.layers.Dropout(0.25), an.layers.Flatten(),
                an.layers.Dense(4, activation="softmax")]
    # no bias before BatchNormalization: BN cancels it, its gradient is rounding noise that
    # Adam would scale up to full-size steps (as in Keras, users leave it out)
    return [an.layers.Conv2D(4, 3, padding="same", use_bias=False, input_shape=(8, 8, 1)),
            an.layers.BatchNormalization(), an.layers.Activation("relu"), an.layers.Flatten(),
            an.layers.Dense(8, use_bias=False), an.layers.BatchNormalization(),
            an.layers.Activation("tanh"),
            an.layers.Dense(4, activation="softmax")]


def _script(kind, optimizer):
    """A user's training script: seed, build, compile, fit 2 epochs, read the weights."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 8, 8, 1)).astype(np.float32)
    y = (x[:, :4].sum(axis=(1, 2, 3)) > 0).astype(np.int64) + 2 * (x[:, 4:].sum(axis=(1, 2, 3)) > 0)
    an.random.seed(3)
    model = an.Sequential(_layers(kind))
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, validation_split=0.25)
    return model.get_weights()


def _run_both(kind, optimizer, gpu):
    cpu = _script(kind, optimizer)  # the CPU's default kernels (Numba where measured faster)
    with gpu(), an.kernels.implementation(GPU_KERNELS):
        device = _script(kind, optimizer)
    assert len(cpu) == len(device)
    for a, b in zip(cpu, device):
        assert isinstance(b, np.ndarray)
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["mlp-dropout", "convnet", "batchnorm"])
@pytest.mark.parametrize("optimizer", ["adam"] if SIM else OPTIMIZERS)
def test_cpu_and_standin_gpu_train_to_the_same_weights(kind, optimizer):
    _run_both(kind, optimizer, gpu_backend)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["mlp-dropout", "convnet", "batchnorm"])
def test_cpu_and_real_gpu_train_to_the_same_weights(kind):
    if not real_gpu_available():
        pytest.skip("needs a CUDA GPU with CuPy")
    import contextlib

    @contextlib.contextmanager
    def real_gpu():
        previous = an.get_backend()
        try:
            yield an.use("gpu")
        finally:
            an.use(previous)
    _run_both(kind, "adam", real_gpu)

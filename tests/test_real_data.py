"""Training on real Fashion-MNIST (Debian's dataset-fashion-mnist, installed by .ci/run)."""
import os

import numpy as np
import pytest

import accelnet as an

DEBIAN = "/usr/share/datasets/fashion-mnist"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.path.exists(os.path.join(DEBIAN, "t10k-labels-idx1-ubyte.gz")),
                                 reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")]


@pytest.fixture(scope="module")
def fashion():
    (x, y), (xt, yt) = an.datasets.fashion_mnist.load_data()
    return (x / np.float32(255), y), (xt / np.float32(255), yt)


def test_dense_128_128_adam_reaches_085_in_3_epochs(fashion):
    (x, y), (xt, yt) = fashion
    an.random.seed(1)
    model = an.Sequential([an.layers.Flatten(input_shape=(28, 28)),
                           an.layers.Dense(128, activation="relu"),
                           an.layers.Dense(128, activation="relu"),
                           an.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=an.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(x, y, batch_size=128, epochs=3, verbose=0)
    loss, acc = model.evaluate(xt, yt, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert acc >= 0.85, f"test accuracy {acc:.4f}"


def test_small_cnn_learns_on_10k_images_in_one_epoch(fashion):
    (x, y), (xt, yt) = fashion
    an.random.seed(2)
    model = an.Sequential([an.layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
                           an.layers.MaxPooling2D((2, 2)),
                           an.layers.Flatten(),
                           an.layers.Dense(128, activation="relu"),
                           an.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:10000, ..., None], y[:10000], batch_size=32, epochs=1, verbose=0)
    loss, acc = model.evaluate(xt[:5000, ..., None], yt[:5000], verbose=0)
    assert acc >= 0.80, f"test accuracy {acc:.4f}"

"""accelnet.utils: one-hot labels, Gaussian noise, train/test split, history plots."""
import os
import sys

import numpy as np
import pytest

import accelnet.random
from accelnet import utils
from accelnet.errors import InvalidArgumentError, InvalidDTypeError, ShapeError


# ---------------------------------------------------------------- to_categorical
def test_to_categorical_like_keras():
    out = utils.to_categorical([0, 2, 1, 2])
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, np.eye(3, dtype=np.float32)[[0, 2, 1, 2]])
    assert utils.to_categorical(np.array([[1], [0]]), 4).shape == (2, 4)  # (N, 1) squeezed
    assert utils.to_categorical(np.array([[1, 0], [2, 2]]), 3).shape == (2, 2, 3)
    assert utils.to_categorical(np.uint8(3), 5).tolist() == [0, 0, 0, 1, 0]
    assert utils.to_categorical([1.0, 0.0], dtype="int32").dtype == np.int32
    assert utils.to_categorical(np.array([], np.int64), 3).shape == (0, 3)


@pytest.mark.parametrize("y, n", [([0, 3], 3), ([-1, 0], None), ([0, 1], 0)])
def test_to_categorical_out_of_range(y, n):
    with pytest.raises(InvalidArgumentError):
        utils.to_categorical(y, n)


def test_to_categorical_bad_inputs():
    with pytest.raises(InvalidArgumentError, match="integers"):
        utils.to_categorical([0.5, 1])
    with pytest.raises(InvalidArgumentError, match="empty"):
        utils.to_categorical([])
    with pytest.raises(InvalidDTypeError):
        utils.to_categorical(np.array(["a", "b"]))
    with pytest.raises(InvalidDTypeError):
        utils.to_categorical([0, 1], dtype="notadtype")


# ---------------------------------------------------------------- add_gaussian_noise
def test_noise_float32_shape_and_stats():
    x = np.full((200, 8, 8), 0.5, dtype=np.float32)
    out = utils.add_gaussian_noise(x, 0.1, seed=1)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert abs(out.mean() - 0.5) < 0.01 and abs(out.std() - 0.1) < 0.01
    assert not np.array_equal(out[0], out[1])  # a different draw for every image
    np.testing.assert_array_equal(x, 0.5)  # input untouched


def test_noise_seeding():
    x = np.zeros((4, 3), np.uint8)
    np.testing.assert_array_equal(utils.add_gaussian_noise(x, 1, seed=7),
                                  utils.add_gaussian_noise(x, 1, seed=7))
    accelnet.random.seed(3)
    a = utils.add_gaussian_noise(x, 1)
    b = utils.add_gaussian_noise(x, 1)
    accelnet.random.seed(3)
    np.testing.assert_array_equal(a, utils.add_gaussian_noise(x, 1))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(utils.add_gaussian_noise(x + 5, 0), 5)


@pytest.mark.parametrize("scale", [-1, float("nan"), float("inf"), "big"])
def test_noise_bad_scale(scale):
    with pytest.raises(InvalidArgumentError):
        utils.add_gaussian_noise(np.zeros(3), scale)


def test_noise_bad_dtype():
    with pytest.raises(InvalidDTypeError):
        utils.add_gaussian_noise(np.array(["a"]), 1)


# ---------------------------------------------------------------- train_test_split
def test_split_sizes_pairs_and_coverage():
    x = np.arange(10) * 10
    y = np.arange(10)
    x_tr, x_te, y_tr, y_te = utils.train_test_split(x, y, test_size=0.25, seed=0)
    assert len(x_te) == 3 and len(x_tr) == 7  # ceil(0.25 * 10) test samples
    np.testing.assert_array_equal(x_tr, y_tr * 10)
    np.testing.assert_array_equal(x_te, y_te * 10)
    assert sorted(np.concatenate([y_tr, y_te]).tolist()) == list(range(10))
    again = utils.train_test_split(x, y, test_size=0.25, seed=0)
    np.testing.assert_array_equal(again[1], x_te)


def test_split_no_shuffle_int_size_and_no_y():
    x_tr, x_te = utils.train_test_split(np.arange(5), test_size=2, shuffle=False)
    assert x_tr.tolist() == [0, 1, 2] and x_te.tolist() == [3, 4]
    x_tr, x_te, y_tr, y_te = utils.train_test_split([[1], [2], [3]], [1, 2, 3], test_size=1)
    assert x_tr.shape == (2, 1) and y_te.shape == (1,)


@pytest.mark.parametrize("size", [0, 0.0, 1.0, 5, 10, -0.1, True, "0.2"])
def test_split_bad_test_size(size):
    with pytest.raises(InvalidArgumentError):
        utils.train_test_split(np.arange(5), np.arange(5), test_size=size)


def test_split_length_mismatch():
    with pytest.raises(ShapeError, match="4"):
        utils.train_test_split(np.arange(5), np.arange(4))


# ---------------------------------------------------------------- plot_history
class FakeHistory:
    def __init__(self, history):
        self.history = history


def test_plot_history_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image
    import matplotlib
    backend = matplotlib.get_backend()
    figs = sys.modules["matplotlib.pyplot"].get_fignums() if "matplotlib.pyplot" in \
        sys.modules else None
    hist = {"loss": [1.0, 0.5, 0.3], "val_loss": [1.1, 0.7, 0.6],
            "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.4, 0.7, np.float32(0.8)]}
    for i, h in enumerate((hist, FakeHistory(hist), {"loss": [2.0, 1.0]})):
        path = tmp_path / "plots" / f"h{i}.png"
        assert utils.plot_history(h, path) == str(path)
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size[0] > 100
    assert sorted(os.listdir(tmp_path / "plots")) == ["h0.png", "h1.png", "h2.png"]
    assert matplotlib.get_backend() == backend
    if figs is not None:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == figs


def test_plot_history_bad_input(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(InvalidArgumentError, match="loss"):
        utils.plot_history({"mae": [1]}, tmp_path / "x.png")
    with pytest.raises(InvalidArgumentError):
        utils.plot_history([1, 2], tmp_path / "x.png")
    assert not os.listdir(tmp_path)


def test_plot_history_without_matplotlib(tmp_path, monkeypatch):
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg",
                "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(ImportError, match=r"pip install 'accelnet\[plot\]'"):
        utils.plot_history({"loss": [1]}, tmp_path / "x.png")


def test_train_test_split_accepts_sklearn_random_state():
    from accelnet.utils import train_test_split
    x = np.arange(20)
    a = train_test_split(x, test_size=0.25, random_state=3)
    b = train_test_split(x, test_size=0.25, seed=3)
    assert all((p == q).all() for p, q in zip(a, b))

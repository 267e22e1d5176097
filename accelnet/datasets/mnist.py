"""MNIST handwritten digits: 60,000 + 10,000 28x28 grayscale images of digits 0-9.

`load_data()` returns uint8 arrays exactly like `keras.datasets.mnist.load_data()`.
In each search root (`$ACCELNET_DATA`, `~/.accelnet/datasets`, `~/.keras/datasets`) it
looks for a Keras-style `mnist.npz`, then `mnist/mnist.npz`, then the four IDX files in
`mnist/`; otherwise it downloads Keras's `mnist.npz` and checks its SHA-256.
"""
import os

from ..errors import DataNotFoundError
from . import _download, _idx
from .readers import read_npz

SUBDIR = "mnist"
URLS = ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",)
# SHA-256 Keras itself pins for this file (keras/datasets/mnist.py, `file_hash=`),
# and its size in bytes.
FILES = {"mnist.npz": ("731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
                       11490434)}


def _load_npz(path):
    (x_train, y_train), (x_test, y_test) = read_npz(path)
    _idx.check_split(x_train, y_train, f"{path}:x_train", f"{path}:y_train")
    _idx.check_split(x_test, y_test, f"{path}:x_test", f"{path}:y_test")
    return (x_train, y_train), (x_test, y_test)


def _load_dir(folder):
    """Data from `folder` (mnist.npz or the IDX files), or None if neither is there."""
    npz = os.path.join(folder, "mnist.npz")
    if os.path.isfile(npz):
        return _load_npz(npz)
    paths = _idx.find(folder)
    return _idx.load(paths) if paths else None


def load_data(path=None):
    """MNIST as `(x_train, y_train), (x_test, y_test)`, uint8, like Keras.

    `path`: a `mnist.npz` file, or a folder holding `mnist.npz` or the four IDX files;
    a `path` that does not exist is where `mnist.npz` is downloaded to. Without it the
    search roots are tried, then a download into `$ACCELNET_DATA` or `~/.accelnet/datasets`.
    """
    if path is not None:
        path = os.path.expanduser(os.fspath(path))
        if os.path.isdir(path):
            data = _load_dir(path)
            if data is None:
                raise DataNotFoundError(
                    f"MNIST not found in {path!r}: expected mnist.npz or the IDX files "
                    f"{', '.join(_idx.GZ_NAMES)}.")
            return data
        if not os.path.exists(path):
            if not os.path.basename(path):  # "new_folder/": download mnist.npz into it
                path = os.path.join(path, "mnist.npz")
            _download.fetch({os.path.basename(path): FILES["mnist.npz"]}, URLS,
                            os.path.dirname(os.path.abspath(path)), "MNIST",
                            f"save it as {path!r}")
        return _load_npz(path)
    for root in _download.search_roots():
        if os.path.isfile(os.path.join(root, "mnist.npz")):  # Keras's layout
            return _load_npz(os.path.join(root, "mnist.npz"))
        data = _load_dir(os.path.join(root, SUBDIR))  # not root: Fashion's IDX names clash
        if data is not None:
            return data
    dest = os.path.join(_download.download_root(), SUBDIR)
    roots = _download.search_roots()[:2]
    where = ("put it in " + " or ".join(repr(r) for r in roots)
             + f" (or put the IDX files {', '.join(_idx.GZ_NAMES)} in "
             f"{os.path.join(roots[0], SUBDIR)!r})")
    _download.fetch(FILES, URLS, dest, "MNIST", where)
    return _load_npz(os.path.join(dest, "mnist.npz"))

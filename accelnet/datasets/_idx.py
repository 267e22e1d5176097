"""Find and load the four MNIST-layout IDX files (shared by MNIST and Fashion-MNIST)."""
import os

import numpy as np

from ..errors import DataFileError
from .readers import read_idx

# (images, labels) for train then test, without the optional ".gz".
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
GZ_NAMES = tuple(s + ".gz" for s in STEMS)


def find(folder):
    """Paths of the four IDX files in `folder` (.gz or raw), or None if any is missing."""
    paths = []
    for stem in STEMS:
        for name in (stem + ".gz", stem):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                paths.append(path)
                break
        else:
            return None
    return paths


def check_split(x, y, x_name, y_name, image_shape=(28, 28)):
    """Keras's contract: x uint8 (N, 28, 28), y uint8 (N,)."""
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != image_shape:
        raise DataFileError(f"{x_name!r} holds {x.dtype} images of shape {x.shape}, expected "
                            f"uint8 of shape (N, {image_shape[0]}, {image_shape[1]}).")
    if y.dtype != np.uint8 or y.ndim != 1 or len(y) != len(x):
        raise DataFileError(f"{y_name!r} holds {y.dtype} labels of shape {y.shape}, expected "
                            f"uint8 of shape ({len(x)},) to match {x_name!r}.")


def load(paths):
    """Load the four IDX files -> `(x_train, y_train), (x_test, y_test)`, checked."""
    arrays = [read_idx(p, ndim=3 if i % 2 == 0 else 1) for i, p in enumerate(paths)]
    check_split(arrays[0], arrays[1], paths[0], paths[1])
    check_split(arrays[2], arrays[3], paths[2], paths[3])
    return (arrays[0], arrays[1]), (arrays[2], arrays[3])

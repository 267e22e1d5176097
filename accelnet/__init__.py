"""accelnet: a Keras-style deep-learning library on NumPy (CPU) or CuPy (GPU).

Layers, losses and optimizers are written once against the array backend in
`accelnet.backend`; hot spots run as Numba kernels from `accelnet.kernels`.

    import accelnet as an
    model = an.Sequential([an.layers.Dense(10, activation="softmax", input_shape=(784,))])
"""
import os as _os

from ._source_tree import ensure_kernels_importable as _ensure_kernels

_ensure_kernels(__name__, _os.path.dirname(__file__))

from . import errors, random
from .backend import get_backend, use
from .errors import AccelnetError, BackendError
from . import (activations, callbacks, datasets, distributed, initializers, kernels, layers, losses,
               metrics, models, optimizers, regularizers, utils)
from . import backend, config, ops
from .layers import Input
from .models import Model, Sequential, load_model

__version__ = "0.1.0"

__all__ = ["AccelnetError", "BackendError", "Input", "Model", "Sequential", "activations", "backend",
           "callbacks", "config", "datasets", "distributed", "metrics", "ops",
           "errors", "get_backend", "initializers", "kernels", "layers", "load_model", "losses",
           "models", "optimizers", "random", "regularizers", "use", "utils"]

"""accelnet: a Keras-style deep-learning library on NumPy (CPU) or CuPy (GPU).

Layers, losses and optimizers are written once against the array backend in
`accelnet.backend`; hot spots run as Numba kernels from `accelnet.kernels`.
"""
from . import errors, random
from .backend import get_backend, use
from .errors import AccelnetError, BackendError

__version__ = "0.1.0"

__all__ = ["AccelnetError", "BackendError", "errors", "get_backend", "random", "use"]

"""Seeding for every source of randomness accelnet uses.

`seed(n)` seeds the host generator (weight initialisation and shuffling are drawn on the
host, so the same seed gives the same initial weights on CPU and GPU) and every
backend's device generator (dropout masks, noise).
"""
import numpy

from . import backend as _backend

_host = numpy.random.default_rng()


def seed(n):
    """Seed accelnet's host generator and every backend's device generator."""
    global _host
    from . import distributed  # data-parallel ranks draw different dropout masks
    _host = numpy.random.default_rng(n)
    _backend.seed(distributed.device_seed(n))


def host_rng():
    """The host NumPy Generator (initialisers, shuffling)."""
    return _host


def device_rng():
    """The active backend's generator (dropout masks, noise on the device)."""
    return _backend.get_backend().rng


def get_state():
    """JSON-able state of the host generator (for BackupAndRestore)."""
    return _host.bit_generator.state


def set_state(state):
    _host.bit_generator.state = state

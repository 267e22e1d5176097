"""cupy.random of the stand-in: `default_rng` gives a generator bound to the current device
whose `bit_generator.state` is a method (CuPy cannot capture cuRAND's state, cupy#5430).
Its stream is NumPy's PCG64 on a seed mixed with a constant, so it never equals the CPU's
generator for the same seed (as a real GPU's XORWOW would not)."""
import numpy

from .. import _wrap, cuda


class _BitGenerator:
    def __init__(self, seed):
        self._seed = seed

    def state(self):
        """A method, as in CuPy (a pointer to cuRAND's state there)."""
        return id(self)


class Generator:
    def __init__(self, seed=None):
        mixed = None if seed is None else numpy.random.SeedSequence([0x5EED, int(seed)])
        self._g = numpy.random.default_rng(mixed)
        self._device = cuda.Device().id
        self.bit_generator = _BitGenerator(seed)

    def _check_device(self):
        if cuda.Device().id != self._device:
            raise ValueError("This Generator state is allocated in a different device")

    def __getattr__(self, name):
        attr = getattr(self._g, name)

        def draw(*args, **kwargs):
            self._check_device()
            return _wrap(attr(*args, **kwargs))
        return draw


def default_rng(seed=None):
    return Generator(seed)

"""Weight initialisers with Keras's definitions, drawn on the host.

Drawing on the host from `accelnet.random.host_rng()` (or a per-initialiser `seed`)
gives the same initial weights on CPU and GPU for the same seed; the layer moves
the result to the active backend once.
"""
import math

import numpy

from . import random as an_random
from . import registry
from .errors import InvalidArgumentError

# stddev of a unit normal truncated at ±2σ (Keras's VarianceScaling correction)
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape):
    """(fan_in, fan_out) as Keras computes them: Dense (in, out); Conv (kh, kw, in, out)."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Callable (shape, dtype) -> NumPy array."""

    def __init__(self, seed=None):
        self.seed = seed

    def rng(self):
        return an_random.host_rng() if self.seed is None else numpy.random.default_rng(self.seed)

    def __call__(self, shape, dtype=numpy.float32):
        return numpy.asarray(self.sample(tuple(int(d) for d in shape)), dtype=dtype)

    def sample(self, shape):
        raise NotImplementedError

    def get_config(self):
        return {"seed": self.seed} if self.seed is not None else {}


class Zeros(Initializer):
    def sample(self, shape):
        return numpy.zeros(shape)


class Ones(Initializer):
    def sample(self, shape):
        return numpy.ones(shape)


class Constant(Initializer):
    def __init__(self, value=0.0):
        super().__init__()
        self.value = float(value)

    def sample(self, shape):
        return numpy.full(shape, self.value)

    def get_config(self):
        return {"value": self.value}


class RandomUniform(Initializer):
    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        if not minval < maxval:
            raise InvalidArgumentError(f"RandomUniform needs minval < maxval, got {minval} and {maxval}.")
        self.minval, self.maxval = float(minval), float(maxval)

    def sample(self, shape):
        return self.rng().uniform(self.minval, self.maxval, shape)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, **super().get_config()}


class RandomNormal(Initializer):
    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        if not stddev >= 0:
            raise InvalidArgumentError(f"{type(self).__name__} needs stddev >= 0, got {stddev}.")
        self.mean, self.stddev = float(mean), float(stddev)

    def sample(self, shape):
        return self.rng().normal(self.mean, self.stddev, shape)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, **super().get_config()}


def truncated_normal_sample(rng, mean, stddev, shape):
    """Normal draws, redrawn until within two standard deviations of the mean."""
    values = rng.standard_normal(shape)
    bad = numpy.abs(values) > 2.0
    while bad.any():
        values[bad] = rng.standard_normal(int(bad.sum()))
        bad = numpy.abs(values) > 2.0
    return mean + stddev * values


class TruncatedNormal(RandomNormal):
    def sample(self, shape):
        return truncated_normal_sample(self.rng(), self.mean, self.stddev, shape)


class VarianceScaling(Initializer):
    """Keras's VarianceScaling: variance scale/n, n from fan_in, fan_out or their mean."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise InvalidArgumentError(f"VarianceScaling mode must be fan_in, fan_out or fan_avg, got {mode!r}.")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise InvalidArgumentError(f"VarianceScaling distribution {distribution!r} is unknown.")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def sample(self, shape):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return self.rng().uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return self.rng().normal(0.0, math.sqrt(variance), shape)
        return truncated_normal_sample(self.rng(), 0.0, math.sqrt(variance) / _TRUNCATED_STD, shape)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                **super().get_config()}


def _variant(name, scale, mode, distribution):
    def __init__(self, seed=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed)

    def get_config(self):
        return Initializer.get_config(self)

    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": f"Keras's {name}."})


GlorotUniform = _variant("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _variant("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _variant("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _variant("HeNormal", 2.0, "fan_in", "truncated_normal")
LecunUniform = _variant("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _variant("LecunNormal", 1.0, "fan_in", "truncated_normal")

INITIALIZERS = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "random_uniform": RandomUniform, "random_normal": RandomNormal,
    "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "glorot_uniform": GlorotUniform, "glorot_normal": GlorotNormal,
    "he_uniform": HeUniform, "he_normal": HeNormal,
    "lecun_uniform": LecunUniform, "lecun_normal": LecunNormal,
    "uniform": RandomUniform, "normal": RandomNormal,  # Keras 3's short names (Embedding's default)
}
_CLASSES = {cls.__name__: cls for cls in INITIALIZERS.values()}

# Keras's lower-case function-style aliases: an.initializers.constant(0.1), truncated_normal(stddev=0.1)
zeros, ones, constant = Zeros, Ones, Constant
random_uniform, random_normal, truncated_normal = RandomUniform, RandomNormal, TruncatedNormal
glorot_uniform, glorot_normal, he_uniform, he_normal = GlorotUniform, GlorotNormal, HeUniform, HeNormal


serialize = registry.serialize


def get(identifier):
    """A name, a {"class_name", "config"} dict, an Initializer or a callable -> callable."""
    init = registry.resolve("initializer", identifier, Initializer, INITIALIZERS, _CLASSES)
    if init is not None:
        return init
    if callable(identifier):
        return identifier
    raise InvalidArgumentError(f"Cannot interpret {identifier!r} as an initializer.")

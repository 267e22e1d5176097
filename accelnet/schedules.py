"""Learning-rate schedules with Keras 3's formulas, argument names and configs.

A schedule maps the optimizer's step count (`iterations`, the number of updates done
before this one) to a learning rate. The optimizer evaluates it once per step on the
host, in float64, from its host-side counter: no device array and no host sync is
involved. Scalar steps give Python floats; NumPy arrays of steps (for plotting) give
arrays.

Reachable as `accelnet.optimizers.schedules`, like `keras.optimizers.schedules`. A
subclass of `LearningRateSchedule` defined in the program is registered under its class
name, so a saved optimizer that uses it loads back (Keras would need `custom_objects`).
"""
import math
import numbers

import numpy

from .errors import InvalidArgumentError, unknown_name

_SCHEDULES = {}


class LearningRateSchedule:
    """Base class: override `__call__(step)` (and `get_config()` to make it saveable)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        known = _SCHEDULES.get(cls.__name__)
        if known is None or known.__module__ != __name__:  # a user class never hides a built-in
            _SCHEDULES[cls.__name__] = cls

    def __call__(self, step):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  f"`__call__(self, step)`.")

    def get_config(self):
        raise NotImplementedError(f"Learning rate schedule '{type(self).__name__}' must override "
                                  f"`get_config()` in order to be serializable.")

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        try:
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        except NotImplementedError:
            args = ""
        return f"{type(self).__name__}({args})"


# -- argument checks ------------------------------------------------------------------
def _number(cls, name, value, low=-math.inf, low_open=False, high=math.inf):
    """A finite real in [low, high] (or (low, high]) as a Python int or float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgumentError(f"{cls}: {name} must be a number, got {value!r}.")
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise InvalidArgumentError(f"{cls}: {name} must be a finite number in "
                                   f"{bracket}{low}, {high}], got {value!r}.")
    return value


def _steps(cls, name, value):
    return _number(cls, name, value, 0, low_open=True)


def _result(value):
    value = numpy.asarray(value, dtype=numpy.float64)
    return float(value) if value.ndim == 0 else value


def _step(step):
    return numpy.asarray(step, dtype=numpy.float64)


# -- the schedules ----------------------------------------------------------------------
class _StaircaseDecay(LearningRateSchedule):
    """Shared by ExponentialDecay and InverseTimeDecay: p = step / decay_steps (floored when
    `staircase`), rate = `_decay(p)`."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name=None):
        cls = type(self).__name__
        self.initial_learning_rate = _number(cls, "initial_learning_rate", initial_learning_rate, 0)
        self.decay_steps = _steps(cls, "decay_steps", decay_steps)
        self.decay_rate = _number(cls, "decay_rate", decay_rate, 0)
        self.staircase = bool(staircase)
        self.name = name or cls

    def __call__(self, step):
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = numpy.floor(p)
        return _result(self._decay(p))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_StaircaseDecay):
    """initial_learning_rate · decay_rate ^ (step / decay_steps), the exponent floored
    when `staircase` (the rate drops by steps every `decay_steps`)."""

    def _decay(self, p):
        return self.initial_learning_rate * self.decay_rate ** p


class InverseTimeDecay(_StaircaseDecay):
    """initial_learning_rate / (1 + decay_rate · step / decay_steps), the quotient
    floored when `staircase`."""

    def _decay(self, p):
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)


class PiecewiseConstantDecay(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while boundaries[i-1] < step <=
    boundaries[i], values[-1] after the last boundary."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        cls = type(self).__name__
        if not isinstance(boundaries, (list, tuple)) or not isinstance(values, (list, tuple)):
            raise InvalidArgumentError(f"{cls}: boundaries and values must be lists, got "
                                       f"boundaries={boundaries!r}, values={values!r}.")
        if len(boundaries) != len(values) - 1 or not boundaries:
            raise InvalidArgumentError(
                f"{cls}: the length of boundaries should be 1 less than the length of values "
                f"(and at least 1). Received: boundaries={list(boundaries)} of length "
                f"{len(boundaries)}, and values={list(values)} of length {len(values)}.")
        self.boundaries = [_number(cls, f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
        self.values = [_number(cls, f"values[{i}]", v, 0) for i, v in enumerate(values)]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise InvalidArgumentError(f"{cls}: boundaries must be strictly increasing, got "
                                       f"{self.boundaries}.")
        self.name = name

    def __call__(self, step):
        # The number of boundaries strictly below `step` is the index of its value.
        index = numpy.searchsorted(self.boundaries, _step(step), side="left")
        return _result(numpy.asarray(self.values, dtype=numpy.float64)[index])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """(initial − end) · (1 − step / decay_steps) ^ power + end, with step held at
    decay_steps afterwards; with `cycle`, decay_steps grows to the next multiple of
    itself instead."""

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        cls = type(self).__name__
        self.initial_learning_rate = _number(cls, "initial_learning_rate", initial_learning_rate, 0)
        self.decay_steps = _steps(cls, "decay_steps", decay_steps)
        self.end_learning_rate = _number(cls, "end_learning_rate", end_learning_rate, 0)
        self.power = _number(cls, "power", power, 0, low_open=True)
        self.cycle = bool(cycle)
        self.name = name

    def __call__(self, step):
        step = _step(step)
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps = decay_steps * numpy.where(step == 0, 1.0, numpy.ceil(step / decay_steps))
        else:
            step = numpy.minimum(step, decay_steps)
        p = step / decay_steps
        return _result((self.initial_learning_rate - self.end_learning_rate) * (1.0 - p) ** self.power
                       + self.end_learning_rate)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "end_learning_rate": self.end_learning_rate, "power": self.power,
                "cycle": self.cycle, "name": self.name}


class CosineDecay(LearningRateSchedule):
    """Cosine from the rate to alpha·rate over decay_steps (SGDR without restarts).

    Without `warmup_target`: initial · ((1 − alpha) · ½(1 + cos(π·min(step, decay_steps)/
    decay_steps)) + alpha). With it: a linear ramp from initial_learning_rate to
    warmup_target over warmup_steps, then the cosine from warmup_target.
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        cls = type(self).__name__
        self.initial_learning_rate = _number(cls, "initial_learning_rate", initial_learning_rate, 0)
        self.decay_steps = _steps(cls, "decay_steps", decay_steps)
        self.alpha = _number(cls, "alpha", alpha, 0, high=1)
        self.name = name
        self.warmup_target = (None if warmup_target is None
                              else _number(cls, "warmup_target", warmup_target, 0))
        self.warmup_steps = _number(cls, "warmup_steps", warmup_steps, 0)

    def _decay(self, step, decay_from):
        cosine = 0.5 * (1.0 + numpy.cos(math.pi * step / self.decay_steps))
        return decay_from * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step):
        step = _step(step)
        if self.warmup_target is None:
            return _result(self._decay(numpy.minimum(step, self.decay_steps), self.initial_learning_rate))
        step = numpy.minimum(step, self.decay_steps + self.warmup_steps)
        in_warmup = step < self.warmup_steps
        ramp = (self.warmup_target - self.initial_learning_rate) * (
            step / max(self.warmup_steps, 1)) + self.initial_learning_rate
        decayed = self._decay(step - self.warmup_steps, self.warmup_target)
        return _result(numpy.where(in_warmup, ramp, decayed))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): the first period lasts first_decay_steps,
    each next one t_mul times longer and m_mul times lower; each decays to alpha·rate."""

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0, alpha=0.0,
                 name="SGDRDecay"):
        cls = type(self).__name__
        self.initial_learning_rate = _number(cls, "initial_learning_rate", initial_learning_rate, 0)
        self.first_decay_steps = _steps(cls, "first_decay_steps", first_decay_steps)
        self.t_mul = _number(cls, "t_mul", t_mul, 0, low_open=True)
        self.m_mul = _number(cls, "m_mul", m_mul, 0)
        self.alpha = _number(cls, "alpha", alpha, 0, high=1)
        self.name = name

    def __call__(self, step):
        fraction = _step(step) / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = numpy.floor(fraction)
            fraction = fraction - restart
        else:  # periods 1, t, t², ...: restart i begins at (1 − tⁱ)/(1 − t) periods
            restart = numpy.floor(numpy.log(1.0 - fraction * (1.0 - self.t_mul)) / math.log(self.t_mul))
            done = (1.0 - self.t_mul ** restart) / (1.0 - self.t_mul)
            fraction = (fraction - done) / self.t_mul ** restart
        cosine = 0.5 * self.m_mul ** restart * (1.0 + numpy.cos(math.pi * fraction))
        return _result(self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha))

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self.t_mul,
                "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


# -- lookup and (de)serialization -------------------------------------------------------
def serialize(schedule):
    """{"class_name", "config"}: what an optimizer's config holds for its schedule."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config):
    """A `serialize` dict (Keras's extra keys such as "module" are ignored) -> schedule."""
    if not isinstance(config, dict):
        raise InvalidArgumentError(f"A learning rate schedule config must be a dict, got {config!r:.80}.")
    cls = _SCHEDULES.get(config.get("class_name"))
    if cls is None:
        raise unknown_name("learning rate schedule", config.get("class_name"), _SCHEDULES)
    kwargs = config.get("config") or {}
    if not isinstance(kwargs, dict):
        raise InvalidArgumentError(f"The config of learning rate schedule {cls.__name__} must be a "
                                   f"dict, got {kwargs!r:.80}.")
    try:
        return cls.from_config(kwargs)
    except TypeError as exc:
        raise InvalidArgumentError(f"Learning rate schedule {cls.__name__}: invalid config "
                                   f"{kwargs!r:.200}: {exc}") from None


def get(identifier):
    """A schedule passes through; a `serialize` dict builds one."""
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    return deserialize(identifier)

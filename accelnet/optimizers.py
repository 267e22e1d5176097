"""Optimizers with Keras's formulas and defaults, updating parameters in place.

`apply(params, grads)` takes two dicts with the same keys (the model's or a
hand-written loop's) and updates every parameter in place, so layers keep their
references. Per-parameter slots (momentum, moments) are created lazily with the
parameter's array module: the code is the same on CPU and GPU.

Learning-rate decay is Keras 2's `lr / (1 + decay * iterations)`, with `iterations`
the number of steps taken before this one (the seeds' from-scratch decay ignored it).
"""
import math

import numpy

from .backend import get_array_module, get_backend
from . import registry
from .errors import InvalidArgumentError, ShapeError


def _positive(cls, name, value):
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"{cls}: {name} must be a finite number > 0, got {value!r}.")
    return value


def _in_range(cls, name, value, low, high, high_open=True):
    value = float(value)
    ok = low <= value < high if high_open else low <= value <= high
    if not (math.isfinite(value) and ok):
        bracket = ")" if high_open else "]"
        raise InvalidArgumentError(f"{cls}: {name} must be in [{low}, {high}{bracket}, got {value!r}.")
    return value


class Optimizer:
    """Base: learning rate, decay, step count, lazily created slots, state for checkpoints."""

    slot_names = ()

    def __init__(self, learning_rate=0.01, decay=0.0, lr=None, name=None):
        if lr is not None:  # Keras 2 spelling, used by the seeds: SGD(lr=0.5)
            learning_rate = lr
        cls = type(self).__name__
        self.learning_rate = _positive(cls, "learning_rate", learning_rate)
        self.decay = _in_range(cls, "decay", decay, 0.0, math.inf)
        self.name = name or cls.lower()
        self.iterations = 0
        self.slots = {s: {} for s in self.slot_names}

    @property
    def lr(self):
        return self.learning_rate

    def current_learning_rate(self):
        """The rate used by the next step: lr / (1 + decay * iterations)."""
        return self.learning_rate / (1.0 + self.decay * self.iterations)

    def apply(self, params, grads):
        """One step: update each params[key] in place from grads[key]."""
        lr = self.current_learning_rate()
        for key, p in params.items():
            g = grads[key]
            if g.shape != p.shape:
                raise ShapeError(f"{type(self).__name__}: gradient of {key!r} has shape {g.shape}, "
                                 f"parameter has {p.shape}.")
            self.update_one(key, p, g, lr)
        self.iterations += 1

    step = apply

    def update_one(self, key, p, g, lr):
        raise NotImplementedError

    def slot(self, slot_name, key, p, fill=0.0):
        """The slot array for parameter `key`, created (filled with `fill`) on first use."""
        store = self.slots[slot_name]
        s = store.get(key)
        if s is None:
            xp = get_array_module(p)
            s = store[key] = xp.full(p.shape, fill, dtype=p.dtype)
        elif s.shape != p.shape:
            raise ShapeError(f"{type(self).__name__}: restored slot {slot_name}/{key} has shape "
                             f"{s.shape}, parameter has {p.shape}.")
        return s

    # -- config and state (for save/load and exact resume) ----------------------
    def get_config(self):
        return {"learning_rate": self.learning_rate, "decay": self.decay}

    def get_state(self):
        state = {"iterations": numpy.asarray(self.iterations, dtype=numpy.int64)}
        for slot_name, store in self.slots.items():
            for key, arr in store.items():
                state[f"{slot_name}/{key}"] = arr
        return state

    def set_state(self, state):
        backend = get_backend()
        self.iterations = int(numpy.asarray(state.get("iterations", 0)))
        self.slots = {s: {} for s in self.slot_names}
        for name, arr in state.items():
            if name == "iterations":
                continue
            slot_name, _, key = name.partition("/")
            if slot_name not in self.slots:
                raise InvalidArgumentError(f"{type(self).__name__} has no slot {slot_name!r} "
                                           f"(state entry {name!r}).")
            self.slots[slot_name][key] = backend.asarray(arr)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """v = momentum·v − lr·g; p += v (Nesterov: p += momentum·v − lr·g)."""

    slot_names = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, decay=0.0, lr=None, name=None):
        super().__init__(learning_rate, decay, lr, name)
        self.momentum = _in_range("SGD", "momentum", momentum, 0.0, 1.0, high_open=False)
        self.nesterov = bool(nesterov)

    def update_one(self, key, p, g, lr):
        if not self.momentum:
            p -= lr * g
            return
        v = self.slot("momentum", key, p)
        v *= self.momentum
        v -= lr * g
        if self.nesterov:
            p += self.momentum * v - lr * g
        else:
            p += v

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """m, v exponential moments; p −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)."""

    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, decay=0.0,
                 lr=None, name=None):
        super().__init__(learning_rate, decay, lr, name)
        self.beta_1 = _in_range("Adam", "beta_1", beta_1, 0.0, 1.0)
        self.beta_2 = _in_range("Adam", "beta_2", beta_2, 0.0, 1.0)
        self.epsilon = _in_range("Adam", "epsilon", epsilon, 0.0, math.inf)

    def apply(self, params, grads):
        t = self.iterations + 1
        self._alpha_scale = math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)
        super().apply(params, grads)

    def update_one(self, key, p, g, lr):
        xp = get_array_module(p)
        m = self.slot("m", key, p)
        v = self.slot("v", key, p)
        m *= self.beta_1
        m += (1.0 - self.beta_1) * g
        v *= self.beta_2
        v += (1.0 - self.beta_2) * (g * g)
        denom = xp.sqrt(v)
        denom += self.epsilon
        p -= (lr * self._alpha_scale) * (m / denom)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """v = ρ·v + (1−ρ)·g²; p −= lr·g / √(v + ε) (Keras 3)."""

    slot_names = ("velocity",)

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, decay=0.0, lr=None, name=None):
        super().__init__(learning_rate, decay, lr, name)
        self.rho = _in_range("RMSprop", "rho", rho, 0.0, 1.0)
        self.epsilon = _in_range("RMSprop", "epsilon", epsilon, 0.0, math.inf)

    def update_one(self, key, p, g, lr):
        xp = get_array_module(p)
        v = self.slot("velocity", key, p)
        v *= self.rho
        v += (1.0 - self.rho) * (g * g)
        p -= lr * g / xp.sqrt(v + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adagrad(Optimizer):
    """a += g²; p −= lr·g / √(a + ε), a starting at 0.1 (Keras)."""

    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, decay=0.0,
                 lr=None, name=None):
        super().__init__(learning_rate, decay, lr, name)
        self.initial_accumulator_value = _in_range("Adagrad", "initial_accumulator_value",
                                                   initial_accumulator_value, 0.0, math.inf)
        self.epsilon = _in_range("Adagrad", "epsilon", epsilon, 0.0, math.inf)

    def update_one(self, key, p, g, lr):
        xp = get_array_module(p)
        a = self.slot("accumulator", key, p, fill=self.initial_accumulator_value)
        a += g * g
        p -= lr * g / xp.sqrt(a + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adadelta(Optimizer):
    """Zeiler's Adadelta as Keras: Δ = −√(E[Δ²]+ε)/√(E[g²]+ε)·g; p += lr·Δ."""

    slot_names = ("accumulated_grad", "accumulated_delta")

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, decay=0.0, lr=None, name=None):
        super().__init__(learning_rate, decay, lr, name)
        self.rho = _in_range("Adadelta", "rho", rho, 0.0, 1.0)
        self.epsilon = _in_range("Adadelta", "epsilon", epsilon, 0.0, math.inf)

    def update_one(self, key, p, g, lr):
        xp = get_array_module(p)
        eg = self.slot("accumulated_grad", key, p)
        ed = self.slot("accumulated_delta", key, p)
        eg *= self.rho
        eg += (1.0 - self.rho) * (g * g)
        delta = -xp.sqrt(ed + self.epsilon) / xp.sqrt(eg + self.epsilon) * g
        ed *= self.rho
        ed += (1.0 - self.rho) * (delta * delta)
        p += lr * delta

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta}
_CLASSES = {cls.__name__: cls for cls in OPTIMIZERS.values()}


serialize = registry.serialize


def get(identifier):
    """A name ('adam'), a {"class_name", "config"} dict or an Optimizer -> Optimizer."""
    optimizer = registry.resolve("optimizer", identifier, Optimizer, OPTIMIZERS, _CLASSES)
    if optimizer is None:
        raise InvalidArgumentError(f"Cannot interpret {identifier!r} as an optimizer; give a name "
                                   f"({', '.join(OPTIMIZERS)}) or an accelnet.optimizers.Optimizer.")
    return optimizer

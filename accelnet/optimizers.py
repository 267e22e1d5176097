"""Optimizers with Keras 3's formulas, arguments and defaults, updating parameters in place.

`apply(params, grads)` takes two dicts with the same keys (the model's or a
hand-written loop's) and updates every parameter in place, so layers keep their
references. Per-parameter slots (momentum, moments) are created lazily with the
parameter's array module: the code is the same on CPU and GPU, and a step never reads
a device value back to the host (clipping norms stay 0-d device arrays). SGD and Adam
(AdamW, AMSGrad) update each parameter, its slots and its weight decay in one pass, through
the `sgd_update` / `adam_update` kernels. Slots that decay geometrically (moments, velocities,
running averages) have their subnormal entries flushed to +0 after each update
(`kernels.flush_subnormal`; why: `kernels/optimizer_update.py`), as TensorFlow's CPU kernels do.

Every optimizer takes Keras 3's common arguments: `learning_rate` (a float or a
`schedules.LearningRateSchedule`, evaluated at `iterations`, the number of steps taken
before this one), `weight_decay` (decoupled: p −= lr·wd·p before the update),
`clipnorm` (each gradient to that L2 norm), `global_clipnorm` (all gradients together)
and `clipvalue` (elementwise), at most one of the three. Keras 2's `decay` (lr / (1 +
decay·iterations)) and `lr=` are kept for old programs.
"""
import math
import re

import numpy

from .backend import get_array_module, get_backend
from . import kernels, registry, schedules
from .errors import InvalidArgumentError, ShapeError

# Keras 3 arguments accelnet does not implement: accepted at their default (so Keras
# configs load), refused otherwise.
_UNSUPPORTED = {"use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                "loss_scale_factor": None, "gradient_accumulation_steps": None}


def _positive(cls, name, value):
    value = _real(cls, name, value)
    if not (math.isfinite(value) and value > 0):
        raise InvalidArgumentError(f"{cls}: {name} must be a finite number > 0, got {value!r}.")
    return value


def _in_range(cls, name, value, low, high, high_open=True):
    value = _real(cls, name, value)
    ok = low <= value < high if high_open else low <= value <= high
    if not (math.isfinite(value) and ok):
        bracket = ")" if high_open else "]"
        raise InvalidArgumentError(f"{cls}: {name} must be in [{low}, {high}{bracket}, got {value!r}.")
    return value


def _real(cls, name, value):
    if isinstance(value, (bool, str, bytes)):
        raise InvalidArgumentError(f"{cls}: {name} must be a number, got {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{cls}: {name} must be a number, got {value!r:.80}.") from None


def _optional(check, cls, name, value, *args):
    return None if value is None else check(cls, name, value, *args)


class Optimizer:
    """Base: learning rate (or schedule), clipping, weight decay, step count, lazily
    created slots, state for checkpoints. Subclasses implement `update_one`."""

    slot_names = ()

    def __init__(self, learning_rate=0.01, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, name=None, decay=0.0, lr=None, **kwargs):
        cls = type(self).__name__
        for key, value in kwargs.items():
            if key not in _UNSUPPORTED:
                raise InvalidArgumentError(f"{cls}: argument(s) not recognized: {sorted(kwargs)}.")
            if value != _UNSUPPORTED[key]:
                raise InvalidArgumentError(f"{cls}: {key}={value!r} is not supported by accelnet "
                                           f"(only the default {_UNSUPPORTED[key]!r}).")
        if lr is not None:  # Keras 2 spelling, used by the seeds: SGD(lr=0.5)
            learning_rate = lr
        if isinstance(learning_rate, dict):  # a schedule's config, as get_config writes it
            learning_rate = schedules.deserialize(learning_rate)
        self._learning_rate = self._check_learning_rate(learning_rate)
        self.decay = _in_range(cls, "decay", decay, 0.0, math.inf)
        self.weight_decay = _optional(_in_range, cls, "weight_decay", weight_decay, 0.0, math.inf)
        self.clipnorm = _optional(_positive, cls, "clipnorm", clipnorm)
        self.clipvalue = _optional(_positive, cls, "clipvalue", clipvalue)
        self.global_clipnorm = _optional(_positive, cls, "global_clipnorm", global_clipnorm)
        if sum(c is not None for c in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise InvalidArgumentError(
                f"{cls}: only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, global_clipnorm={global_clipnorm}.")
        self.name = name or cls.lower()
        self.iterations = 0
        self.slots = {s: {} for s in self.slot_names}
        self._no_decay_ids, self._no_decay_pattern = set(), None

    # -- learning rate ---------------------------------------------------------------
    def _check_learning_rate(self, value):
        if isinstance(value, schedules.LearningRateSchedule):
            return value
        if callable(value):
            raise InvalidArgumentError(
                f"{type(self).__name__}: learning_rate must be a float or an "
                f"accelnet.optimizers.schedules.LearningRateSchedule (subclass it and define "
                f"__call__(step)), got the callable {value!r:.80}.")
        return _positive(type(self).__name__, "learning_rate", value)

    @property
    def learning_rate(self):
        """The rate of the next step: the float, or the schedule at `iterations`."""
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            return float(self._learning_rate(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if (isinstance(self._learning_rate, schedules.LearningRateSchedule)
                and not isinstance(value, schedules.LearningRateSchedule)):
            raise InvalidArgumentError(
                f"{type(self).__name__} was created with a LearningRateSchedule "
                f"({type(self._learning_rate).__name__}) as its learning_rate, so its learning rate "
                f"cannot be set to {value!r}. Create the optimizer with a float learning_rate if a "
                f"callback (such as ReduceLROnPlateau) must change it.")
        self._learning_rate = self._check_learning_rate(value)

    lr = learning_rate  # Keras 2 name

    def current_learning_rate(self):
        """The rate used by the next step, Keras 2's `decay` included."""
        return self.learning_rate / (1.0 + self.decay * self.iterations)

    # -- the step --------------------------------------------------------------------
    def apply(self, params, grads):
        """One step: clip the gradients, decay the weights, update each params[key] in place."""
        lr = self.current_learning_rate()
        keys = list(params)
        for key in keys:
            if grads[key].shape != params[key].shape:
                raise ShapeError(f"{type(self).__name__}: gradient of {key!r} has shape "
                                 f"{grads[key].shape}, parameter has {params[key].shape}.")
        clipped = self._clip([grads[k] for k in keys])
        self.begin_step(self.iterations + 1)
        fused = getattr(type(self).update_one, "fuses_weight_decay", False)
        for key, g in zip(keys, clipped):
            p = params[key]
            if self.weight_decay and self._decays(key, p):
                decay = 1.0 - lr * self.weight_decay
                if fused:  # the update's kernel scales p in the same pass
                    self.update_one(key, p, g, lr, decay)
                    continue
                p *= decay
            self.update_one(key, p, g, lr)
        self.iterations += 1

    step = apply

    def begin_step(self, t):
        """Host-side scalars shared by all parameters of step t (1-based), e.g. Adam's bias
        corrections."""

    def plain_step_rate(self):
        """lr when the next `apply` is exactly p -= lr * g for every parameter, else None. A
        model may then fold a layer's update into its gradient's product (Dense: W += -lr x^T dz
        in one GEMM) and `apply` the rest; only plain SGD says yes."""
        return None

    def update_one(self, key, p, g, lr):
        """Update parameter `p` in place from its gradient `g` at learning rate `lr`. An
        override marked `fuses_weight_decay` also takes `decay` (p·decay first)."""
        raise NotImplementedError

    def _clip(self, grads):
        """Keras 3's clipping: new arrays, the caller's gradients are left as they were."""
        if self.clipnorm is not None:
            return [_clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm is not None and grads:
            xp = get_array_module(grads[0])
            norm = xp.sqrt(sum(xp.sum(g * g) for g in grads))
            # Keras: + (norm − norm) turns the scale into NaN when the norm is inf or NaN.
            scale = self.global_clipnorm / xp.maximum(norm, self.global_clipnorm) + (norm - norm)
            return [g * scale.astype(g.dtype) for g in grads]
        if self.clipvalue is not None:
            return [get_array_module(g).clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Leave out of weight decay the arrays in `var_list` and the parameters whose key
        (e.g. 'dense/bias') contains one of the regular expressions in `var_names`."""
        self._no_decay_ids = {id(v) for v in var_list or ()}
        self._no_decay_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _decays(self, key, p):
        if id(p) in self._no_decay_ids:
            return False
        return self._no_decay_pattern is None or not self._no_decay_pattern.search(key)

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
        learning_rate = self._learning_rate
        if isinstance(learning_rate, schedules.LearningRateSchedule):
            learning_rate = schedules.serialize(learning_rate)
        return {"name": self.name, "learning_rate": learning_rate, "decay": self.decay,
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

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
        try:
            config = self.get_config()
        except NotImplementedError:  # a user schedule without get_config
            config = {"name": self.name}
        config["learning_rate"] = self._learning_rate  # the schedule's repr, not its config
        args = ", ".join(f"{k}={v!r}" for k, v in config.items())
        return f"{type(self).__name__}({args})"


def _clip_by_norm(g, clipnorm):
    """g · clipnorm / max(‖g‖₂, clipnorm): unchanged when its norm is within clipnorm."""
    xp = get_array_module(g)
    norm = xp.sqrt(xp.sum(g * g))
    return g * (clipnorm / xp.maximum(norm, clipnorm)).astype(g.dtype)


class SGD(Optimizer):
    """v = momentum·v − lr·g; p += v (Nesterov: p += momentum·v − lr·g)."""

    slot_names = ("momentum",)

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, decay=0.0, lr=None,
                 **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name,
                         decay, lr, **kwargs)
        self.momentum = _in_range("SGD", "momentum", momentum, 0.0, 1.0, high_open=False)
        self.nesterov = bool(nesterov)

    def update_one(self, key, p, g, lr, decay=None):
        v = self.slot("momentum", key, p) if self.momentum else None
        kernels.sgd_update(p, g, lr, self.momentum, v, self.nesterov, decay)

    update_one.fuses_weight_decay = True

    def plain_step_rate(self):
        if (self.momentum or self.weight_decay or self.clipnorm is not None
                or self.clipvalue is not None or self.global_clipnorm is not None
                or type(self).update_one is not SGD.update_one
                or type(self).apply is not Optimizer.apply):  # a subclass's own step
            return None
        return self.current_learning_rate()

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """m, v exponential moments; p −= lr·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε). With `amsgrad`,
    v is replaced by its running maximum v̂."""

    slot_names = ("m", "v", "velocity_hat")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None,
                 decay=0.0, lr=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name,
                         decay, lr, **kwargs)
        cls = type(self).__name__
        self.beta_1 = _in_range(cls, "beta_1", beta_1, 0.0, 1.0)
        self.beta_2 = _in_range(cls, "beta_2", beta_2, 0.0, 1.0)
        self.epsilon = _in_range(cls, "epsilon", epsilon, 0.0, math.inf)
        self.amsgrad = bool(amsgrad)

    def begin_step(self, t):
        self._alpha_scale = math.sqrt(1.0 - self.beta_2 ** t) / (1.0 - self.beta_1 ** t)

    def update_one(self, key, p, g, lr, decay=None):
        v_hat = self.slot("velocity_hat", key, p) if self.amsgrad else None
        kernels.adam_update(p, g, self.slot("m", key, p), self.slot("v", key, p),
                            lr * self._alpha_scale, self.beta_1, self.beta_2, self.epsilon, v_hat,
                            decay)

    update_one.fuses_weight_decay = True

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (p −= lr·weight_decay·p before each update)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, amsgrad=False, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 name=None, decay=0.0, lr=None, **kwargs):
        if weight_decay is None:
            raise InvalidArgumentError("AdamW: weight_decay must be a float, got None.")
        super().__init__(learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm,
                         clipvalue, global_clipnorm, name, decay, lr, **kwargs)


class _BetasOptimizer(Optimizer):
    """Nadam's and Adamax's shared arguments: beta_1, beta_2, epsilon (Keras 3 defaults)."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None,
                 decay=0.0, lr=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name,
                         decay, lr, **kwargs)
        cls = type(self).__name__
        self.beta_1 = _in_range(cls, "beta_1", beta_1, 0.0, 1.0)
        self.beta_2 = _in_range(cls, "beta_2", beta_2, 0.0, 1.0)
        self.epsilon = _in_range(cls, "epsilon", epsilon, 0.0, math.inf)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Nadam(_BetasOptimizer):
    """Adam with Nesterov momentum (Dozat), Keras's momentum schedule
    μₜ = β1·(1 − ½·0.96ᵗ):
    m̂ = μₜ₊₁·m / (1 − Πμ₁..ₜ₊₁) + (1 − μₜ)·g / (1 − Πμ₁..ₜ); v̂ = v / (1 − β2ᵗ);
    p −= lr·m̂ / (√v̂ + ε)."""

    slot_names = ("m", "v")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._u_product = (0, 1.0)  # (t, Π μ₁..ₜ): a host float, recomputed after a restore

    def _mu(self, t):
        return self.beta_1 * (1.0 - 0.5 * 0.96 ** t)

    def begin_step(self, t):
        done, product = self._u_product
        if done > t - 1:  # iterations went back (set_state): start over
            done, product = 0, 1.0
        for i in range(done + 1, t + 1):
            product *= self._mu(i)
        self._u_product = (t, product)
        u_t, u_next = self._mu(t), self._mu(t + 1)
        self._m_scale = u_next / (1.0 - product * u_next)
        self._g_scale = (1.0 - u_t) / (1.0 - product)
        self._v_scale = 1.0 / (1.0 - self.beta_2 ** t)

    def update_one(self, key, p, g, lr):
        xp = get_array_module(p)
        m = self.slot("m", key, p)
        v = self.slot("v", key, p)
        m *= self.beta_1
        m += (1.0 - self.beta_1) * g
        kernels.flush_subnormal(m)
        v *= self.beta_2
        v += (1.0 - self.beta_2) * (g * g)
        kernels.flush_subnormal(v)
        m_hat = self._m_scale * m
        m_hat += self._g_scale * g
        denom = xp.sqrt(self._v_scale * v)
        denom += self.epsilon
        p -= lr * (m_hat / denom)


class Adamax(_BetasOptimizer):
    """Adam with the infinity norm: m = β1·m + (1−β1)·g; u = max(β2·u, |g|);
    p −= lr·m / ((1 − β1ᵗ)·(u + ε))."""

    slot_names = ("m", "u")

    def begin_step(self, t):
        self._m_scale = 1.0 / (1.0 - self.beta_1 ** t)

    def update_one(self, key, p, g, lr):
        xp = get_array_module(p)
        m = self.slot("m", key, p)
        u = self.slot("u", key, p)
        m *= self.beta_1
        m += (1.0 - self.beta_1) * g
        kernels.flush_subnormal(m)
        u *= self.beta_2
        xp.maximum(u, xp.abs(g), out=u)
        kernels.flush_subnormal(u)
        denom = u + self.epsilon
        p -= (lr * self._m_scale) * (m / denom)


class RMSprop(Optimizer):
    """v = ρ·v + (1−ρ)·g²; step = lr·g / √(v + ε), or / √(v − ḡ² + ε) when `centered`
    (ḡ = ρ·ḡ + (1−ρ)·g); p −= step, or with `momentum`: s = momentum·s + step; p −= s."""

    slot_names = ("velocity", "momentum", "average_gradient")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None,
                 decay=0.0, lr=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name,
                         decay, lr, **kwargs)
        self.rho = _in_range("RMSprop", "rho", rho, 0.0, 1.0)
        self.momentum = _in_range("RMSprop", "momentum", momentum, 0.0, 1.0)
        self.epsilon = _in_range("RMSprop", "epsilon", epsilon, 0.0, math.inf)
        self.centered = bool(centered)

    def update_one(self, key, p, g, lr):
        xp = get_array_module(p)
        v = self.slot("velocity", key, p)
        v *= self.rho
        v += (1.0 - self.rho) * (g * g)
        kernels.flush_subnormal(v)
        if self.centered:
            a = self.slot("average_gradient", key, p)
            a *= self.rho
            a += (1.0 - self.rho) * g
            kernels.flush_subnormal(a)
            denom = v - a * a
        else:
            denom = v.copy()
        denom += self.epsilon
        step = (lr * g) / xp.sqrt(denom, out=denom)
        if self.momentum:
            s = self.slot("momentum", key, p)
            s *= self.momentum
            s += step
            kernels.flush_subnormal(s)
            step = s
        p -= step

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """a += g²; p −= lr·g / √(a + ε), a starting at 0.1 (Keras)."""

    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None, name=None,
                 decay=0.0, lr=None, **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name,
                         decay, lr, **kwargs)
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

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                 clipnorm=None, clipvalue=None, global_clipnorm=None, name=None, decay=0.0, lr=None,
                 **kwargs):
        super().__init__(learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, name,
                         decay, lr, **kwargs)
        self.rho = _in_range("Adadelta", "rho", rho, 0.0, 1.0)
        self.epsilon = _in_range("Adadelta", "epsilon", epsilon, 0.0, math.inf)

    def update_one(self, key, p, g, lr):
        xp = get_array_module(p)
        eg = self.slot("accumulated_grad", key, p)
        ed = self.slot("accumulated_delta", key, p)
        eg *= self.rho
        eg += (1.0 - self.rho) * (g * g)
        kernels.flush_subnormal(eg)
        delta = -xp.sqrt(ed + self.epsilon) / xp.sqrt(eg + self.epsilon) * g
        ed *= self.rho
        ed += (1.0 - self.rho) * (delta * delta)
        kernels.flush_subnormal(ed)
        p += lr * delta

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "nadam": Nadam, "adamax": Adamax,
              "rmsprop": RMSprop, "adagrad": Adagrad, "adadelta": Adadelta}
_CLASSES = {cls.__name__: cls for cls in OPTIMIZERS.values()}


serialize = registry.serialize


def deserialize(config):
    """A `serialize` dict -> Optimizer (Keras's `optimizers.deserialize`)."""
    if not isinstance(config, dict):
        raise InvalidArgumentError(f"optimizers.deserialize expects a {{'class_name', 'config'}} dict, "
                                   f"got {config!r:.80}.")
    return get(config)


def get(identifier):
    """A name ('adam'), a {"class_name", "config"} dict or an Optimizer -> Optimizer."""
    optimizer = registry.resolve("optimizer", identifier, Optimizer, OPTIMIZERS, _CLASSES)
    if optimizer is None:
        raise InvalidArgumentError(f"Cannot interpret {identifier!r} as an optimizer; give a name "
                                   f"({', '.join(OPTIMIZERS)}) or an accelnet.optimizers.Optimizer.")
    return optimizer

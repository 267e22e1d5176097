"""Weight penalties added to the loss: l1, l2, l1_l2 (seed 002's and Keras's definitions).

A regularizer gives `penalty(w)` (a 0-d array added to the reported loss) and
`gradient(w)` (added to the weight's gradient before the optimizer step):
L1: λ·Σ|w| and λ·sign(w); L2: λ·Σw² and 2λ·w.
"""
import math

from .backend import get_array_module
from . import registry
from .errors import InvalidArgumentError


def _check(name, value):
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise InvalidArgumentError(f"Regularizer factor {name} must be a finite number >= 0, got {value!r}.")
    return value


class Regularizer:
    def penalty(self, w):
        raise NotImplementedError

    def gradient(self, w):
        raise NotImplementedError

    def __call__(self, w):
        return self.penalty(w)

    def get_config(self):
        return {}


class L1L2(Regularizer):
    """λ1·Σ|w| + λ2·Σw²."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check("l1", l1)
        self.l2 = _check("l2", l2)

    def penalty(self, w):
        xp = get_array_module(w)
        total = None
        if self.l1:
            total = self.l1 * xp.abs(w).sum()
        if self.l2:
            sq = self.l2 * (w * w).sum()
            total = sq if total is None else total + sq
        return total if total is not None else xp.zeros((), dtype=w.dtype)

    def gradient(self, w):
        xp = get_array_module(w)
        grad = xp.zeros_like(w)
        if self.l1:
            grad += self.l1 * xp.sign(w)
        if self.l2:
            grad += (2.0 * self.l2) * w
        return grad

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"L1L2(l1={self.l1}, l2={self.l2})"


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


def l1(l1=0.01):
    return L1(l1)


def l2(l2=0.01):
    return L2(l2)


def l1_l2(l1=0.0, l2=0.0):
    """Keras 3's defaults (Keras 2's were 0.01 each): pass the factors you want."""
    return L1L2(l1, l2)


REGULARIZERS = {"l1": L1, "l2": L2, "l1_l2": L1L2, "l1l2": L1L2}
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2}


def serialize(reg):
    return None if reg is None else registry.serialize(reg)


def get(identifier):
    """None, a name ('l2'), a {"class_name", "config"} dict or a Regularizer -> Regularizer or None."""
    if identifier is None:
        return None
    reg = registry.resolve("regularizer", identifier, Regularizer, REGULARIZERS, _CLASSES)
    if reg is None:
        raise InvalidArgumentError(f"Cannot interpret {identifier!r} as a regularizer.")
    return reg

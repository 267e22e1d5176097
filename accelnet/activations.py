"""Element-wise activations: forward from the input, backward from the *output*.

Each activation's derivative is written in terms of its output y, so a layer keeps only
y for the backward pass (no copy of the pre-activation). ReLU's backward runs the
`relu_backward` kernel.
"""
from . import kernels
from .backend import get_array_module
from .errors import unknown_name


class Activation:
    name = None

    def forward(self, x):
        """y = f(x); may overwrite x (the caller owns it)."""
        raise NotImplementedError

    def backward(self, dy, y):
        """dL/dx from dL/dy and the forward output y."""
        raise NotImplementedError

    def __repr__(self):
        return self.name


class Linear(Activation):
    name = "linear"

    def forward(self, x):
        return x

    def backward(self, dy, y):
        return dy


class ReLU(Activation):
    name = "relu"

    def forward(self, x):
        xp = get_array_module(x)
        return xp.maximum(x, 0, out=x)

    def backward(self, dy, y):
        # y > 0 exactly where the input was > 0, so the output serves as the mask.
        return kernels.relu_backward(dy, y)


class Sigmoid(Activation):
    name = "sigmoid"

    def forward(self, x):
        # 0.5·(1 + tanh(x/2)) equals 1/(1+exp(-x)) and never overflows.
        xp = get_array_module(x)
        x *= 0.5
        xp.tanh(x, out=x)
        x += 1
        x *= 0.5
        return x

    def backward(self, dy, y):
        return dy * y * (1 - y)


class Tanh(Activation):
    name = "tanh"

    def forward(self, x):
        xp = get_array_module(x)
        return xp.tanh(x, out=x)

    def backward(self, dy, y):
        return dy * (1 - y * y)


class Softmax(Activation):
    """Row-wise softmax over the last axis (stable: the row maximum is subtracted)."""

    name = "softmax"

    def forward(self, x):
        xp = get_array_module(x)
        x -= x.max(axis=-1, keepdims=True)
        xp.exp(x, out=x)
        x /= x.sum(axis=-1, keepdims=True)
        return x

    def backward(self, dy, y):
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


ACTIVATIONS = {cls.name: cls for cls in (Linear, ReLU, Sigmoid, Tanh, Softmax)}


def get(identifier):
    """Activation instance from None, a name ('relu', ...) or an Activation."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in ACTIVATIONS:
        return ACTIVATIONS[identifier.lower()]()
    raise unknown_name("activation", identifier, ACTIVATIONS)

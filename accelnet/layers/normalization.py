"""Batch normalization over every axis but the last (Keras's axis=-1)."""
from ..backend import get_array_module, get_backend
from .base import Layer


class BatchNormalization(Layer):
    """y = gamma·(x − mean)/sqrt(var + epsilon) + beta.

    Training uses the batch statistics and updates the running ones
    (moving = momentum·moving + (1 − momentum)·batch); evaluate/predict use the running
    statistics, and so does a frozen layer (`trainable = False`) in training, as in Keras 3.
    Keras defaults: momentum 0.99, epsilon 1e-3.
    """

    def __init__(self, momentum=0.99, epsilon=1e-3, center=True, scale=True, input_shape=None,
                 name=None):
        super().__init__(name=name, input_shape=input_shape)
        self.momentum, self.epsilon = float(momentum), float(epsilon)
        self.center, self.scale = center, scale

    def weight_shapes(self, input_shape):
        c = (int(input_shape[-1]),)
        names = (["gamma"] if self.scale else []) + (["beta"] if self.center else [])
        return {name: c for name in names + ["moving_mean", "moving_variance"]}

    def build(self, input_shape):
        super().build(input_shape)
        c = (self.input_shape[-1],)
        if self.scale:
            self.add_param("gamma", c, "ones")
        if self.center:
            self.add_param("beta", c, "zeros")
        xp = get_backend().xp
        dtype = get_backend().float_dtype
        self.state["moving_mean"] = xp.zeros(c, dtype=dtype)
        self.state["moving_variance"] = xp.ones(c, dtype=dtype)

    def forward(self, x, training=True):
        self.ensure_built(x)
        training = training and self.trainable  # frozen: inference mode, as Keras 3
        xp = get_array_module(x)
        axes = tuple(range(x.ndim - 1))
        if training:
            mean = x.mean(axis=axes)
            var = x.var(axis=axes)
            m = self.momentum
            self.state["moving_mean"] *= m
            self.state["moving_mean"] += (1 - m) * mean
            self.state["moving_variance"] *= m
            self.state["moving_variance"] += (1 - m) * var
        else:
            mean, var = self.state["moving_mean"], self.state["moving_variance"]
        self._training = training
        self._inv_std = 1 / xp.sqrt(var + self.epsilon)
        self._xhat = (x - mean) * self._inv_std
        y = self._xhat * self.params["gamma"] if self.scale else self._xhat.copy()
        if self.center:
            y += self.params["beta"]
        return y

    def backward(self, grad):
        axes = tuple(range(grad.ndim - 1))
        xhat = self._xhat
        if self.center:
            grad.sum(axis=axes, out=self.grads["beta"])
        if self.scale:
            (grad * xhat).sum(axis=axes, out=self.grads["gamma"])
            dxhat = grad * self.params["gamma"]
        else:
            dxhat = grad
        if not self._training:  # running statistics are constants here
            return dxhat * self._inv_std
        count = grad.size // grad.shape[-1]
        # dx = inv_std · (dxhat − mean(dxhat) − xhat · mean(dxhat · xhat))
        dx = dxhat - dxhat.sum(axis=axes) / count - xhat * ((dxhat * xhat).sum(axis=axes) / count)
        dx *= self._inv_std
        return dx

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                      scale=self.scale)
        return config

"""Batch normalization over every axis but the last (Keras's axis=-1)."""
from .. import kernels
from ..backend import get_backend
from .base import Layer


class BatchNormalization(Layer):
    """y = gamma·(x − mean)/sqrt(var + epsilon) + beta.

    Training uses the batch statistics and updates the running ones
    (moving = momentum·moving + (1 − momentum)·batch); evaluate/predict use the running
    statistics, and so does a frozen layer (`trainable = False`) in training, as in Keras 3.
    Keras defaults: momentum 0.99, epsilon 1e-3. Forward and backward run the
    `batch_norm_forward`/`batch_norm_backward` kernels on the (rows, C) view (batch
    statistics in float64); the layer keeps x, not the normalized x.
    """

    uses_worker_threads = True

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
        x2 = x.reshape(-1, x.shape[-1])  # (rows, C): statistics over every axis but the last
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        if training:
            y, mean, var, inv_std = kernels.batch_norm_forward(x2, gamma, beta, self.epsilon)
            m = self.momentum
            for key, batch in (("moving_mean", mean), ("moving_variance", var)):
                moving = self.state[key]
                moving *= m
                moving += (1 - m) * batch.astype(moving.dtype)
        else:
            y, mean, var, inv_std = kernels.batch_norm_forward(
                x2, gamma, beta, self.epsilon, self.state["moving_mean"],
                self.state["moving_variance"])
        self._training = training
        self._x, self._mean, self._inv_std = x2, mean, inv_std  # xhat is recomputed from x
        return y.reshape(x.shape)

    def backward(self, grad):
        dx, dgamma, dbeta = kernels.batch_norm_backward(
            grad.reshape(-1, grad.shape[-1]), self._x, self.params.get("gamma"), self._mean,
            self._inv_std, self._training)  # not training: the running statistics are constants
        if self.center:
            self.grads["beta"][...] = dbeta
        if self.scale:
            self.grads["gamma"][...] = dgamma
        return dx.reshape(grad.shape)

    def get_config(self):
        config = super().get_config()
        config.update(momentum=self.momentum, epsilon=self.epsilon, center=self.center,
                      scale=self.scale)
        return config

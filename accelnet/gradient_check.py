"""Finite-difference gradient checks for layers and losses (Chainer's check_backward idea).

Run in float64: `to_float64(layer)` casts a built layer's weights; the checker compares
the analytic gradients of L = sum(forward(x) * r), for a fixed random r, with central
differences for the input and for every parameter.
"""
import numpy

from .backend import get_array_module


def to_float64(layer):
    """Cast a built layer's params, grads and state to float64, in place."""
    for store in (layer.params, layer.grads, layer.state):
        for key, value in store.items():
            store[key] = value.astype("float64")
    return layer


def build_float64(layer, input_shape, seed=0):
    """Build `layer` for `input_shape` from a fixed seed, weights in float64: ready for
    `check_layer`."""
    from . import random
    random.seed(seed)
    layer.build(input_shape)
    return to_float64(layer)


def numerical_grad(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function f() with respect to array x,
    perturbing x in place one element at a time."""
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i].copy()
        flat[i] = orig + eps
        plus = float(f())
        flat[i] = orig - eps
        minus = float(f())
        flat[i] = orig
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def check_layer(layer, x, training=True, rtol=1e-5, atol=1e-7, seed=0, forward_kwargs=None):
    """Assert the layer's backward matches finite differences for x and every param
    (the loss includes the layer's regularization penalty)."""
    forward_kwargs = forward_kwargs or {}
    y = layer.forward(x, training=training, **forward_kwargs)
    r = numpy.random.default_rng(seed).standard_normal(y.shape)
    r = get_array_module(x).asarray(r)
    def loss():
        out = (layer.forward(x, training=training, **forward_kwargs) * r).sum()
        penalty = layer.regularization_penalty()
        return out if penalty is None else out + penalty

    layer.forward(x, training=training, **forward_kwargs)
    dx = layer.backward(r.copy())
    analytic = {k: g.copy() for k, g in layer.grads.items()}
    if dx is not None:
        numpy.testing.assert_allclose(_host(dx), _host(numerical_grad(loss, x)), rtol=rtol, atol=atol,
                                      err_msg=f"{layer.name}: input gradient")
    for key, param in layer.params.items():
        numpy.testing.assert_allclose(_host(analytic[key]), _host(numerical_grad(loss, param)),
                                      rtol=rtol, atol=atol, err_msg=f"{layer.name}: gradient of {key}")


def _host(a):
    from .backend import to_numpy
    return to_numpy(a)

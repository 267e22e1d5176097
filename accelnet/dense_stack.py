"""A Sequential of Dense layers: its whole training step as one kernel call
(`kernels.dense_step`) instead of layer by layer.

Which models (`plan(model)`): a Sequential whose layers are an optional Input, an
optional Flatten first, then Dense layers (all trainable, no regularizers, not shared),
each hidden one with bias + ReLU or linear and optionally followed by a Dropout (its masks
drawn as the layer draws them), the last one with softmax under a (sparse)
categorical cross-entropy, or linear under one with `from_logits=True`, reduced as
`sum_over_batch_size`. Any optimizer: plain SGD (`Model._fold_rate`: MKL, no momentum,
weight decay or clipping) is folded into the kernel's GEMMs; any other gets the layers'
gradients from the kernel and applies them as after the layers' backward. The step runs on
one process only where the kernel's compiled form does (float32 NumPy batch,
`kernels.dense_step_compiled`), without sample weights and without a callback that reads
the loss before the update. Anything else, and ACCELNET_DENSE_STEP=0 (read at every step),
runs the layers' own step.

Why: on the bench's 2 cores the MLP 784-512-512-10's SGD epoch took 0.900 s this way against
1.121 s layer by layer and PyTorch-CPU's 1.252 s (`python -m bench.mlp_arms`, one process,
best of 4); the Fashion-MNIST MLP (two Dropouts, Adam) 1.32 s an epoch against 1.44 layer
by layer (`python -m bench.fashion_recipes`, two runs). Same gradients, masks and update as
the layers' step, to MKL's rounding.
"""
import numpy

from . import kernels
from .backend import get_backend
from .kernels import _dispatch

ENV_VAR = "ACCELNET_DENSE_STEP"
MAX_WORKSPACES = 4  # buffers kept for this many batch sizes (fit: the batch and the last one)
_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


def enabled():
    value = _dispatch._environment_value(ENV_VAR)
    return value is None or value.strip() != "0"


class DenseStackStep:
    """The kernel call for one model: its Dense layers, ReLU flags and buffers."""

    def __init__(self, model, dense, dropouts, flatten):
        self.model, self.dense, self.dropouts, self.flatten = model, dense, dropouts, flatten
        self.relu = [layer.activation.name == "relu" for layer in dense[:-1]]
        self.width = dense[0].params["kernel"].shape[0]
        self.classes = dense[-1].units
        self._workspaces = {}

    def step(self, x, y, rate):
        """One step on batch (x, y): the plain-SGD update at `rate`, or (rate None) the
        layers' gradients for the optimizer; (loss, logits), or None where the compiled
        kernel does not apply to this batch (the caller runs the layers)."""
        if not enabled() or not kernels.dense_step_compiled(x) or not x.flags.c_contiguous:
            return None
        if x.ndim != 2:
            if not self.flatten:
                return None
            x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.width or x.shape[0] == 0:
            return None
        if type(y) is not numpy.ndarray:
            return None
        n = x.shape[0]
        labels = self.model.loss._kernel_labels(y, _Shape((n, self.classes), x.dtype))
        params = [layer.params for layer in self.dense]
        workspace = self._workspaces.get(n)
        if workspace is None:
            if len(self._workspaces) >= MAX_WORKSPACES:  # batches of ever new sizes
                self._workspaces.pop(next(iter(self._workspaces)))
            workspace = self._workspaces[n] = kernels.DenseStepWorkspace(
                n, [layer.units for layer in self.dense], x.dtype)
        grads = [layer.grads for layer in self.dense]
        backend = get_backend()  # one key per Dropout, in layer order, as its forward draws
        dropout = [None if d is None or not d.rate else (d.rate, backend.dropout_key())
                   for d in self.dropouts]
        return kernels.dense_step(
            x, labels, [p["kernel"] for p in params], [p.get("bias") for p in params],
            self.relu, rate, None if rate is not None else [g["kernel"] for g in grads],
            [g.get("bias") for g in grads], workspace, dropout)


class _Shape:
    """The logits' shape, dtype and ndim, all the loss's label preparation reads of them."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)


def plan(model, previous=None):
    """A `DenseStackStep` for the model, or None where its step is not of this form
    (`previous`, the model's last plan, lends its buffers when the layers are the same)."""
    from .layers import Dense, Dropout, Flatten, InputLayer
    from .layers.core import Input
    from .models import Sequential
    if not isinstance(model, Sequential) or not model.trainable:
        return None
    layers = [layer for layer in model.layers if not isinstance(layer, (Input, InputLayer))]
    flatten = bool(layers) and isinstance(layers[0], Flatten)
    dense, dropouts = [], []
    for layer in layers[1:] if flatten else layers:
        if type(layer) is Dense:
            dense.append(layer)
            dropouts.append(None)
        elif type(layer) is Dropout and dense and dropouts[-1] is None \
                and not layer._fixed_mask:
            dropouts[-1] = layer
        else:
            return None
    if not dense or dropouts[-1] is not None:
        return None
    shared = (model._graph or {}).get("shared", ())
    if any(not layer.trainable or layer.regularizers or id(layer) in shared
           for layer in dense + [d for d in dropouts if d is not None]):
        return None
    for layer in dense[:-1]:
        name = layer.activation.name
        if not (name == "linear" or (name == "relu" and layer.use_bias)):
            return None
    loss = model.loss
    if (not callable(getattr(loss, "_kernel_labels", None))
            or not getattr(loss, "fuses_with_softmax", False)
            or getattr(loss, "_reduction", lambda: None)() not in _REDUCTIONS):
        return None
    last = dense[-1].activation.name
    if not ((last == "softmax" and model._fused)
            or (last == "linear" and getattr(loss, "from_logits", False))):
        return None
    step = DenseStackStep(model, dense, dropouts[:-1], flatten)
    if previous is not None and previous.dense == dense and previous.relu == step.relu:
        step._workspaces = previous._workspaces
    return step

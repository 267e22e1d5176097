"""One training step of a stack of Dense layers as one call: forward (GEMM, bias, ReLU),
softmax-cross-entropy and backward, ending either in the layers' gradients (for any
optimizer to apply) or, given a plain-SGD `rate`, in the update itself, folded into each
weight gradient's GEMM (`kernel += -rate * a^T dz`, `bias -= rate * sum(dz)`).

Why (issue 13, the MLP 784-512-512-10 at batch 128 on 2 cores): layer by layer, the step's
~20 kernel and GEMM calls each return to Python and allocate their output, about 0.3 ms of a
~1.9 ms step. The Numba form runs the whole step in one compiled function on buffers kept
between steps (`Workspace`), and calls MKL's `cblas_sgemm` itself (its address bound as an
LLVM symbol, `_mkl.sgemm_address`), with serial builds of the kernels the layers call
(`bias_relu`, `relu_bias_grad`, softmax-cross-entropy, SGD): the same arithmetic as the layer path, so the same gradients and weights up to MKL's
rounding (which may depend on the buffers' alignment).

Layers: `relu[l]` says whether hidden layer l applies bias + ReLU (it must then have a
bias), else it is linear; the last layer gives the logits. `biases[l]` is None for a layer
without bias. Labels: class indices (N,) or probabilities (N, classes), as
`softmax_cross_entropy` takes them. Gradients: with `rate`, `bias_grads` (optional) receive
the bias gradients and the kernels' are never formed; without, `kernel_grads` and
`bias_grads` receive them all and the weights are left as they were. Dropout: `dropout[l]`,
None or (rate, key), drops hidden layer l's output after its activation with the mask
`dropout_mask(like, shape, key, rate)` draws (Dropout's, bit for bit).

Forms: `reference` (array ops, any device) and `numba_cpu` (float32 NumPy arrays with MKL
loaded: `compiled_applies`). The "numba-cuda" entry is the reference (CuPy and cuBLAS): the
model takes this kernel only where the compiled form runs, elsewhere its layers' own kernels.
"""
import numpy

from . import _dispatch, _mkl
from ._jit import cpu_jit, serial_dispatcher
from .bias_relu import _bias_relu_cpu, _relu_bias_grad_cpu
from .dropout_mask import M32, _mask_apply_cpu, threshold_for
from .optimizer_update import _sgd_cpu
from .softmax_cross_entropy import _empty_soft, _prepare, _sce_cpu
from ..backend import aligned_empty, get_array_module
from ..errors import ShapeError

_SYMBOL = "accelnet_mkl_cblas_sgemm"
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _check(x, kernels, biases, relu, rate, kernel_grads, bias_grads, dropout=None):
    if len(kernels) == 0 or len(biases) != len(kernels) or len(relu) != len(kernels) - 1:
        raise ShapeError(f"dense_step: {len(kernels)} kernels, {len(biases)} biases and "
                         f"{len(relu)} ReLU flags; expected one bias per kernel and one flag "
                         f"per hidden layer.")
    width = x.shape[1] if x.ndim == 2 else None
    for l, (w, b) in enumerate(zip(kernels, biases)):
        if w.ndim != 2 or w.shape[0] != width or (b is not None and b.shape != (w.shape[1],)):
            raise ShapeError(f"dense_step: layer {l} has kernel {w.shape} and bias "
                             f"{None if b is None else b.shape} for inputs of width {width} "
                             f"(x {x.shape}).")
        if l < len(relu) and relu[l] and b is None:
            raise ShapeError(f"dense_step: hidden layer {l} has ReLU but no bias.")
        width = w.shape[1]
    if dropout is not None and (len(dropout) != len(relu) or any(
            d is not None and not 0 <= d[0] < 1 for d in dropout)):
        raise ShapeError(f"dense_step: dropout needs one (rate in [0, 1), key) or None per "
                         f"hidden layer, got {dropout!r}.")
    if rate is None and kernel_grads is None:
        raise ShapeError("dense_step: without a rate the gradients need kernel_grads and "
                         "bias_grads to go to.")
    for name, outs, params in (("kernel_grads", kernel_grads, kernels),
                               ("bias_grads", bias_grads, biases)):
        if outs is None:
            continue
        if len(outs) != len(params) or any(
                (p is None) != (g is None) or (g is not None and g.shape != p.shape)
                for g, p in zip(outs, params)):
            raise ShapeError(f"dense_step: {name} must match the layers' shapes, got "
                             f"{[None if g is None else g.shape for g in outs]}.")


def reference(x, labels, kernels, biases, relu, rate=None, kernel_grads=None, bias_grads=None,
              workspace=None, dropout=None):
    """Array-op form; returns (mean loss, logits). See the module for the two endings."""
    _check(x, kernels, biases, relu, rate, kernel_grads, bias_grads, dropout)
    xp = get_array_module(x)
    from .dropout_mask import reference as drop_mask
    from .softmax_cross_entropy import reference as sce
    inputs, outputs, masks = [x], [], [None] * len(relu)
    for l, (w, b) in enumerate(zip(kernels, biases)):
        z = inputs[-1] @ w
        if b is not None:
            z += b
        if l < len(relu) and relu[l]:
            z = xp.maximum(z, 0)
        outputs.append(z)
        if l < len(relu) and dropout is not None and dropout[l] is not None and dropout[l][0]:
            masks[l] = drop_mask(z, z.shape, dropout[l][1], dropout[l][0])
            z = z * masks[l]
        inputs.append(z)
    logits = inputs.pop()
    loss, dz = sce(logits, labels)
    for l in range(len(kernels) - 1, -1, -1):
        w, b = kernels[l], biases[l]
        bias_grad = None if b is None else dz.sum(axis=0)
        if bias_grad is not None and bias_grads is not None:
            bias_grads[l][...] = bias_grad
        dx = dz @ w.T if l else None
        if rate is None:
            kernel_grads[l][...] = inputs[l].T @ dz
        else:
            w -= rate * (inputs[l].T @ dz)
            if b is not None:
                b -= rate * bias_grad
        if l:
            if masks[l - 1] is not None:
                dx = dx * masks[l - 1]
            dz = xp.where(outputs[l - 1] > 0, dx, 0) if relu[l - 1] else dx
    return loss, logits


class Workspace:
    """The Numba form's buffers for one batch size and layer widths, kept between steps."""

    def __init__(self, rows, widths, dtype):
        self.key = (rows, tuple(widths), numpy.dtype(dtype))
        def matrices():  # 64-byte aligned: the GEMMs' operands (backend.aligned_empty)
            return tuple(aligned_empty((rows, w), dtype) for w in widths)

        self.acts = matrices()
        self.grads = matrices()
        # the input gradients before the ReLU's mask: relu_bias_grad reads one array and
        # writes another (given one array for both its loop was not vectorised: 0.22 ms
        # against 0.015 at (128, 512))
        self.input_grads = matrices()
        self.bias_grads = tuple(numpy.empty(w, dtype) for w in widths)
        self.colsums = tuple(numpy.empty(w, numpy.float64) for w in widths)
        self.rows = numpy.empty(rows, numpy.float64)
        self.no_bias = numpy.zeros(0, dtype)
        self.masks = matrices()  # Dropout's
        self.dropped = matrices()  # the next layer's input after Dropout


def compiled_applies(x):
    """Whether `dense_step` runs its compiled form for inputs like x: a float32 NumPy
    array, the Numba family (not ACCELNET_KERNELS=reference) and MKL enabled."""
    return (type(x) is numpy.ndarray and x.dtype == numpy.float32 and _mkl.enabled()
            and _dispatch.current_implementation("dense_step", x) == "numba-cpu")


def numba_cpu(x, labels, kernels, biases, relu, rate=None, kernel_grads=None, bias_grads=None,
              workspace=None, dropout=None):
    """Numba CPU form (float32, MKL): one compiled call. `workspace` (a `Workspace` for x's
    rows and the layers' widths) is reused; another is made where it does not fit."""
    _check(x, kernels, biases, relu, rate, kernel_grads, bias_grads, dropout)
    arrays = list(kernels) + [b for b in biases if b is not None]
    arrays += [g for g in (kernel_grads or ()) if g is not None]
    arrays += [g for g in (bias_grads or ()) if g is not None]
    if not (x.dtype == numpy.float32 and _mkl.enabled() and all(
            type(a) is numpy.ndarray and a.dtype == x.dtype and a.flags.c_contiguous
            for a in arrays)):
        return reference(x, labels, kernels, biases, relu, rate, kernel_grads, bias_grads,
                         dropout=dropout)
    x = numpy.ascontiguousarray(x)
    n = x.shape[0]
    widths = [w.shape[1] for w in kernels]
    if workspace is None or workspace.key != (n, tuple(widths), x.dtype):
        workspace = Workspace(n, widths, x.dtype)
    ws = workspace
    logits = ws.acts[-1]
    _, soft, labels = _prepare(logits, labels)
    hard = numpy.zeros(0, numpy.int64) if soft else labels
    soft_labels = labels if soft else _empty_soft(x.dtype, numpy)
    flags = numpy.array(list(relu) + [False], numpy.bool_)
    if bias_grads is None:
        bias_grads = ws.bias_grads
    bias_outs = tuple(ws.no_bias if g is None else g for g in bias_grads)
    fold = rate is not None
    t = x.dtype.type
    depth = len(kernels)
    drops = [None if dropout is None or l >= depth - 1 else dropout[l] for l in range(depth)]
    drops = [d if d is not None and d[0] else None for d in drops]
    keys = numpy.array([0 if d is None else d[1] & M32 for d in drops], numpy.uint64)
    thresholds = numpy.array([0 if d is None else threshold_for(d[0]) for d in drops],
                             numpy.uint64)
    scales = numpy.array([0 if d is None else t(1.0 / (1.0 - d[0])) for d in drops], x.dtype)
    inputs = tuple(ws.acts[l] if drops[l] is None else ws.dropped[l] for l in range(depth))
    _step()(x, hard, soft_labels, tuple(kernels),
            tuple(ws.no_bias if b is None else b for b in biases), flags, ws.acts, inputs,
            ws.masks, numpy.array([d is not None for d in drops]), keys, thresholds, scales,
            ws.grads, ws.input_grads, tuple(kernels) if fold else tuple(kernel_grads), bias_outs,
            ws.colsums,
            ws.rows, fold, t(rate if fold else 0), t(-rate if fold else 0))
    loss = numpy.asarray(ws.rows.sum() / n, dtype=x.dtype)  # = rows.mean(), as the loss kernel
    return loss, logits.copy()


_compiled = []


def _step():
    """The compiled step, with MKL's sgemm bound to `_SYMBOL` (once per process)."""
    if not _compiled:
        import llvmlite.binding
        from numba import types
        llvmlite.binding.add_symbol(_SYMBOL, _mkl.sgemm_address())
        i, p, f = types.intc, types.intp, types.float32
        globals()["_sgemm"] = types.ExternalFunction(
            _SYMBOL, types.void(i, i, i, i, i, i, f, p, i, p, i, f, p, i))
        globals().update(_bias_relu_serial=serial_dispatcher(_bias_relu_cpu),
                         _sce_serial=serial_dispatcher(_sce_cpu),
                         _sgd_serial=serial_dispatcher(_sgd_cpu),
                         _mask_apply_serial=serial_dispatcher(_mask_apply_cpu),
                         _relu_bias_grad_serial=serial_dispatcher(_relu_bias_grad_cpu))
        _compiled.append(_step_cpu.dispatcher())
    return _compiled[0]


# bound by _step() before the first compile: MKL's sgemm, and serial builds of the layers'
# kernels (the step's machine code, cached on disk, has them compiled in)
_sgemm = _bias_relu_serial = _sce_serial = _sgd_serial = _mask_apply_serial = None
_relu_bias_grad_serial = None


@cpu_jit(parallel=False, nogil=True, error_model="numpy")  # serial: MKL has the threads
def _step_cpu(x, labels, soft, kernels, biases, relu, acts, inputs, masks, drop, keys,
              thresholds, scales, grads, input_grads, kernel_grads, bias_grads, colsums, rows,
              fold, rate, neg_rate):
    """acts[l]: layer l's output after its activation; inputs[l]: what layer l + 1 reads
    (acts[l], or its dropped copy, masks[l] holding Dropout's mask)."""
    n = x.shape[0]
    depth = len(kernels)
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    for l in range(depth):  # forward: z = a @ W, then bias + ReLU or bias
        w = kernels[l]
        k, f = w.shape
        a = x if l == 0 else inputs[l - 1]
        z = acts[l]
        _sgemm(_ROW_MAJOR, _NO_TRANS, _NO_TRANS, n, f, k, one, a.ctypes.data, k,
               w.ctypes.data, f, zero, z.ctypes.data, f)
        b = biases[l]
        if relu[l]:
            _bias_relu_serial(z, b)
        elif b.shape[0]:
            for r in range(n):
                for j in range(f):
                    z[r, j] += b[j]
        if drop[l]:  # Dropout's forward: mask and z * mask in one pass
            _mask_apply_serial(z.reshape(-1), masks[l].reshape(-1), inputs[l].reshape(-1),
                               numpy.uint64(0), keys[l], thresholds[l], scales[l])
    _sce_serial(acts[depth - 1], labels, soft, grads[depth - 1], rows)
    for l in range(depth - 1, -1, -1):  # backward: grads[l] holds dloss/dz of layer l
        w = kernels[l]
        k, f = w.shape
        a = x if l == 0 else inputs[l - 1]
        dz = grads[l]
        b = biases[l]
        g = bias_grads[l]
        if relu[l]:  # relu_bias_grad's float64 column sums, as the layer stores them
            colsum = colsums[l]
            for j in range(f):
                g[j] = colsum[j]
        elif b.shape[0]:  # NumPy's sum over axis 0: row after row, in the dtype
            for j in range(f):
                g[j] = dz[0, j]
            for r in range(1, n):
                for j in range(f):
                    g[j] += dz[r, j]
        if l:  # the input gradient, from the kernel before this step's update
            dx = input_grads[l - 1] if relu[l - 1] else grads[l - 1]
            _sgemm(_ROW_MAJOR, _NO_TRANS, _TRANS, n, k, f, one, dz.ctypes.data, f,
                   w.ctypes.data, f, zero, dx.ctypes.data, k)
        if fold:  # kernel += -rate * a^T dz inside the product
            _sgemm(_ROW_MAJOR, _TRANS, _NO_TRANS, k, f, n, neg_rate, a.ctypes.data, k,
                   dz.ctypes.data, f, one, w.ctypes.data, f)
            if b.shape[0]:
                _sgd_serial(b, g, rate, one)
        else:
            _sgemm(_ROW_MAJOR, _TRANS, _NO_TRANS, k, f, n, one, a.ctypes.data, k,
                   dz.ctypes.data, f, zero, kernel_grads[l].ctypes.data, f)
        if l and drop[l - 1]:  # Dropout's backward: dy * mask
            mask = masks[l - 1]
            for r in range(n):
                for j in range(k):
                    dx[r, j] = dx[r, j] * mask[r, j]
        if l and relu[l - 1]:
            _relu_bias_grad_serial(dx, acts[l - 1], grads[l - 1], colsums[l - 1])


def dense_step(x, labels, kernels, biases, relu, rate=None, kernel_grads=None, bias_grads=None,
               workspace=None, dropout=None):
    """One training step of a Dense stack on batch x: with `rate`, the plain-SGD update in
    place; without, the gradients into kernel_grads and bias_grads. Returns (mean
    softmax-cross-entropy loss as a 0-d array, the logits). See the module."""
    return _dispatch.form("dense_step", x)(x, labels, kernels, biases, relu, rate, kernel_grads,
                                           bias_grads, workspace, dropout)

"""Fused softmax + cross-entropy: `(loss, dlogits)` from logits in one pass per row.

    loss    = mean_i  -log softmax(logits_i)[label_i]          (0-d array, logits' dtype)
    dlogits = (softmax(logits) - onehot(labels)) / N            (logits' dtype)

Labels are class indices (N,) (any int dtype, or floats holding integers), or soft labels
(N, C) p: loss = -mean_i sum_j p_ij log softmax_ij, dlogits = (sum_j p_ij * softmax - p)/N
(= softmax - p for rows that sum to 1; terms with p_ij == 0 are skipped, so -inf logits
with zero probability give no NaN). Row math uses the shifted log-sum-exp (stable for
logits of +-1e4 in float32); the Numba forms accumulate each row in float64.

Bad class indices raise InvalidArgumentError. On the CPU they are found with one vectorized
min/max before the kernel. On the GPU nothing syncs per batch: the kernel records the
first bad label it meets in a small device flag (its row gets loss 0 and gradient 0) and
`check_errors()`, which the training loop calls once per epoch, raises and resets it.
"""
import contextlib
import math
import sys

import numpy

from ..backend import get_array_module, to_numpy
from ..errors import InvalidArgumentError, InvalidDTypeError, ShapeError
from . import _dispatch
from ._cuda import cuda_jit, launch, simulator
from ._jit import cpu_jit, prange

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled

_flags = {}  # (array module, device id) -> int64[4]: [set, bad label, its index, classes]


def _prepare(logits, labels, check_host=True):
    """Validate; return (xp, soft, labels) with labels contiguous int64 (N,) or
    logits-dtype (N, C) on logits' device. Bad int labels of NumPy arrays raise here
    when `check_host`."""
    xp = get_array_module(logits, labels)
    if logits.ndim != 2:
        raise ShapeError(f"softmax_cross_entropy: logits must be 2-D (batch, classes), "
                         f"got shape {logits.shape}.")
    n, c = logits.shape
    if n == 0 or c == 0:
        raise ShapeError(f"softmax_cross_entropy: logits of shape {logits.shape} are empty.")
    if logits.dtype.kind != "f":
        raise InvalidDTypeError(f"softmax_cross_entropy: logits must be floating point, "
                                f"got dtype {logits.dtype}.")
    labels = xp.asarray(labels)
    if labels.ndim == 2 and labels.shape == logits.shape:
        return xp, True, xp.ascontiguousarray(labels, dtype=logits.dtype)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ShapeError(f"softmax_cross_entropy: labels must be class indices of shape "
                         f"({n},) or probabilities of shape {logits.shape}; got labels of "
                         f"shape {labels.shape} for logits of shape {logits.shape}.")
    if labels.dtype.kind not in "iubf":
        raise InvalidDTypeError(f"softmax_cross_entropy: labels have dtype {labels.dtype}; "
                                f"expected integer class indices.")
    if check_host and xp is numpy:
        _raise_bad_labels(labels, c)
    return xp, False, xp.ascontiguousarray(labels, dtype=numpy.int64)


def _raise_bad_labels(labels, c):
    """Host check of class indices: one vectorized pass, details only on failure."""
    if labels.dtype.kind == "f":
        bad = ~(labels == numpy.floor(labels)) | (labels < 0) | (labels >= c)
    elif labels.dtype.kind == "b" or (labels.min() >= 0 and labels.max() < c):
        return
    else:
        bad = (labels < 0) | (labels >= c)
    if bad.any():
        i = int(numpy.flatnonzero(bad)[0])
        raise InvalidArgumentError(
            f"softmax_cross_entropy: label {labels[i]} at index {i} is out of range for "
            f"{c} classes (valid labels are 0..{c - 1}).")


def _flag(xp):
    """The device-side bad-label flag of xp's current device (created once)."""
    device = xp.cuda.Device().id if xp.__name__.startswith("cupy") else None
    key = (xp.__name__, device)
    if key not in _flags:
        _flags[key] = xp.zeros(4, dtype=xp.int64)
    return _flags[key]


def _flag_bad_labels(xp, labels, c):
    """Array-op version of the kernel's flag update (no host sync). Returns the mask."""
    flag = _flag(xp)
    bad = (labels < 0) | (labels >= c)
    first = xp.argmax(bad)
    take = (flag[0] == 0) & bad[first]
    found = xp.stack([labels[first], first.astype(xp.int64), xp.full((), c, dtype=xp.int64)])
    flag[1:] = xp.where(take, found, flag[1:])
    flag[0] = xp.where(take, 1, flag[0])
    return bad


def check_errors():
    """Raise InvalidArgumentError if a device kernel met a bad label since the last call,
    then reset the flag. One host sync per device that ran the loss; free otherwise."""
    for (module, device), flag in list(_flags.items()):
        with _on_device(module, device):
            is_set, value, index, c = (int(v) for v in to_numpy(flag))  # the one sync
            if is_set:
                flag[...] = 0
        if is_set:
            raise InvalidArgumentError(
                f"softmax_cross_entropy: label {value} at index {index} (of its batch) is "
                f"out of range for {c} classes (valid labels are 0..{c - 1}); found on the "
                f"device since the last check_errors().")


def _on_device(module, device):
    """Context making CuPy device `device` current (a no-op for other array modules)."""
    if device is None:
        return contextlib.nullcontext()
    return sys.modules[module].cuda.Device(device)


def reference(logits, labels):
    """Pure NumPy/CuPy form (row math in logits' dtype)."""
    xp, soft, labels = _prepare(logits, labels)
    n, c = logits.shape
    bad = None
    if not soft and xp is not numpy:
        bad = _flag_bad_labels(xp, labels, c)
        labels = xp.clip(labels, 0, c - 1)
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=1, keepdims=True)
    logp = z - xp.log(s)
    prob = e / s
    if soft:
        with numpy.errstate(invalid="ignore"):  # 0 * -inf, masked out by the where
            rows = -xp.where(labels != 0, labels * logp, 0).sum(axis=1)
        dx = prob * labels.sum(axis=1, keepdims=True) - labels
    else:
        rows = -xp.take_along_axis(logp, labels[:, None], axis=1)[:, 0]
        dx = prob - (xp.arange(c) == labels[:, None])
    dx /= n
    if bad is not None:
        rows = xp.where(bad, 0, rows)
        dx = xp.where(bad[:, None], 0, dx)
    return xp.asarray(rows.mean(), dtype=logits.dtype), dx.astype(logits.dtype, copy=False)


@cpu_jit()
def _sce_cpu(x, labels, soft, dx, rows):
    n, c = x.shape
    for i in prange(n):
        m = -numpy.inf
        for j in range(c):
            if x[i, j] > m:
                m = numpy.float64(x[i, j])
        s = 0.0
        for j in range(c):
            e = math.exp(x[i, j] - m)
            dx[i, j] = e
            s += e
        lse = math.log(s)
        if soft.shape[0]:  # soft labels
            psum = 0.0
            acc = 0.0
            for j in range(c):
                p = numpy.float64(soft[i, j])
                psum += p
                if p != 0:
                    acc += p * ((m - x[i, j]) + lse)
            for j in range(c):
                dx[i, j] = (dx[i, j] * psum / s - soft[i, j]) / n
            rows[i] = acc
        else:
            k = labels[i]
            scale = 1.0 / (s * n)  # one division per row, not two per element
            for j in range(c):
                dx[i, j] = dx[i, j] * scale
            dx[i, k] = (math.exp(x[i, k] - m) / s - 1.0) / n  # exact 0 when p == 1
            rows[i] = (m - x[i, k]) + lse


def _empty_soft(dtype, xp):
    return xp.zeros((0, 0), dtype=dtype)


def numba_cpu(logits, labels):
    """Numba CPU form: rows in parallel (prange), float64 row accumulators."""
    _, soft, labels = _prepare(logits, labels)
    x = numpy.ascontiguousarray(logits)
    n = x.shape[0]
    dx = numpy.empty_like(x)
    rows = numpy.empty(n, dtype=numpy.float64)
    if soft:
        _sce_cpu(x, numpy.zeros(0, dtype=numpy.int64), labels, dx, rows)
    else:
        _sce_cpu(x, labels, _empty_soft(x.dtype, numpy), dx, rows)
    return numpy.asarray(rows.sum() / n, dtype=logits.dtype), dx  # = rows.mean(), bit for bit


WARP = 32  # threads per row: one warp reduces a row's max and sums
ROWS_PER_BLOCK = 4  # rows per block of WARP x ROWS_PER_BLOCK threads


@cuda_jit
def _sce_cuda(x, labels, soft, dx, rows, flag):
    """One warp per row (threadIdx.x = lane, threadIdx.y = row of the block): each lane
    strides over the columns, then a shared-memory tree reduces max, sum(exp) and, for
    soft labels, sum(p) and sum(p * (m - x)). Rows beyond n take part in the barriers only."""
    n, c = x.shape
    lane = cuda.threadIdx.x
    r = cuda.threadIdx.y
    red = cuda.shared.array((3, ROWS_PER_BLOCK, WARP), numpy.float64)
    is_soft = soft.shape[0] != 0
    for base in range(cuda.blockIdx.x * ROWS_PER_BLOCK, n, cuda.gridDim.x * ROWS_PER_BLOCK):
        i = base + r
        active = i < n
        m = -math.inf
        if active:
            for j in range(lane, c, WARP):
                if x[i, j] > m:
                    m = numpy.float64(x[i, j])
        red[0, r, lane] = m
        cuda.syncthreads()
        w = WARP // 2
        while w > 0:
            if lane < w and red[0, r, lane + w] > red[0, r, lane]:
                red[0, r, lane] = red[0, r, lane + w]
            cuda.syncthreads()
            w //= 2
        m = red[0, r, 0]
        cuda.syncthreads()
        s = 0.0
        psum = 0.0
        pgap = 0.0  # sum of p * (m - x): the soft loss is pgap + psum * lse
        if active:
            for j in range(lane, c, WARP):
                e = math.exp(x[i, j] - m)
                dx[i, j] = e
                s += e
                if is_soft:
                    p = numpy.float64(soft[i, j])
                    psum += p
                    if p != 0:
                        pgap += p * (m - x[i, j])
        red[0, r, lane] = s
        red[1, r, lane] = psum
        red[2, r, lane] = pgap
        cuda.syncthreads()
        w = WARP // 2
        while w > 0:
            if lane < w:
                red[0, r, lane] += red[0, r, lane + w]
                red[1, r, lane] += red[1, r, lane + w]
                red[2, r, lane] += red[2, r, lane + w]
            cuda.syncthreads()
            w //= 2
        s = red[0, r, 0]
        psum = red[1, r, 0]
        pgap = red[2, r, 0]
        cuda.syncthreads()
        if active:
            lse = math.log(s)
            if is_soft:
                for j in range(lane, c, WARP):
                    dx[i, j] = (dx[i, j] * psum / s - soft[i, j]) / n
                if lane == 0:
                    rows[i] = pgap + psum * lse
            else:
                k = labels[i]
                if k < 0 or k >= c:
                    if lane == 0:
                        if cuda.atomic.compare_and_swap(flag, 0, 1) == 0:
                            flag[1] = k
                            flag[2] = i
                            flag[3] = c
                        rows[i] = 0.0
                    for j in range(lane, c, WARP):
                        dx[i, j] = 0
                else:
                    for j in range(lane, c, WARP):
                        dx[i, j] = (dx[i, j] / s - (1.0 if j == k else 0.0)) / n
                    if lane == 0:
                        rows[i] = (m - x[i, k]) + lse


def numba_cuda(logits, labels):
    """Numba CUDA form: one warp per row (row-parallel reductions in shared memory), four
    rows per block; bad labels set the device flag."""
    xp, soft, labels = _prepare(logits, labels, check_host=False)
    x = xp.ascontiguousarray(logits)
    n = x.shape[0]
    dx = xp.empty(x.shape, dtype=x.dtype)
    rows = xp.empty(n, dtype=xp.float64)
    if soft:
        ints, soft_labels = xp.zeros(1, dtype=xp.int64), labels
    else:
        ints, soft_labels = labels, _empty_soft(x.dtype, xp)
    if n:
        blocks = min(-(-n // ROWS_PER_BLOCK), 4 if simulator() else 65535)
        launch(_sce_cuda, blocks, (WARP, ROWS_PER_BLOCK), x, ints, soft_labels, dx, rows,
               _flag(xp))
    return xp.asarray(rows.mean(), dtype=logits.dtype), dx


def softmax_cross_entropy(logits, labels):
    """(mean loss as a 0-d array, dloss/dlogits), both in logits' dtype and device."""
    hint = logits.shape[-1] if getattr(logits, "ndim", 0) == 2 else None  # classes
    return _dispatch.form("softmax_cross_entropy", logits, size_hint=hint)(logits, labels)

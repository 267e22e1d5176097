"""Optimizer updates in one pass over each parameter, in place (Keras 3's formulas).

    adam_update(p, g, m, v, step_size, beta_1, beta_2, epsilon, v_hat=None, decay=None) -> p
        m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²;  with v_hat: v_hat = max(v_hat, v),
        used in place of v;  p = p·decay − step_size · m / (√v + ε)
        (step_size = lr·√(1−β2ᵗ)/(1−β1ᵗ), Keras's bias correction, from the caller).
    sgd_update(p, g, lr, momentum=0.0, v=None, nesterov=False, decay=None) -> p
        p = p·decay − lr·g;  with momentum: v = momentum·v − lr·g, then
        p = p·decay + v (Nesterov: + momentum·v − lr·g).

Subnormal moments are flushed to +0 when they are stored (m, v; momentum's v), in every
form: a slot whose gradient stays exactly 0 (a dead ReLU unit, an input pixel that is 0 in
every image) decays geometrically and, in float32, turns subnormal after ~850 Adam steps
(0.9ᵗ); x86 arithmetic on subnormals takes a microcode assist per operation (Fashion-MNIST's
MLP with Adam: its third epoch ran 1.5x slower than its first). TensorFlow's and XLA's CPU
kernels flush subnormals as well; the largest change to a weight is step·FLT_MIN/ε ≈ 1e-34.
NaN is kept (the test is |x| < tiny, false for NaN).

`decay` is decoupled weight decay's factor 1 − lr·weight_decay (None: none). The
reference form is the NumPy/CuPy arithmetic of several in-place passes; the Numba forms do
the same float operations in the same order, in the parameter's dtype (every scalar is
rounded to it first, as NumPy does with a Python float), so the CPU forms agree to the
bit (the CUDA compiler may fuse a multiply-add: to rounding there). All arrays have p's
shape; the Numba forms need them C-contiguous and of p's dtype, else the reference runs.
"""
import math

import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _dispatch, _workers
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit, prange

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled


def _check(name, p, *others):
    for a in others:
        if a is not None and a.shape != p.shape:
            raise ShapeError(f"{name}: an array of shape {a.shape} given for a parameter of "
                             f"shape {p.shape}.")


def _flat(p, *others):
    """1-D views of p and the others when all are C-contiguous in p's dtype, else None."""
    dtype = p.dtype
    flat = [p.reshape(-1)] if p.flags.c_contiguous else None
    for a in others:
        if flat is None or not a.flags.c_contiguous or a.dtype != dtype:
            return None
        flat.append(a.reshape(-1))
    return flat


def flush_subnormal(a):
    """Set a's subnormal entries to +0, in place (NaN and inf stay); returns a. What the
    optimizers apply to a decaying slot after updating it (see the module docstring)."""
    xp = get_array_module(a)  # copyto(where=): elementwise, no count of the hits (no host sync)
    xp.copyto(a, 0, where=xp.abs(a) < numpy.finfo(a.dtype).tiny)
    return a


def _tiny(dtype):
    return numpy.dtype(dtype).type(numpy.finfo(dtype).tiny)


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def reference_adam(p, g, m, v, step_size, beta_1, beta_2, epsilon, v_hat=None, decay=None):
    """Pure NumPy/CuPy form: several in-place passes."""
    _check("adam_update", p, g, m, v, v_hat)
    xp = get_array_module(p)
    if decay is not None:
        p *= decay
    m *= beta_1
    m += (1.0 - beta_1) * g
    flush_subnormal(m)
    v *= beta_2
    v += (1.0 - beta_2) * (g * g)
    flush_subnormal(v)
    if v_hat is not None:
        xp.maximum(v_hat, v, out=v_hat)
        v = v_hat
    denom = xp.sqrt(v)
    denom += epsilon
    p -= step_size * (m / denom)
    return p


def reference_sgd(p, g, lr, momentum=0.0, v=None, nesterov=False, decay=None):
    """Pure NumPy/CuPy form."""
    _check("sgd_update", p, g, v)
    if decay is not None:
        p *= decay
    if not momentum:
        p -= lr * g
        return p
    v *= momentum
    v -= lr * g
    flush_subnormal(v)
    if nesterov:
        p += momentum * v - lr * g
    else:
        p += v
    return p


def _adam_scalars(dtype, step_size, beta_1, beta_2, epsilon, decay):
    t = dtype.type
    return (t(step_size), t(beta_1), t(1.0 - beta_1), t(beta_2), t(1.0 - beta_2), t(epsilon),
            t(1.0 if decay is None else decay), _tiny(dtype))


def _sgd_scalars(dtype, lr, momentum, decay):
    t = dtype.type
    return t(lr), t(momentum), t(1.0 if decay is None else decay), _tiny(dtype)


# ---------------------------------------------------------------- Numba CPU
# p·1 == p exactly (NaN, inf and -0 included), so "no decay" runs as decay = 1.
# error_model="numpy": x/0 gives inf/NaN as in NumPy, with no zero check in the loop (the
# check keeps LLVM from vectorizing it: measured 3x slower at mnist_cnn's dense kernel).

@cpu_jit(nogil=True, error_model="numpy")
def _adam_cpu(p, g, m, v, step, b1, c1, b2, c2, eps, decay, tiny):
    zero = tiny - tiny
    for i in prange(p.size):
        gi = g[i]
        mi = m[i] * b1 + c1 * gi
        vi = v[i] * b2 + c2 * (gi * gi)
        mi = zero if abs(mi) < tiny else mi  # subnormal -> +0 (a select: still vectorised)
        vi = zero if vi < tiny else vi  # v >= 0 (or NaN, kept)
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - step * (mi / (math.sqrt(vi) + eps))


@cpu_jit(nogil=True, error_model="numpy")
def _amsgrad_cpu(p, g, m, v, v_hat, step, b1, c1, b2, c2, eps, decay, tiny):
    zero = tiny - tiny
    for i in prange(p.size):
        gi = g[i]
        mi = m[i] * b1 + c1 * gi
        vi = v[i] * b2 + c2 * (gi * gi)
        mi = zero if abs(mi) < tiny else mi
        vi = zero if vi < tiny else vi
        m[i] = mi
        v[i] = vi
        h = v_hat[i]
        if not h != h and not h >= vi:  # NaN stays NaN, as numpy.maximum
            h = vi
        v_hat[i] = h
        p[i] = p[i] * decay - step * (mi / (math.sqrt(h) + eps))


@cpu_jit(nogil=True, error_model="numpy")
def _sgd_cpu(p, g, lr, decay):
    for i in prange(p.size):
        p[i] = p[i] * decay - lr * g[i]


@cpu_jit(nogil=True, error_model="numpy")
def _momentum_cpu(p, g, v, lr, momentum, nesterov, decay, tiny):
    zero = tiny - tiny
    for i in prange(p.size):
        step = lr * g[i]
        vi = v[i] * momentum - step
        vi = zero if abs(vi) < tiny else vi
        v[i] = vi
        if nesterov:
            p[i] = p[i] * decay + (momentum * vi - step)
        else:
            p[i] = p[i] * decay + vi


def numba_cpu_adam(p, g, m, v, step_size, beta_1, beta_2, epsilon, v_hat=None, decay=None):
    """Numba CPU form: one pass reads p, g, m, v (v_hat) and writes them back."""
    _check("adam_update", p, g, m, v, v_hat)
    flat = _flat(p, g, m, v, *(() if v_hat is None else (v_hat,)))
    if flat is None:
        return reference_adam(p, g, m, v, step_size, beta_1, beta_2, epsilon, v_hat, decay)
    kernel = _adam_cpu if v_hat is None else _amsgrad_cpu
    _split(kernel, flat, _adam_scalars(p.dtype, step_size, beta_1, beta_2, epsilon, decay))
    return p


def numba_cpu_sgd(p, g, lr, momentum=0.0, v=None, nesterov=False, decay=None):
    """Numba CPU form: one pass over p and g (and v with momentum)."""
    _check("sgd_update", p, g, v)
    flat = _flat(p, g, *(() if not momentum else (v,)))
    if flat is None:
        return reference_sgd(p, g, lr, momentum, v, nesterov, decay)
    lr, momentum, decay, tiny = _sgd_scalars(p.dtype, lr, momentum, decay)
    if momentum:
        _split(_momentum_cpu, flat, (lr, momentum, bool(nesterov), decay, tiny))
    else:
        _split(_sgd_cpu, flat, (lr, decay))  # no slot: nothing decays
    return p


def _split(kernel, flat, scalars):
    """kernel(*flat, *scalars), elementwise: a parameter of at least
    `_workers.MIN_SPLIT_BYTES` in one slice per worker thread (mnist_cnn's 1.2 M-weight
    dense kernel: Adam 0.64 -> 0.48-0.62 ms on 2 cores, min of 50), else one call."""
    _workers.split_batch(flat[0], flat[0].size,
                         lambda a, b: kernel(*(f[a:b] for f in flat), *scalars))


# ---------------------------------------------------------------- Numba CUDA

@cuda_jit
def _adam_cuda(p, g, m, v, step, b1, c1, b2, c2, eps, decay, tiny, n):
    zero = tiny - tiny
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        gi = g[i]
        mi = m[i] * b1 + c1 * gi
        vi = v[i] * b2 + c2 * (gi * gi)
        mi = zero if abs(mi) < tiny else mi
        vi = zero if vi < tiny else vi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] * decay - step * (mi / (math.sqrt(vi) + eps))


@cuda_jit
def _amsgrad_cuda(p, g, m, v, v_hat, step, b1, c1, b2, c2, eps, decay, tiny, n):
    zero = tiny - tiny
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        gi = g[i]
        mi = m[i] * b1 + c1 * gi
        vi = v[i] * b2 + c2 * (gi * gi)
        mi = zero if abs(mi) < tiny else mi
        vi = zero if vi < tiny else vi
        m[i] = mi
        v[i] = vi
        h = v_hat[i]
        if not h != h and not h >= vi:
            h = vi
        v_hat[i] = h
        p[i] = p[i] * decay - step * (mi / (math.sqrt(h) + eps))


@cuda_jit
def _sgd_cuda(p, g, lr, decay, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        p[i] = p[i] * decay - lr * g[i]


@cuda_jit
def _momentum_cuda(p, g, v, lr, momentum, nesterov, decay, tiny, n):
    zero = tiny - tiny
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        step = lr * g[i]
        vi = v[i] * momentum - step
        vi = zero if abs(vi) < tiny else vi
        v[i] = vi
        if nesterov:
            p[i] = p[i] * decay + (momentum * vi - step)
        else:
            p[i] = p[i] * decay + vi


def numba_cuda_adam(p, g, m, v, step_size, beta_1, beta_2, epsilon, v_hat=None, decay=None):
    """Numba CUDA form: one thread per element (grid-stride)."""
    _check("adam_update", p, g, m, v, v_hat)
    flat = _flat(p, g, m, v, *(() if v_hat is None else (v_hat,)))
    if flat is None:
        return reference_adam(p, g, m, v, step_size, beta_1, beta_2, epsilon, v_hat, decay)
    if p.size:
        blocks, threads = grid_for(p.size)
        launch(_adam_cuda if v_hat is None else _amsgrad_cuda, blocks, threads, *flat,
               *_adam_scalars(p.dtype, step_size, beta_1, beta_2, epsilon, decay), p.size)
    return p


def numba_cuda_sgd(p, g, lr, momentum=0.0, v=None, nesterov=False, decay=None):
    """Numba CUDA form: one thread per element (grid-stride)."""
    _check("sgd_update", p, g, v)
    flat = _flat(p, g, *(() if not momentum else (v,)))
    if flat is None:
        return reference_sgd(p, g, lr, momentum, v, nesterov, decay)
    if p.size:
        blocks, threads = grid_for(p.size)
        lr, momentum, decay, tiny = _sgd_scalars(p.dtype, lr, momentum, decay)
        if momentum:
            launch(_momentum_cuda, blocks, threads, *flat, lr, momentum, bool(nesterov), decay,
                   tiny, p.size)
        else:
            launch(_sgd_cuda, blocks, threads, *flat, lr, decay, p.size)
    return p


# ---------------------------------------------------------------- public

def adam_update(p, g, m, v, step_size, beta_1, beta_2, epsilon, v_hat=None, decay=None):
    """One Adam (AMSGrad with `v_hat`) step on p, m, v (and v_hat) in place; returns p."""
    arrays = (g, m, v) if v_hat is None else (g, m, v, v_hat)
    return _dispatch.form("adam_update", p, *arrays)(p, g, m, v, step_size, beta_1, beta_2,
                                                     epsilon, v_hat, decay)


def sgd_update(p, g, lr, momentum=0.0, v=None, nesterov=False, decay=None):
    """One SGD step (with momentum: on v too) on p in place; returns p."""
    arrays = (g,) if not momentum else (g, v)
    return _dispatch.form("sgd_update", p, *arrays)(p, g, lr, momentum, v, nesterov, decay)

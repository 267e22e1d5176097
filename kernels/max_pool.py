"""Max pooling on channels-last (N, H, W, C) input that records the argmax, and its backward.

    max_pool(x, pool_size, strides, padding, out=None, argmax=None) -> (out (N, OH, OW, C),
                                                                          argmax (N, OH, OW, C))
    max_pool_backward(grad, argmax, x_shape, pool_size, strides, padding) -> dx
    max_pool_relu_grad(grad, argmax, pooled, x_shape, pool_size, strides, padding, out=None)
        -> (dz (N*H*W, C), bias_grad float64 (C,))

`argmax` is the winner's index p * PW + q inside its window (uint8 for windows of at most
256 cells, else int32). The winner is the first maximum in row-major window order, as in
TensorFlow; NaN wins (the first NaN), as in `numpy.argmax`. 'same' padding is TensorFlow's:
padded cells never win. The backward adds each window's gradient to its winner (windows
that overlap, strides < pool size, add up), so it needs only `argmax`, not x: one pass
forward and one pass backward instead of the compare-and-mask passes of the reference.
Every form writes each output element from one thread; the CUDA backward is a gather (no
atomics), so results are deterministic.

`max_pool_relu_grad` is the backward of bias + ReLU followed by max pooling, taken from the
pooled output instead of the ReLU's: the winner of a window holds the pooled value, so the
ReLU passes its gradient where `pooled > 0`. It is max_pool_backward then `relu_bias_grad`
in one pass over a slice that stays in cache (Conv2D's pooled step), and gives the same
bits as those two kernels in a row (dz, and the bias gradient summed row by row in
float64).
"""

import numpy

from ..backend import get_array_module
from ..errors import ShapeError
from . import _dispatch, _workers
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit, prange
from .im2col import _geometry, reference_col2im, reference_im2col

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled

U = numpy.uint64


def _argmax_dtype(ph, pw):
    return numpy.uint8 if ph * pw <= 256 else numpy.int32


def _check_backward(grad, argmax, x_shape, g):
    n, _, _, c = x_shape
    want = (n, g[4], g[5], c)
    if grad.shape != want or argmax.shape != want:
        raise ShapeError(f"max_pool_backward: grad and argmax must have shape {want} for x of "
                         f"shape {tuple(x_shape)}, got {grad.shape} and {argmax.shape}.")


def _outputs(xp, shape, dtype, kh, kw, out, argmax):
    """(out, argmax) of `shape`: the caller's C-contiguous buffers, checked, or new ones."""
    want = ((out, dtype, "out"), (argmax, _argmax_dtype(kh, kw), "argmax"))
    for given, kind, name in want:
        if given is not None and (given.shape != shape or given.dtype != kind
                                  or not given.flags.c_contiguous):
            raise ShapeError(f"max_pool: {name} must be C-contiguous {numpy.dtype(kind)} of "
                             f"shape {shape}, got {given.dtype} {given.shape}.")
    return tuple(xp.empty(shape, dtype=kind) if given is None else given
                 for given, kind, _ in want)


def _relu_grad_geometry(grad, argmax, pooled, x_shape, pool_size, strides, padding):
    x_shape = tuple(int(v) for v in x_shape)
    g = _geometry(x_shape, pool_size, strides, padding, "max_pool_relu_grad")
    _check_backward(grad, argmax, x_shape, g)
    if pooled.shape != grad.shape:
        raise ShapeError(f"max_pool_relu_grad: pooled {pooled.shape} must have grad's shape "
                         f"{grad.shape}.")
    return x_shape, g


def _check_dz_out(out, x_shape, dtype):
    want = (x_shape[0] * x_shape[1] * x_shape[2], x_shape[3])
    if out is not None and (out.shape != want or out.dtype != dtype):
        raise ShapeError(f"max_pool_relu_grad: out must be {numpy.dtype(dtype)} of shape "
                         f"{want}, got {out.dtype} {out.shape}.")


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def reference(x, pool_size, strides, padding="valid", out=None, argmax=None):
    """Pure NumPy/CuPy form: pad with -inf, im2col, argmax over each window."""
    kh, kw, sh, sw, oh, ow, pad_h, pad_w = _geometry(x.shape, pool_size, strides, padding,
                                                     "max_pool")
    xp = get_array_module(x)
    n, c = x.shape[0], x.shape[3]
    if pad_h != (0, 0) or pad_w != (0, 0):
        x = xp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)), constant_values=-xp.inf)
    cols = reference_im2col(x, (kh, kw), (sh, sw), "valid").reshape(n * oh * ow, kh * kw, c)
    shape = (n, oh, ow, c)
    out, argmax = _outputs(xp, shape, x.dtype, kh, kw, out, argmax)
    arg = cols.argmax(axis=1)
    out[...] = xp.take_along_axis(cols, arg[:, None, :], axis=1).reshape(shape)
    argmax[...] = arg.reshape(shape)
    return out, argmax


def reference_backward(grad, argmax, x_shape, pool_size, strides, padding="valid"):
    """Pure NumPy/CuPy form: one-hot of argmax times grad, col2im, crop the padding."""
    x_shape = tuple(int(v) for v in x_shape)
    g = _geometry(x_shape, pool_size, strides, padding, "max_pool_backward")
    _check_backward(grad, argmax, x_shape, g)
    kh, kw, sh, sw, oh, ow, (top, bottom), (left, right) = g
    xp = get_array_module(grad)
    n, h, w, c = x_shape
    hit = xp.arange(kh * kw)[None, :, None] == argmax.reshape(-1, 1, c).astype(numpy.int64)
    dcols = (hit * grad.reshape(-1, 1, c)).astype(grad.dtype, copy=False)
    padded = (n, h + top + bottom, w + left + right, c)
    dx = reference_col2im(dcols.reshape(n * oh * ow, -1), padded, (kh, kw), (sh, sw), "valid")
    return xp.ascontiguousarray(dx[:, top:top + h, left:left + w, :])


def _masked_backward(backward, grad, argmax, pooled, x_shape, pool_size, strides, padding,
                     out):
    """(dz (rows, C), x_shape) by `backward` (a max_pool_backward form) of grad where
    pooled > 0, written into `out` when given: the array forms of max_pool_relu_grad."""
    x_shape, _ = _relu_grad_geometry(grad, argmax, pooled, x_shape, pool_size, strides,
                                     padding)
    _check_dz_out(out, x_shape, grad.dtype)
    xp = get_array_module(grad)
    masked = xp.where(pooled > 0, grad, xp.zeros((), dtype=grad.dtype))
    dz = backward(masked, argmax, x_shape, pool_size, strides, padding).reshape(-1, x_shape[3])
    if out is not None:
        out[...] = dz
        dz = out
    return dz, x_shape


def reference_relu_grad(grad, argmax, pooled, x_shape, pool_size, strides, padding="valid",
                        out=None):
    """Pure NumPy/CuPy form: grad where pooled > 0, the reference backward, float64 sums."""
    dz, _ = _masked_backward(reference_backward, grad, argmax, pooled, x_shape, pool_size,
                             strides, padding, out)
    return dz, dz.sum(axis=0, dtype=numpy.float64)


# ---------------------------------------------------------------- Numba CPU

@cpu_jit(parallel=False, inline="always")
def _wins(v, best):
    """Whether v takes the window from best: larger, or the first NaN."""
    return v > best or (v != v and best == best)


@cpu_jit(nogil=True)
def _max_pool_cpu(x, out, arg, kh, kw, sh, sw, top, left):
    """Per output position the window's winner and its index. A 2x2 window inside the image
    (the common case) keeps each channel's winner in registers, four selects and one store
    (measured per image, one thread: 28x28x32 'same' 5.2 -> 2.2 us, 24x24x64 5.7 -> 3.2,
    32x32x32 6.9 -> 3.2; same outputs, NaN and inf included);
    other windows compare and store cell by cell."""
    n, h, w, c = x.shape
    _, oh, ow, _ = out.shape
    src, dst, idx = x.reshape(-1), out.reshape(-1), arg.reshape(-1)
    for b in prange(n):  # each sample's output rows are written by one iteration only
        for i in range(oh):
            y0 = i * sh - top
            for j in range(ow):
                z0 = j * sw - left
                o = ((b * oh + i) * ow + j) * c
                if kh == 2 and kw == 2 and y0 >= 0 and z0 >= 0 and y0 + 2 <= h and z0 + 2 <= w:
                    s0 = ((b * h + y0) * w + z0) * c
                    s2 = s0 + w * c
                    for ch in range(c):
                        best, k = src[U(s0 + ch)], 0
                        v = src[U(s0 + c + ch)]
                        t = _wins(v, best)
                        best, k = (v, 1) if t else (best, k)
                        v = src[U(s2 + ch)]
                        t = _wins(v, best)
                        best, k = (v, 2) if t else (best, k)
                        v = src[U(s2 + c + ch)]
                        t = _wins(v, best)
                        best, k = (v, 3) if t else (best, k)
                        dst[U(o + ch)] = best
                        idx[U(o + ch)] = k
                    continue
                first = True
                for p in range(kh):
                    y = y0 + p
                    if y < 0 or y >= h:
                        continue
                    for q in range(kw):
                        z = z0 + q
                        if z < 0 or z >= w:
                            continue
                        s = ((b * h + y) * w + z) * c
                        k = p * kw + q
                        if first:
                            first = False
                            for ch in range(c):
                                dst[U(o + ch)] = src[U(s + ch)]
                                idx[U(o + ch)] = k
                        else:
                            for ch in range(c):
                                v = src[U(s + ch)]
                                if _wins(v, dst[U(o + ch)]):
                                    dst[U(o + ch)] = v
                                    idx[U(o + ch)] = k


@cpu_jit(nogil=True, inline="always", parallel=False)
def _scatter_windows(grad, arg, pooled, d, b, h, w, kh, kw, sh, sw, top, left, masked):
    """Add sample b's window gradients at their winners (where pooled > 0 when `masked`),
    window cell by window cell with the channels innermost (a compare-and-add the compiler
    vectorises; an index decode per element was 2x slower). Each dx cell gets its windows
    in (i, j) order, as a loop over the windows would add them."""
    _, oh, ow, c = grad.shape
    for i in range(oh):
        for j in range(ow):
            gg, aa, pp = grad[b, i, j], arg[b, i, j], pooled[b, i, j]
            for p in range(kh):
                y = i * sh - top + p
                if y < 0 or y >= h:
                    continue
                for q in range(kw):
                    z = j * sw - left + q
                    if z < 0 or z >= w:
                        continue
                    k = p * kw + q
                    base = ((b * h + y) * w + z) * c
                    cell = d[base:base + c]
                    for ch in range(c):
                        if aa[ch] == k and (not masked or pp[ch] > 0):
                            cell[ch] += gg[ch]


@cpu_jit(parallel=False, inline="always")
def _tiles_2x2(h, w, kh, kw, sh, sw, top, left, oh, ow):
    """Whether the windows are 2x2 with stride 2 and tile the input exactly (no padding,
    no overlap, no cell left out): every dx cell is then written once, by its window."""
    return (kh == 2 and kw == 2 and sh == 2 and sw == 2 and top == 0 and left == 0
            and h == 2 * oh and w == 2 * ow)


@cpu_jit(nogil=True, inline="always", parallel=False)
def _write_tiles_2x2(grad, arg, pooled, d, b, h, w, masked):
    """Sample b's dx where the 2x2 windows tile it exactly: each cell gets its window's
    gradient (plus +0.0, as the scatter's add into a zeroed cell) if it won (and the pooled
    value is positive when `masked`), else 0: one store per cell, no zeroing pass and no
    read-modify-write (measured per image, one thread, 28x28x32: backward 7.1 -> 3.7 us,
    with the ReLU mask and bias sum 11.2 -> 8.0; same bits, -0.0 included)."""
    _, oh, ow, c = grad.shape
    zero = grad.dtype.type(0)
    for i in range(oh):
        for j in range(ow):
            gg, aa, pp = grad[b, i, j], arg[b, i, j], pooled[b, i, j]
            for k in range(4):  # the window's cells, one loop over the channels each
                base = ((b * h + 2 * i + k // 2) * w + 2 * j + k % 2) * c
                cell = d[base:base + c]
                for ch in range(c):
                    won = aa[ch] == k and (not masked or pp[ch] > 0)
                    cell[ch] = gg[ch] + zero if won else zero


@cpu_jit(nogil=True)
def _max_pool_backward_cpu(grad, arg, dx, kh, kw, sh, sw, top, left):
    n, h, w, c = dx.shape
    d = dx.reshape(-1)
    tiled = _tiles_2x2(h, w, kh, kw, sh, sw, top, left, grad.shape[1], grad.shape[2])
    for b in prange(n):  # one sample per iteration: its dx block is written by it alone
        if tiled:
            _write_tiles_2x2(grad, arg, grad, d, b, h, w, False)
            continue
        d0 = b * h * w * c
        for e in range(h * w * c):
            d[U(d0 + e)] = 0
        _scatter_windows(grad, arg, grad, d, b, h, w, kh, kw, sh, sw, top, left, False)


@cpu_jit(nogil=True)
def _max_pool_relu_grad_cpu(grad, arg, pooled, dz, acc, h, w, kh, kw, sh, sw, top, left):
    for ch in range(acc.size):
        acc[ch] = 0
    _max_pool_relu_grad_add(grad, arg, pooled, dz, acc, h, w, kh, kw, sh, sw, top, left)


@cpu_jit(nogil=True, parallel=False)
def _max_pool_relu_grad_add(grad, arg, pooled, dz, acc, h, w, kh, kw, sh, sw, top, left):
    """dz (N*H*W, C) from the pooled gradient, where the ReLU passed; its rows' sums added
    into acc row by row (so a caller going block by block sums in the same order)."""
    d = dz.reshape(-1)
    if _tiles_2x2(h, w, kh, kw, sh, sw, top, left, grad.shape[1], grad.shape[2]):
        for b in range(grad.shape[0]):
            _write_tiles_2x2(grad, arg, pooled, d, b, h, w, True)
    else:
        for e in range(d.size):
            d[U(e)] = 0
        for b in range(grad.shape[0]):  # max_pool_backward's scatter, where the ReLU passed
            _scatter_windows(grad, arg, pooled, d, b, h, w, kh, kw, sh, sw, top, left, True)
    c = dz.shape[1]
    for r in range(dz.shape[0]):  # row by row, as relu_bias_grad sums
        for ch in range(c):
            acc[ch] += dz[r, ch]


def numba_cpu(x, pool_size, strides, padding="valid", out=None, argmax=None):
    """Numba CPU form: one pass over x, the winner's value and index per output element
    (large batches split over the worker threads)."""
    kh, kw, sh, sw, oh, ow, pad_h, pad_w = _geometry(x.shape, pool_size, strides, padding,
                                                     "max_pool")
    x = numpy.ascontiguousarray(x)
    shape = (x.shape[0], oh, ow, x.shape[3])
    out, arg = _outputs(numpy, shape, x.dtype, kh, kw, out, argmax)
    _workers.split_batch(x, x.shape[0], lambda a, b: _max_pool_cpu(
        x[a:b], out[a:b], arg[a:b], kh, kw, sh, sw, pad_h[0], pad_w[0]))
    return out, arg


def numba_cpu_backward(grad, argmax, x_shape, pool_size, strides, padding="valid"):
    """Numba CPU form: zero dx, add each window's gradient at its winner (one pass; large
    batches split over the worker threads)."""
    x_shape = tuple(int(v) for v in x_shape)
    g = _geometry(x_shape, pool_size, strides, padding, "max_pool_backward")
    _check_backward(grad, argmax, x_shape, g)
    kh, kw, sh, sw, _, _, pad_h, pad_w = g
    dx = numpy.empty(x_shape, dtype=grad.dtype)
    grad, argmax = numpy.ascontiguousarray(grad), numpy.ascontiguousarray(argmax)
    _workers.split_batch(dx, x_shape[0], lambda a, b: _max_pool_backward_cpu(
        grad[a:b], argmax[a:b], dx[a:b], kh, kw, sh, sw, pad_h[0], pad_w[0]))
    return dx


def numba_cpu_relu_grad(grad, argmax, pooled, x_shape, pool_size, strides, padding="valid",
                        out=None):
    """Numba CPU form: zero dz, scatter each window's gradient to its winner where the
    pooled value is positive, sum dz's rows (one GIL-free call; for a cache-sized slice)."""
    x_shape, g = _relu_grad_geometry(grad, argmax, pooled, x_shape, pool_size, strides,
                                     padding)
    _check_dz_out(out, x_shape, grad.dtype)
    kh, kw, sh, sw, _, _, pad_h, pad_w = g
    n, h, w, c = x_shape
    dz = out if out is not None and out.flags.c_contiguous else numpy.empty((n * h * w, c),
                                                                             grad.dtype)
    acc = numpy.empty(c, dtype=numpy.float64)
    _max_pool_relu_grad_cpu(numpy.ascontiguousarray(grad), numpy.ascontiguousarray(argmax),
                            numpy.ascontiguousarray(pooled, dtype=grad.dtype), dz, acc, h, w,
                            kh, kw, sh, sw, pad_h[0], pad_w[0])
    if out is not None and dz is not out:
        out[...] = dz
        dz = out
    return dz, acc


# ---------------------------------------------------------------- Numba CUDA

@cuda_jit
def _max_pool_cuda(x, out, arg, kh, kw, sh, sw, top, left, total):
    n, h, w, c = x.shape
    _, oh, ow, _ = out.shape
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one output element per thread
        ch = e % c
        j = (e // c) % ow
        i = (e // (c * ow)) % oh
        b = e // (c * ow * oh)
        first = True
        best = x[b, 0, 0, ch]
        win = 0
        for p in range(kh):
            y = i * sh - top + p
            if 0 <= y < h:
                for q in range(kw):
                    z = j * sw - left + q
                    if 0 <= z < w:
                        v = x[b, y, z, ch]
                        if first or v > best or (v != v and best == best):
                            first = False
                            best = v
                            win = p * kw + q
        out[b, i, j, ch] = best
        arg[b, i, j, ch] = win


@cuda_jit
def _max_pool_backward_cuda(grad, arg, dx, kh, kw, sh, sw, top, left, total, zero):
    n, h, w, c = dx.shape
    _, oh, ow, _ = grad.shape
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # gather: one dx element per thread
        ch = e % c
        z = (e // c) % w
        y = (e // (c * w)) % h
        b = e // (c * w * h)
        acc = zero
        # the windows covering (y, z): i with 0 <= y + top - i * sh < kh (same for j)
        i0 = max(0, -((kh - 1 - y - top) // sh))
        i1 = min(oh, (y + top) // sh + 1)
        j0 = max(0, -((kw - 1 - z - left) // sw))
        j1 = min(ow, (z + left) // sw + 1)
        for i in range(i0, i1):  # windows in (i, j) order, as the CPU form adds them
            p = y + top - i * sh
            for j in range(j0, j1):
                q = z + left - j * sw
                if arg[b, i, j, ch] == p * kw + q:
                    acc += grad[b, i, j, ch]
        dx[b, y, z, ch] = acc


def numba_cuda(x, pool_size, strides, padding="valid", out=None, argmax=None):
    """Numba CUDA form: one thread per output element."""
    kh, kw, sh, sw, oh, ow, pad_h, pad_w = _geometry(x.shape, pool_size, strides, padding,
                                                     "max_pool")
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    shape = (x.shape[0], oh, ow, x.shape[3])
    out, arg = _outputs(xp, shape, x.dtype, kh, kw, out, argmax)
    if out.size:
        blocks, threads = grid_for(out.size)
        launch(_max_pool_cuda, blocks, threads, x, out, arg, kh, kw, sh, sw, pad_h[0], pad_w[0],
               out.size)
    return out, arg


def numba_cuda_backward(grad, argmax, x_shape, pool_size, strides, padding="valid"):
    """Numba CUDA form: a gather per dx element over the windows that cover it."""
    x_shape = tuple(int(v) for v in x_shape)
    g = _geometry(x_shape, pool_size, strides, padding, "max_pool_backward")
    _check_backward(grad, argmax, x_shape, g)
    kh, kw, sh, sw, _, _, pad_h, pad_w = g
    xp = get_array_module(grad)
    dx = xp.empty(x_shape, dtype=grad.dtype)
    if dx.size:
        blocks, threads = grid_for(dx.size)
        launch(_max_pool_backward_cuda, blocks, threads, xp.ascontiguousarray(grad),
               xp.ascontiguousarray(argmax), dx, kh, kw, sh, sw, pad_h[0], pad_w[0], dx.size,
               numpy.zeros((), dtype=grad.dtype)[()])
    return dx


def numba_cuda_relu_grad(grad, argmax, pooled, x_shape, pool_size, strides, padding="valid",
                         out=None):
    """Numba CUDA form: the mask by CuPy, the CUDA backward's gather, then the column sums in
    parallel chunks of rows (kernels._cuda_reduce)."""
    from . import _cuda_reduce
    dz, x_shape = _masked_backward(numba_cuda_backward, grad, argmax, pooled, x_shape,
                                   pool_size, strides, padding, out)
    xp = get_array_module(dz)
    acc = xp.zeros(x_shape[3], dtype=numpy.float64)
    if dz.size:
        _cuda_reduce.column_sums(xp, dz.reshape(-1, x_shape[3]), acc)
    return dz, acc


# ---------------------------------------------------------------- public

def max_pool(x, pool_size, strides, padding="valid", out=None, argmax=None):
    """(N, H, W, C) -> (out (N, OH, OW, C), argmax): window maxima and their winners
    (into `out` / `argmax` when given: C-contiguous, of that shape and of the dtypes
    `max_pool` would choose)."""
    return _dispatch.form("max_pool", x)(x, pool_size, strides, padding, out, argmax)


def max_pool_backward(grad, argmax, x_shape, pool_size, strides, padding="valid"):
    """dx of shape x_shape: each window's gradient added at its winner, in grad's dtype."""
    return _dispatch.form("max_pool_backward", grad)(grad, argmax, x_shape, pool_size, strides,
                                                       padding)


def max_pool_relu_grad(grad, argmax, pooled, x_shape, pool_size, strides, padding="valid",
                       out=None):
    """(dz (N*H*W, C), bias_grad float64 (C,)): the gradient at the pre-activation of a
    bias + ReLU layer of output shape x_shape that max pooling (`pooled`, `argmax`) follows,
    from the pooled output's gradient; as max_pool_backward then relu_bias_grad."""
    return _dispatch.form("max_pool_relu_grad", grad)(grad, argmax, pooled, x_shape,
                                                       pool_size, strides, padding, out)


def argmax_dtype(pool_size):
    """The dtype of `max_pool`'s argmax for windows of `pool_size`."""
    return numpy.dtype(_argmax_dtype(*pool_size))

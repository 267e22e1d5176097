"""im2col / col2im for channels-last convolution, and the output-size rules.

    x    (N, H, W, C)                 input batch (or a chunk x[start:stop] of it)
    cols (N*OH*OW, KH*KW*C)           rows in (n, oh, ow) order, columns in (kh, kw, c)

so `cols @ kernel.reshape(KH*KW*C, F)` is the convolution with a Keras kernel
(KH, KW, C, F). "same" padding is TensorFlow's (the odd pixel goes after) with zeros:
outside positions read 0 in im2col and are dropped in col2im. col2im is the exact
adjoint of im2col (overlapping windows add up).

Every form writes each output element from exactly one thread and sums overlaps in the
same (kh, kw) order as the reference, so results are deterministic (col2im on the CUDA
side is a gather per dx element: no atomics).
"""

import numpy

from ..backend import get_array_module
from ..errors import InvalidArgumentError, ShapeError
from . import _dispatch
from ._cuda import cuda_jit, grid_for, launch
from ._jit import cpu_jit, prange

cuda = None  # bound to numba.cuda when a CUDA kernel is first compiled

PADDINGS = ("valid", "same")


def _padding(padding):
    name = str(padding).lower() if isinstance(padding, str) else padding
    if name not in PADDINGS:
        raise InvalidArgumentError(f"padding must be 'valid' or 'same', got {padding!r}.")
    return name


def _pair(value, what):
    """An int or a pair of ints (each >= 1) -> (a, b)."""
    pair = (value, value) if isinstance(value, (int, numpy.integer)) else value
    try:
        a, b = pair
        ok = all(isinstance(v, (int, numpy.integer)) and not isinstance(v, bool) and v >= 1
                 for v in (a, b))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidArgumentError(f"{what} must be a positive int or a pair of positive "
                                   f"ints, got {value!r}.")
    return int(a), int(b)


def conv_output_size(size, k, s, padding):
    """Output length along one axis: 'valid' (size-k)//s + 1, 'same' ceil(size/s)."""
    if _padding(padding) == "valid":
        return (size - k) // s + 1
    return -(-size // s)


def same_padding(size, k, s):
    """TensorFlow's 'same' padding (before, after): the odd pixel goes after."""
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _geometry(x_shape, kernel_size, stride, padding, who):
    """(kh, kw, sh, sw, oh, ow, (top, bottom), (left, right)) for an (N, H, W, C) input."""
    if len(x_shape) != 4:
        raise ShapeError(f"{who}: x must be 4-D (batch, height, width, channels), got shape "
                         f"{tuple(x_shape)}.")
    kh, kw = _pair(kernel_size, f"{who} kernel_size")
    sh, sw = _pair(stride, f"{who} stride")
    padding = _padding(padding)
    _, h, w, _ = (int(v) for v in x_shape)
    if padding == "same":
        pad_h, pad_w = same_padding(h, kh, sh), same_padding(w, kw, sw)
    else:
        pad_h = pad_w = (0, 0)
    oh, ow = conv_output_size(h, kh, sh, padding), conv_output_size(w, kw, sw, padding)
    if oh < 1 or ow < 1:
        raise ShapeError(f"{who}: kernel {kh}x{kw} is larger than the padded input "
                         f"{h + sum(pad_h)}x{w + sum(pad_w)} (input shape {tuple(x_shape)}, "
                         f"padding={padding!r}).")
    return kh, kw, sh, sw, oh, ow, pad_h, pad_w


def _check_cols(cols, x_shape, g, who):
    kh, kw, _, _, oh, ow, _, _ = g
    n, _, _, c = x_shape
    want = (n * oh * ow, kh * kw * c)
    if cols.shape != want:
        raise ShapeError(f"{who}: cols must have shape {want} for x of shape "
                         f"{tuple(x_shape)}, got {cols.shape}.")


# ---------------------------------------------------------------- reference (NumPy/CuPy)

def _windows(g):
    """Per (kh, kw): the strided slices of the padded image that feed that column block."""
    kh, kw, sh, sw, oh, ow, _, _ = g
    for i in range(kh):
        for j in range(kw):
            yield i, j, (slice(None), slice(i, i + sh * (oh - 1) + 1, sh),
                         slice(j, j + sw * (ow - 1) + 1, sw), slice(None))


def _out(out, shape, dtype, xp, who):
    """A caller's C-contiguous output buffer of the right shape and dtype, else a new one."""
    if out is None:
        return xp.empty(shape, dtype=dtype)
    if out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ShapeError(f"{who}: out must be a C-contiguous {dtype} array of shape {shape}, "
                         f"got {out.dtype} {out.shape}.")
    return out


def reference_im2col(x, kernel_size, stride=1, padding="valid", out=None):
    """Pure NumPy/CuPy im2col: pad, then one strided copy per (kh, kw)."""
    g = _geometry(x.shape, kernel_size, stride, padding, "im2col")
    kh, kw, _, _, oh, ow, pad_h, pad_w = g
    xp = get_array_module(x)
    n, c = x.shape[0], x.shape[3]
    if pad_h != (0, 0) or pad_w != (0, 0):
        x = xp.pad(x, ((0, 0), pad_h, pad_w, (0, 0)))
    cols = _out(out, (n * oh * ow, kh * kw * c), x.dtype, xp, "im2col")
    blocks = cols.reshape(n, oh, ow, kh, kw, c)
    for i, j, window in _windows(g):
        blocks[:, :, :, i, j, :] = x[window]
    return cols


def reference_col2im(cols, x_shape, kernel_size, stride=1, padding="valid", out=None):
    """Pure NumPy/CuPy col2im: += each (kh, kw) block into a padded buffer, then crop."""
    x_shape = tuple(int(v) for v in x_shape)
    g = _geometry(x_shape, kernel_size, stride, padding, "col2im")
    _check_cols(cols, x_shape, g, "col2im")
    kh, kw, _, _, oh, ow, (top, bottom), (left, right) = g
    xp = get_array_module(cols)
    n, h, w, c = x_shape
    cols = cols.reshape(n, oh, ow, kh, kw, c)
    dx = xp.zeros((n, h + top + bottom, w + left + right, c), dtype=cols.dtype)
    for i, j, window in _windows(g):
        dx[window] += cols[:, :, :, i, j, :]
    if out is None:
        return xp.ascontiguousarray(dx[:, top:top + h, left:left + w, :])
    _out(out, x_shape, cols.dtype, xp, "col2im")[...] = dx[:, top:top + h, left:left + w, :]
    return out


# ---------------------------------------------------------------- Numba CPU
# The CPU kernels index flat views with unsigned indices (U): Numba then skips its
# negative-index wraparound, and LLVM can vectorize the copies (2-3x faster).

U = numpy.uint64


@cpu_jit(parallel=False, inline="always")
def _inside(offset, stride, size, count):
    """[lo, hi): the j in [0, count) with 0 <= j * stride + offset < size."""
    lo = 0 if offset >= 0 else (stride - 1 - offset) // stride
    hi = (size - 1 - offset) // stride + 1 if offset <= size - 1 else 0
    hi = min(hi, count)
    return min(lo, hi), hi


@cpu_jit(nogil=True)
def _im2col_rows(x, cols, kh, kw, sh, sw, top, left, oh, ow):
    """im2col writing each column row front to back: per output position, kh runs of kw*C
    floats, each one contiguous run of x for a window inside the image. Measured against the
    tap-by-tap loop below (one thread, float32): 1.7x at C=3 3x3 'same' on 32x32, 1.2-1.4x
    at C=32-64, 2.8x at C=1 5x5 'same' on 28x28; 0.9x at C=1 3x3, which keeps that loop."""
    n, h, w, c = x.shape
    src, dst = x.reshape(-1), cols.reshape(-1)
    run = kw * c
    k = kh * run
    zero = numpy.zeros(1, x.dtype)[0]
    for r in prange(n * oh):  # one (sample, output row) per iteration: disjoint cols rows
        b = r // oh
        i = r - b * oh
        for j in range(ow):
            d = (r * ow + j) * k
            z0 = j * sw - left
            inner = z0 >= 0 and z0 + kw <= w
            for p in range(kh):
                y = i * sh - top + p
                dp = d + p * run
                if y < 0 or y >= h:
                    for e in range(run):
                        dst[U(dp + e)] = zero
                elif inner:
                    s0 = ((b * h + y) * w + z0) * c
                    for e in range(run):
                        dst[U(dp + e)] = src[U(s0 + e)]
                else:
                    for q in range(kw):
                        z = z0 + q
                        dq = dp + q * c
                        if 0 <= z < w:
                            s0 = ((b * h + y) * w + z) * c
                            for ch in range(c):
                                dst[U(dq + ch)] = src[U(s0 + ch)]
                        else:
                            for ch in range(c):
                                dst[U(dq + ch)] = zero


@cpu_jit(nogil=True)
def _im2col_cpu(x, cols, kh, kw, sh, sw, top, left, oh, ow):
    n, h, w, c = x.shape
    if c > 1 or kw >= 5:
        _im2col_rows(x, cols, kh, kw, sh, sw, top, left, oh, ow)
        return
    src, dst = x.reshape(-1), cols.reshape(-1)
    k = kh * kw * c
    for r in prange(n * oh):  # one (sample, output row) per iteration: disjoint cols rows
        b = r // oh
        for p in range(kh):
            y = (r - b * oh) * sh - top + p
            for q in range(kw):
                lo, hi = _inside(q - left, sw, w, ow)
                if y < 0 or y >= h:
                    lo = hi = ow
                d0 = r * ow * k + (p * kw + q) * c  # cols[row of (r, j=0), column of (p, q)]
                s0 = ((b * h + y) * w + q - left) * c  # x[b, y, j=0 column + q - left]
                for j in range(lo):
                    for ch in range(c):
                        dst[U(d0 + j * k + ch)] = 0
                if c == 1:
                    for j in range(lo, hi):
                        dst[U(d0 + j * k)] = src[U(s0 + j * sw)]
                else:
                    for j in range(lo, hi):
                        for ch in range(c):
                            dst[U(d0 + j * k + ch)] = src[U(s0 + j * sw * c + ch)]
                for j in range(hi, ow):
                    for ch in range(c):
                        dst[U(d0 + j * k + ch)] = 0


@cpu_jit(nogil=True)
def _im2col_t_cpu(x, cols_t, kh, kw, sh, sw, top, left, oh, ow):
    """The columns transposed, cols_t (KH*KW*C, N*OH*OW) = im2col(x).T, for the few-channel
    convolutions (`conv_gemm.COLUMNS_T_MAX_CHANNELS`): each (tap, channel, image, output
    row) is one run of OW values, read from one input row with stride SW*C, so at C = 1 and
    stride 1 a vectorised contiguous copy instead of KH*KW scattered values per output
    position (seed 004's conv1, 5x5 'same' on 28x28, one thread: 3-5 us an image against
    13 for `_im2col_rows`)."""
    n, h, w, c = x.shape
    src, dst = x.reshape(-1), cols_t.reshape(-1)
    rows = n * oh * ow
    zero = numpy.zeros(1, x.dtype)[0]
    for p in range(kh):
        for q in range(kw):
            lo, hi = _inside(q - left, sw, w, ow)
            for ch in range(c):
                d0 = ((p * kw + q) * c + ch) * rows
                for r in range(n * oh):  # one (image, output row) per iteration
                    b = r // oh
                    y = (r - b * oh) * sh - top + p
                    d = d0 + r * ow
                    if y < 0 or y >= h:
                        for j in range(ow):
                            dst[U(d + j)] = zero
                        continue
                    s = ((b * h + y) * w + q - left) * c + ch  # x[b, y, j=0 column + q - left, ch]
                    for j in range(lo):
                        dst[U(d + j)] = zero
                    if sw * c == 1:
                        for j in range(lo, hi):
                            dst[U(d + j)] = src[U(s + j)]
                    else:
                        for j in range(lo, hi):
                            dst[U(d + j)] = src[U(s + j * sw * c)]
                    for j in range(hi, ow):
                        dst[U(d + j)] = zero


@cpu_jit(nogil=True)
def _col2im_cpu(cols, dx, kh, kw, sh, sw, top, left, oh, ow):
    n, h, w, c = dx.shape
    src, dst = cols.reshape(-1), dx.reshape(-1)
    k = kh * kw * c
    for r in prange(n * h):  # one (sample, image row) per iteration: race-free
        b = r // h
        y = r - b * h
        d0 = r * w * c
        for e in range(w * c):
            dst[U(d0 + e)] = 0
        for p in range(kh):  # (p, q) in the reference's order: the same sums, bit for bit
            t = y + top - p
            if t < 0 or t % sh != 0 or t // sh >= oh:
                continue
            for q in range(kw):
                lo, hi = _inside(q - left, sw, w, ow)
                s0 = (b * oh + t // sh) * ow * k + (p * kw + q) * c
                e0 = d0 + (q - left) * c
                if c == 1:
                    for j in range(lo, hi):
                        dst[U(e0 + j * sw)] += src[U(s0 + j * k)]
                else:
                    for j in range(lo, hi):
                        for ch in range(c):
                            dst[U(e0 + j * sw * c + ch)] += src[U(s0 + j * k + ch)]


def numba_cpu_im2col(x, kernel_size, stride=1, padding="valid", out=None):
    """Numba CPU im2col: parallel over (sample, output row) of x[start:stop]."""
    kh, kw, sh, sw, oh, ow, pad_h, pad_w = _geometry(x.shape, kernel_size, stride, padding,
                                                     "im2col")
    x = numpy.ascontiguousarray(x)
    n, c = x.shape[0], x.shape[3]
    cols = _out(out, (n * oh * ow, kh * kw * c), x.dtype, numpy, "im2col")
    _im2col_cpu(x, cols, kh, kw, sh, sw, pad_h[0], pad_w[0], oh, ow)
    return cols


def numba_cpu_col2im(cols, x_shape, kernel_size, stride=1, padding="valid", out=None):
    """Numba CPU col2im: parallel over (sample, image row); each iteration sums into its
    own dx row only (race-free, deterministic)."""
    x_shape = tuple(int(v) for v in x_shape)
    g = _geometry(x_shape, kernel_size, stride, padding, "col2im")
    _check_cols(cols, x_shape, g, "col2im")
    kh, kw, sh, sw, oh, ow, pad_h, pad_w = g
    cols = numpy.ascontiguousarray(cols)
    dx = _out(out, x_shape, cols.dtype, numpy, "col2im")
    _col2im_cpu(cols, dx, kh, kw, sh, sw, pad_h[0], pad_w[0], oh, ow)
    return dx


# ---------------------------------------------------------------- Numba CUDA

@cuda_jit
def _im2col_cuda(x, cols, kh, kw, sh, sw, top, left, oh, ow, total):
    n, h, w, c = x.shape
    k = kh * kw * c
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one cols element per thread
        row = e // k
        col = e - row * k
        ch = col % c
        q = (col // c) % kw
        p = col // (c * kw)
        j = row % ow
        i = (row // ow) % oh
        b = row // (ow * oh)
        y = i * sh - top + p
        z = j * sw - left + q
        if 0 <= y < h and 0 <= z < w:
            cols[row, col] = x[b, y, z, ch]
        else:
            cols[row, col] = 0


@cuda_jit
def _col2im_cuda(cols, dx, kh, kw, sh, sw, top, left, oh, ow, total, zero):
    n, h, w, c = dx.shape
    for e in range(cuda.grid(1), total, cuda.gridsize(1)):  # one dx element per thread
        ch = e % c
        z = (e // c) % w
        y = (e // (c * w)) % h
        b = e // (c * w * h)
        # Windows covering padded row y + top: kernel rows p = y + top - i * sh.
        p0 = (y + top) % sh
        q0 = (z + left) % sw
        i = (y + top - p0) // sh
        acc = zero  # accumulate in dx's dtype, in the reference's (kh, kw) order
        for p in range(p0, kh, sh):
            if i < 0:
                break
            if i < oh:
                j = (z + left - q0) // sw
                for q in range(q0, kw, sw):
                    if j < 0:
                        break
                    if j < ow:
                        acc += cols[(b * oh + i) * ow + j, (p * kw + q) * c + ch]
                    j -= 1
            i -= 1
        dx[b, y, z, ch] = acc


def numba_cuda_im2col(x, kernel_size, stride=1, padding="valid", out=None):
    """Numba CUDA im2col: one thread per cols element (grid-stride)."""
    kh, kw, sh, sw, oh, ow, pad_h, pad_w = _geometry(x.shape, kernel_size, stride, padding,
                                                     "im2col")
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    n, c = x.shape[0], x.shape[3]
    cols = _out(out, (n * oh * ow, kh * kw * c), x.dtype, xp, "im2col")
    if cols.size:
        blocks, threads = grid_for(cols.size)
        launch(_im2col_cuda, blocks, threads, x, cols, kh, kw, sh, sw, pad_h[0], pad_w[0],
               oh, ow, cols.size)
    return cols


def numba_cuda_col2im(cols, x_shape, kernel_size, stride=1, padding="valid", out=None):
    """Numba CUDA col2im as a gather: one thread per dx element, no atomics."""
    x_shape = tuple(int(v) for v in x_shape)
    g = _geometry(x_shape, kernel_size, stride, padding, "col2im")
    _check_cols(cols, x_shape, g, "col2im")
    kh, kw, sh, sw, oh, ow, pad_h, pad_w = g
    xp = get_array_module(cols)
    cols = xp.ascontiguousarray(cols)
    dx = _out(out, x_shape, cols.dtype, xp, "col2im")
    if dx.size:
        blocks, threads = grid_for(dx.size)
        launch(_col2im_cuda, blocks, threads, cols, dx, kh, kw, sh, sw, pad_h[0], pad_w[0],
               oh, ow, dx.size, numpy.zeros((), dtype=cols.dtype)[()])
    return dx


# ---------------------------------------------------------------- public

def im2col(x, kernel_size, stride=1, padding="valid", out=None):
    """(N, H, W, C) -> cols (N*OH*OW, KH*KW*C), in x's dtype and device (into `out`, a
    C-contiguous buffer of that shape, when given)."""
    hint = x.shape[-1] if getattr(x, "ndim", 0) == 4 else None  # channels
    return _dispatch.form("im2col", x, size_hint=hint)(x, kernel_size, stride, padding, out)


def col2im(cols, x_shape, kernel_size, stride=1, padding="valid", out=None):
    """Adjoint of im2col: cols -> dx of shape x_shape (overlaps add), in cols' dtype (into
    `out`, a C-contiguous buffer of that shape, when given)."""
    return _dispatch.form("col2im", cols)(cols, x_shape, kernel_size, stride, padding, out)

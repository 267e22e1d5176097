"""One test body per kernel property, run on every form that can run here (see
tests/kernel_forms.py): NumPy reference, Numba CPU, the CuPy reference on the stand-in,
numba-cuda under the simulator, and real CuPy/numba-cuda under the `gpu` marker.

Expected values come from float64 NumPy math written in the test, not from another form.
Shapes stay small: the simulator runs every GPU thread in Python."""
import importlib

import numpy as np
import pytest

from accelnet import kernels
from accelnet.errors import InvalidArgumentError, ShapeError

from kernel_forms import ALL_FORMS

TOL = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-14)}


@pytest.fixture(params=ALL_FORMS)
def form(request):
    form = request.param
    kernels.check_errors()
    return form


def _softmax_ce_math(logits, labels, soft):
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    p = np.exp(x - lse)
    target = labels if soft else np.eye(x.shape[1])[labels]
    loss = -(target * (x - lse)).sum(axis=1).mean()
    grad = (p * target.sum(axis=1, keepdims=True) - target) / len(x)
    return loss, grad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("n,c", [(1, 1), (3, 5), (5, 40)])
def test_softmax_cross_entropy_is_the_math(form, dtype, soft, n, c):
    rng = np.random.default_rng(n * 100 + c)
    logits = (rng.standard_normal((n, c)) * 5).astype(dtype)
    labels = rng.dirichlet(np.ones(c), n) if soft else rng.integers(0, c, n)
    want_loss, want_grad = _softmax_ce_math(logits, labels, soft)
    d_logits, d_labels = form.device(logits), form.device(labels)
    with form.running():
        assert kernels.current_implementation("softmax_cross_entropy", d_logits) == form.expected
        loss, grad = kernels.softmax_cross_entropy(d_logits, d_labels)
    assert form.is_device_array(grad) and grad.dtype == dtype and grad.shape == (n, c)
    assert loss.shape == () and loss.dtype == dtype
    np.testing.assert_allclose(form.host(loss), want_loss, **TOL[dtype])
    np.testing.assert_allclose(form.host(grad), want_grad, **TOL[dtype])


def test_softmax_cross_entropy_bad_label_is_reported(form):
    """Host forms raise at once; device forms set a flag that check_errors() raises."""
    logits = form.device(np.zeros((4, 3), np.float32))
    labels = form.device(np.array([0, 3, 1, 2]))
    with pytest.raises(InvalidArgumentError, match=r"label 3 at index 1 .*3 classes"):
        with form.running():
            kernels.softmax_cross_entropy(logits, labels)
        kernels.check_errors()
    kernels.check_errors()  # reset: nothing pending


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4), (0, 3)])
def test_relu_backward_is_dy_where_x_positive(form, dtype, shape):
    rng = np.random.default_rng(len(shape))
    dy = rng.standard_normal(shape).astype(dtype)
    x = rng.choice([-1.0, 0.0, -0.0, 2.0, np.nan, np.inf], size=shape).astype(dtype)
    want = np.where(x > 0, dy, 0).astype(dtype)
    d_dy, d_x = form.device(dy), form.device(x)
    with form.running():
        assert kernels.current_implementation("relu_backward", d_x) == form.expected
        got = kernels.relu_backward(d_dy, d_x)
        assert form.is_device_array(got) and got.dtype == dtype
        np.testing.assert_array_equal(form.host(got), want)
        assert kernels.relu_backward(d_dy, d_x, out=d_dy) is d_dy
    np.testing.assert_array_equal(form.host(d_dy), want)


def _patches(x, kh, kw, sh, sw, pad):
    """im2col by definition: zero-padded patches, rows (n, oh, ow), columns (kh, kw, c)."""
    (top, bottom), (left, right) = pad
    xp = np.pad(x.astype(np.float64), ((0, 0), (top, bottom), (left, right), (0, 0)))
    n, h, w, c = xp.shape
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    rows = [xp[i, a * sh:a * sh + kh, b * sw:b * sw + kw, :].reshape(-1)
            for i in range(n) for a in range(oh) for b in range(ow)]
    return np.array(rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 2])  # one channel, kw >= 5: its own CPU loop
@pytest.mark.parametrize("kernel,stride,padding", [
    (3, 1, "valid"), (3, 2, "same"), (2, 1, "same"), ((3, 2), (1, 2), "valid"), (1, (2, 3), "same"),
    (5, 1, "same"), (5, 2, "valid"), ((2, 5), (1, 2), "same"), ((3, 6), 1, "valid")])
def test_im2col_is_patches_and_col2im_its_adjoint(form, dtype, channels, kernel, stride,
                                                  padding):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 6, channels)).astype(dtype)
    kh, kw = (kernel, kernel) if np.isscalar(kernel) else kernel
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    pad = ((0, 0), (0, 0))
    if padding == "same":
        pad = (kernels.same_padding(7, kh, sh), kernels.same_padding(6, kw, sw))
    want = _patches(x, kh, kw, sh, sw, pad)
    with form.running():
        assert kernels.current_implementation("col2im", form.device(x)) == form.expected
        cols = kernels.im2col(form.device(x), kernel, stride, padding)
        assert form.is_device_array(cols) and cols.dtype == dtype
        np.testing.assert_array_equal(form.host(cols), want.astype(dtype))
        dcols = rng.standard_normal(want.shape).astype(dtype)
        dx = kernels.col2im(form.device(dcols), x.shape, kernel, stride, padding)
    assert form.is_device_array(dx) and dx.shape == x.shape and dx.dtype == dtype
    np.testing.assert_allclose(np.vdot(want, dcols.astype(np.float64)),
                               np.vdot(x.astype(np.float64), form.host(dx)), rtol=1e-5)


POOL_CASES = [((2, 2), (2, 2), "valid"), ((2, 2), (2, 2), "same"), ((3, 3), (2, 2), "same"),
              ((3, 2), (1, 2), "valid")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pool,strides,padding", POOL_CASES)
@pytest.mark.parametrize("hw", [(5, 6), (4, 6)])  # (4, 6): 2x2 windows tile it exactly
def test_max_pool_relu_grad_is_relu_then_pool_backward(form, dtype, pool, strides, padding, hw):
    """The pooled step's backward equals the definition: the pooled gradient added at each
    window's winner (loops in the test), kept where the ReLU output there is positive, and
    the bias gradient as its column sums; with out= and the forward's out=/argmax=."""
    rng = np.random.default_rng(1)
    z = np.maximum(rng.choice([-1.0, 0.0, 0.5, 1.5, 2.0], size=(2,) + hw + (3,)), 0).astype(dtype)
    n, h, w, c = z.shape
    oh, ow = (kernels.conv_output_size(s, k, t, padding) for s, k, t in zip((h, w), pool, strides))
    top, left = ((kernels.same_padding(s, k, t)[0] for s, k, t in zip((h, w), pool, strides))
                 if padding == "same" else (0, 0))
    grad = rng.standard_normal((n, oh, ow, c)).astype(dtype)
    with form.running():
        assert kernels.current_implementation("max_pool_relu_grad", form.device(grad)) == \
            form.expected
        xp = form.xp()
        pooled = xp.empty((n, oh, ow, c), dtype=dtype)
        arg = xp.empty((n, oh, ow, c), dtype=kernels.max_pool_argmax_dtype(pool))
        kernels.max_pool(form.device(z), pool, strides, padding, out=pooled, argmax=arg)
        out = xp.empty((n * h * w, c), dtype=dtype)
        dz, bias = kernels.max_pool_relu_grad(form.device(grad), arg, pooled, z.shape, pool,
                                              strides, padding, out=out)
    assert dz is out and bias.dtype == np.float64 and bias.shape == (c,)
    want = np.zeros(z.shape)
    arg = form.host(arg)
    for b, i, j, ch in np.ndindex(n, oh, ow, c):
        k = int(arg[b, i, j, ch])
        y, x = i * strides[0] - top + k // pool[1], j * strides[1] - left + k % pool[1]
        want[b, y, x, ch] += grad[b, i, j, ch]
    want[z <= 0] = 0
    np.testing.assert_allclose(form.host(dz), want.reshape(-1, c), **TOL[dtype])
    np.testing.assert_allclose(form.host(bias), want.reshape(-1, c).sum(axis=0), **TOL[dtype])


def test_max_pool_relu_grad_rejects_a_wrong_pooled_shape(form):
    grad = form.device(np.zeros((1, 2, 2, 1), np.float32))
    arg = form.device(np.zeros((1, 2, 2, 1), np.uint8))
    with form.running(), pytest.raises(ShapeError, match="max_pool_relu_grad: pooled"):
        kernels.max_pool_relu_grad(grad, arg, form.device(np.zeros((1, 2, 1, 1), np.float32)),
                                   (1, 4, 4, 1), (2, 2), (2, 2), "valid")


def _hash_math(i, key):
    """murmur3's finalizer of (i * 0x9E3779B9 + key) mod 2**32, in Python ints."""
    h = (i * 0x9E3779B9 + key) & 0xFFFFFFFF
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("shape,key", [((3, 5), 1), ((2, 1, 1, 7), 0xFFFFFFFF), ((0, 4), 9)])
def test_dropout_mask_is_the_hash_math_on_every_device(form, dtype, rate, shape, key):
    n = int(np.prod(shape))
    threshold = min(int(round(rate * 2 ** 32)), 2 ** 32 - 1)
    want = np.array([1 / (1 - rate) if _hash_math(i, key) >= threshold else 0.0
                     for i in range(n)], dtype=dtype).reshape(shape)
    like = form.device(np.zeros(1, dtype))
    with form.running():
        assert kernels.current_implementation("dropout_mask", like) == form.expected
        got = kernels.dropout_mask(like, shape, key, rate)
    assert form.is_device_array(got) and got.dtype == dtype and got.shape == shape
    np.testing.assert_array_equal(form.host(got), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5), (2, 1, 1, 7), (0, 4)])
def test_dropout_mask_with_x_also_returns_x_times_the_mask(form, dtype, shape):
    """x * mask bit for bit as NumPy computes it (inf * 0 and NaN stay NaN)."""
    x = np.random.default_rng(4).standard_normal(shape).astype(dtype)
    if x.size:
        x.reshape(-1)[:3] = [np.inf, np.nan, -0.0][:x.size]
    like = form.device(np.zeros(1, dtype))
    with form.running():
        want = form.host(kernels.dropout_mask(like, shape, 99, 0.4))
        mask, y = kernels.dropout_mask(like, shape, 99, 0.4, x=form.device(x))
    assert form.is_device_array(y) and y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(form.host(mask), want)
    np.testing.assert_array_equal(form.host(y), x * want)
    with form.running(), pytest.raises(ShapeError, match="dropout_mask: x"):
        kernels.dropout_mask(like, (4, 4), 99, 0.4, x=form.device(np.zeros((2, 8), dtype)))


def test_dropout_mask_keeps_one_minus_rate(form):
    like = form.device(np.zeros(1, np.float32))
    n = 4000 if form.name == "numba-cuda-sim" else 200_000
    with form.running():
        mask = form.host(kernels.dropout_mask(like, (n,), 12345, 0.3))
    kept = (mask > 0).mean()
    assert abs(kept - 0.7) < 4 * np.sqrt(0.21 / n)
    np.testing.assert_allclose(mask[mask > 0], np.float32(1 / 0.7))


def _conv_math(x, kernel, stride, pad):
    """Convolution by definition in float64: patches @ kernel, (N, OH, OW, F)."""
    kh, kw, _, f = kernel.shape
    cols = _patches(x, kh, kw, stride[0], stride[1], pad)
    n = x.shape[0]
    z = cols @ kernel.reshape(-1, f).astype(np.float64)
    return cols, z.reshape(n, -1, z.shape[1])


CONV_CASES = [((3, 3), (1, 1), "valid"), ((3, 3), (1, 1), "same"), ((2, 3), (2, 1), "same"),
              ((1, 1), (2, 2), "valid")]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel_size,stride,padding", CONV_CASES)
@pytest.mark.parametrize("channels", [1, 2])  # 1: the CPU form's transposed columns
def test_conv_gemm_passes_are_the_convolution_and_its_gradients(form, dtype, kernel_size,
                                                                stride, padding, channels):
    """conv_forward (+ bias, ReLU), conv_weight_grad and conv_input_grad against float64
    patches: z = P K, dK = P^T dz, and <dx, x'> = <dz, conv(x')> (the adjoint)."""
    rng = np.random.default_rng(sum(kernel_size) + stride[0])
    x = rng.standard_normal((3, 5, 6, channels)).astype(dtype)
    kh, kw = kernel_size
    kernel = rng.standard_normal((kh, kw, channels, 3)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    pad = ((0, 0), (0, 0))
    if padding == "same":
        pad = (kernels.same_padding(5, kh, stride[0]), kernels.same_padding(6, kw, stride[1]))
    cols, z = _conv_math(x, kernel, stride, pad)
    oh, ow = kernels.conv_output_size(5, kh, stride[0], padding), \
        kernels.conv_output_size(6, kw, stride[1], padding)
    want = np.maximum(z + bias, 0).reshape(3, oh, ow, 3)
    dz = rng.standard_normal(want.shape).astype(dtype)
    w2 = form.device(kernel.reshape(-1, 3))
    tol = TOL[dtype]
    with form.running():
        assert kernels.current_implementation("conv_forward", form.device(x)) == form.expected
        got = kernels.conv_forward(form.device(x), w2, kernel_size, stride, padding,
                                   bias=form.device(bias), relu=True)
        dw = kernels.conv_weight_grad(form.device(x), form.device(dz), kernel_size, stride,
                                      padding)
        dx = kernels.conv_input_grad(form.device(dz), w2, x.shape, kernel_size, stride, padding)
    assert form.is_device_array(got) and got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(form.host(got), want, rtol=tol["rtol"] * 10, atol=1e-5)
    np.testing.assert_allclose(form.host(dw), cols.T @ dz.reshape(-1, 3).astype(np.float64),
                               rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-4)
    x2 = rng.standard_normal(x.shape)
    _, z2 = _conv_math(x2, kernel, stride, pad)
    assert form.host(dx).shape == x.shape and form.host(dx).dtype == dtype
    np.testing.assert_allclose(np.vdot(form.host(dx).astype(np.float64), x2),
                               np.vdot(dz.astype(np.float64), z2.reshape(dz.shape)),
                               rtol=1e-4 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (2, 5), (3, 5)])
@pytest.mark.parametrize("h,w,padding", [(6, 6, "valid"), (7, 9, "valid"), (5, 6, "same"),
                                         (2, 3, "full")])
def test_winograd_is_the_convolution_and_its_weight_gradient(form, dtype, m, r, h, w, padding):
    """F(2x2, 3x3), F(4x4, 3x3), F(2x2, 5x5) and F(3x3, 5x5): winograd_conv (+ bias, ReLU) = the direct
    r x r convolution, winograd_weight_grad = P^T dy, in float64 math (partial edge tiles;
    padding 'full': the input gradient of a 'valid' forward)."""
    rng = np.random.default_rng(h * 10 + w + r)
    x = rng.standard_normal((2, h, w, 3)).astype(dtype)
    kernel = rng.standard_normal((r, r, 3, 2)).astype(dtype)
    bias = rng.standard_normal(2).astype(dtype)
    pad = {"valid": ((0, 0), (0, 0)), "full": ((r - 1, r - 1), (r - 1, r - 1)),
           "same": (kernels.same_padding(h, r, 1), kernels.same_padding(w, r, 1))}[padding]
    if h + sum(pad[0]) < r or w + sum(pad[1]) < r:
        pytest.skip("input smaller than the kernel")
    cols, z = _conv_math(x, kernel, (1, 1), pad)
    oh, ow = h + sum(pad[0]) - r + 1, w + sum(pad[1]) - r + 1
    want = np.maximum(z + bias, 0).reshape(2, oh, ow, 2)
    dy = rng.standard_normal(want.shape).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    with form.running():
        assert kernels.current_implementation("winograd_weight_grad",
                                              form.device(x)) == form.expected
        u = kernels.winograd_weights(form.device(kernel), m=m)
        assert u.shape == ((m + r - 1) ** 2, 3, 2)
        got = kernels.winograd_conv(form.device(x), u, padding, bias=form.device(bias), relu=True,
                                    r=r)
        if padding != "full":
            dw = kernels.winograd_weight_grad(form.device(x), form.device(dy), padding, m=m, r=r)
    assert form.is_device_array(got) and got.dtype == dtype
    np.testing.assert_allclose(form.host(got), want, rtol=tol, atol=tol)
    if padding != "full":
        assert form.is_device_array(dw) and dw.shape == kernel.shape and dw.dtype == dtype
        np.testing.assert_allclose(form.host(dw).reshape(-1, 2),
                                   cols.T @ dy.reshape(-1, 2).astype(np.float64),
                                   rtol=tol, atol=tol)


def _conv_input_grad_math(dy, kernel, x_shape, pad):
    """The input gradient of a stride-1 convolution by definition, in float64: each output
    gradient times the kernel, added into the input patch it came from (padding dropped)."""
    r, _, c, f = kernel.shape
    n, h, w, _ = x_shape
    (top, bottom), (left, right) = pad
    dxp = np.zeros((n, h + top + bottom, w + left + right, c))
    k = kernel.astype(np.float64)
    for y in range(dy.shape[1]):
        for z in range(dy.shape[2]):
            dxp[:, y:y + r, z:z + r, :] += np.einsum("nf,ijcf->nijc", dy[:, y, z, :], k)
    return dxp[:, top:top + h, left:left + w, :]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,r", [(2, 3), (4, 3), (2, 5), (3, 5)])
@pytest.mark.parametrize("h,w,padding", [(6, 6, "valid"), (7, 9, "valid"), (5, 6, "same"),
                                         (9, 7, "same")])
def test_winograd_grads_are_the_weight_and_input_gradients(form, dtype, m, r, h, w, padding):
    """winograd_grads: the kernel gradient P^T dy and the input gradient (the adjoint of the
    convolution) by definition, in float64 math, partial edge tiles and 'same' padding
    included; `out` receives the input gradient; a precomputed U^T (`u_t`) gives the same."""
    rng = np.random.default_rng(h * 10 + w + r + m)
    x = rng.standard_normal((2, h, w, 3)).astype(dtype)
    kernel = rng.standard_normal((r, r, 3, 2)).astype(dtype)
    pad = {"valid": ((0, 0), (0, 0)),
           "same": (kernels.same_padding(h, r, 1), kernels.same_padding(w, r, 1))}[padding]
    if h + sum(pad[0]) < r or w + sum(pad[1]) < r:
        pytest.skip("input smaller than the kernel")
    cols, _ = _conv_math(x, kernel, (1, 1), pad)
    oh, ow = h + sum(pad[0]) - r + 1, w + sum(pad[1]) - r + 1
    dy = rng.standard_normal((2, oh, ow, 2)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    with form.running():
        assert kernels.current_implementation("winograd_grads", form.device(x)) == form.expected
        u = kernels.winograd_weights(form.device(kernel), m=m)
        out = form.xp().full(x.shape, np.nan, dtype=dtype)
        dw, dx = kernels.winograd_grads(form.device(x), form.device(dy), u, padding, out=out,
                                        r=r)
        dw_t, dx_t = kernels.winograd_grads(form.device(x), form.device(dy), u, padding, r=r,
                                            u_t=kernels.winograd_transposed(u))
    np.testing.assert_array_equal(form.host(dw_t), form.host(dw))  # the caller's U^T: same
    np.testing.assert_array_equal(form.host(dx_t), form.host(dx))
    assert dx is out and form.is_device_array(dw) and dw.shape == kernel.shape
    assert dw.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(form.host(dw).reshape(-1, 2),
                               cols.T @ dy.reshape(-1, 2).astype(np.float64), rtol=tol, atol=tol)
    np.testing.assert_allclose(form.host(dx), _conv_input_grad_math(dy, kernel, x.shape, pad),
                               rtol=tol, atol=tol)


def _pool_math(z, pool, strides, padding):
    """Max pooling by definition in float64: (pooled, the winner's (y, x) per output)."""
    n, h, w, c = z.shape
    oh, ow = (kernels.conv_output_size(s, k, t, padding) for s, k, t in zip((h, w), pool, strides))
    top, left = ((kernels.same_padding(s, k, t)[0] for s, k, t in zip((h, w), pool, strides))
                 if padding == "same" else (0, 0))
    pooled = np.empty((n, oh, ow, c))
    where = np.empty((n, oh, ow, c, 2), np.int64)
    for b, i, j, ch in np.ndindex(n, oh, ow, c):
        y0, x0 = i * strides[0] - top, j * strides[1] - left
        ys = range(max(y0, 0), min(y0 + pool[0], h))
        xs = range(max(x0, 0), min(x0 + pool[1], w))
        cells = [(z[b, y, x, ch], y, x) for y in ys for x in xs]
        best = max(cells, key=lambda cell: cell[0])
        pooled[b, i, j, ch], where[b, i, j, ch] = best[0], best[1:]
    return pooled, where


@pytest.mark.parametrize("m,r,padding", [(4, 3, "valid"), (2, 3, "same"), (3, 5, "same"),
                                         (2, 5, "valid")])
@pytest.mark.parametrize("pool,strides,pool_padding", [((2, 2), (2, 2), "valid"),
                                                       ((3, 3), (2, 2), "same")])
def test_winograd_conv_pool_and_its_grads_are_conv_relu_pool(form, m, r, padding, pool, strides,
                                                             pool_padding):
    """winograd_conv_pool: bias + ReLU convolution then max pooling by definition (float64
    math in the test: pooled values, and the winner each argmax names); winograd_pool_grads:
    the pooled gradient at those winners where the ReLU passed (dz), then the bias gradient
    (dz's sums), the kernel gradient P^T dz and the input gradient (the adjoint)."""
    rng = np.random.default_rng(m * 10 + r)
    x = rng.standard_normal((3, 7, 8, 4)).astype(np.float32)
    kernel = rng.standard_normal((r, r, 4, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32) * 0.5
    pad = {"valid": ((0, 0), (0, 0)),
           "same": (kernels.same_padding(7, r, 1), kernels.same_padding(8, r, 1))}[padding]
    cols, z = _conv_math(x, kernel, (1, 1), pad)
    oh, ow = 7 + sum(pad[0]) - r + 1, 8 + sum(pad[1]) - r + 1
    z = np.maximum(z.reshape(3, oh, ow, 3) + bias, 0)
    want, where = _pool_math(z, pool, strides, pool_padding)
    grad = rng.standard_normal(want.shape).astype(np.float32)
    with form.running():
        for name in ("winograd_conv_pool", "winograd_pool_grads"):
            assert kernels.current_implementation(name, form.device(x)) == form.expected
        u = kernels.winograd_weights(form.device(kernel), m=m)
        xp = form.xp()
        pooled = xp.empty(want.shape, np.float32)
        arg = xp.empty(want.shape, kernels.max_pool_argmax_dtype(pool))
        got = kernels.winograd_conv_pool(form.device(x), u, pool, strides, padding, pool_padding,
                                         bias=form.device(bias), relu=True, r=r, out=pooled,
                                         argmax=arg)
        out = xp.full(x.shape, np.nan, np.float32)
        dw, db, dx = kernels.winograd_pool_grads(form.device(x), form.device(grad), arg, pooled,
                                                 u, pool, strides, padding, pool_padding,
                                                 out=out, r=r)
    assert got[0] is pooled and got[1] is arg and dx is out and dw.shape == kernel.shape
    np.testing.assert_allclose(form.host(pooled), want, rtol=1e-4, atol=1e-4)
    arg = form.host(arg).astype(np.int64)
    top, left = ((kernels.same_padding(s, k, t)[0] for s, k, t in zip((oh, ow), pool, strides))
                 if pool_padding == "same" else (0, 0))
    dz = np.zeros(z.shape)
    for b, i, j, ch in np.ndindex(*want.shape):  # the named winner holds the maximum
        y = i * strides[0] - top + arg[b, i, j, ch] // pool[1]
        x_ = j * strides[1] - left + arg[b, i, j, ch] % pool[1]
        assert abs(z[b, y, x_, ch] - want[b, i, j, ch]) <= 1e-4
        dz[b, y, x_, ch] += grad[b, i, j, ch]
    dz[z <= 0] = 0
    np.testing.assert_allclose(form.host(db), dz.reshape(-1, 3).sum(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(form.host(dw).reshape(-1, 3), cols.T @ dz.reshape(-1, 3),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(form.host(dx), _conv_input_grad_math(dz, kernel, x.shape, pad),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m,r", [(4, 3), (3, 5)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_winograd_transformed_weight_grads_sum_over_slices(form, m, r, padding):
    """transformed=True gives the gradient of U, (n*n, F, C): summed over batch slices and
    finished once (`winograd_weight_grad_finish`, Conv2D's path) it is the whole batch's
    kernel gradient P^T dy, from `winograd_weight_grad` and from `winograd_grads` alike."""
    rng = np.random.default_rng(m + r)
    x = rng.standard_normal((3, 7, 8, 3)).astype(np.float32)
    kernel = rng.standard_normal((r, r, 3, 2)).astype(np.float32)
    pad = {"valid": ((0, 0), (0, 0)),
           "same": (kernels.same_padding(7, r, 1), kernels.same_padding(8, r, 1))}[padding]
    cols, _ = _conv_math(x, kernel, (1, 1), pad)
    dy = rng.standard_normal((3, 7 + sum(pad[0]) - r + 1, 8 + sum(pad[1]) - r + 1, 2)
                             ).astype(np.float32)
    want = (cols.T @ dy.reshape(-1, 2).astype(np.float64)).reshape(kernel.shape)
    with form.running():
        u = kernels.winograd_weights(form.device(kernel), m=m)
        for slices in ([(0, 3)], [(0, 1), (1, 3)]):
            parts = [kernels.winograd_weight_grad(form.device(x[a:b]), form.device(dy[a:b]),
                                                  padding, m=m, r=r, transformed=True)
                     for a, b in slices]
            parts_grads = [kernels.winograd_grads(form.device(x[a:b]), form.device(dy[a:b]), u,
                                                  padding, r=r, transformed=True)[0]
                           for a, b in slices]
            for chosen in (parts, parts_grads):
                assert chosen[0].shape == ((m + r - 1) ** 2, 2, 3)
                dw = kernels.winograd_weight_grad_finish(sum(chosen[1:], chosen[0]), m=m, r=r)
                assert form.is_device_array(dw) and dw.shape == kernel.shape
                np.testing.assert_allclose(form.host(dw), want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ShapeError, match="transformed gradient"):
        kernels.winograd_weight_grad_finish(np.zeros((16, 2, 3), np.float32), m=m, r=r)


def _adam_math(p, g, m, v, v_hat, step_size, b1, b2, eps, decay, steps):
    """`steps` Adam steps (with v_hat: AMSGrad) in float64, from the definition."""
    p, g, m, v = (a.astype(np.float64) for a in (p, g, m, v))
    v_hat = None if v_hat is None else v_hat.astype(np.float64)
    for _ in range(steps):
        p = p * (1.0 if decay is None else decay)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if v_hat is not None:
            v_hat = np.maximum(v_hat, v)
        p = p - step_size * m / (np.sqrt(v if v_hat is None else v_hat) + eps)
    return p, m, v, v_hat


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("decay", [None, 0.999])
@pytest.mark.parametrize("shape", [(7,), (3, 2, 5), (0, 4)])
def test_adam_update_is_the_math(form, dtype, amsgrad, decay, shape):
    rng = np.random.default_rng(len(shape) + amsgrad)
    p, g, m = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    v, v_hat = (np.abs(rng.standard_normal(shape)).astype(dtype) for _ in range(2))
    v_hat = v_hat if amsgrad else None
    want = _adam_math(p, g, m, v, v_hat, 0.01, 0.9, 0.999, 1e-7, decay, steps=2)
    d = [None if a is None else form.device(a) for a in (p, g, m, v, v_hat)]
    with form.running():
        assert kernels.current_implementation("adam_update", d[0]) == form.expected
        for _ in range(2):
            assert kernels.adam_update(*d[:4], 0.01, 0.9, 0.999, 1e-7, d[4], decay) is d[0]
    for got, expected in zip(d, [want[0], None, *want[1:]]):
        if expected is not None:
            assert form.is_device_array(got) and got.dtype == dtype
            np.testing.assert_allclose(form.host(got), expected, **TOL[dtype])


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the simulator's threads
def test_adam_update_nan_and_inf_as_numpy(form):
    """A NaN or inf gradient and a NaN v_hat go where NumPy's arithmetic takes them."""
    g = np.array([np.nan, np.inf, 0.0, 1.0], np.float32)
    v_hat = np.array([0.0, 0.0, np.nan, 0.0], np.float32)
    want = [np.ones(4, np.float32), g, np.zeros(4, np.float32), np.zeros(4, np.float32),
            v_hat.copy()]
    with np.errstate(all="ignore"):
        importlib.import_module("accelnet.kernels.optimizer_update").reference_adam(
            *want[:4], 0.01, 0.9, 0.999, 1e-7, want[4])
    d = [form.device(a) for a in (np.ones(4, np.float32), g, np.zeros(4, np.float32),
                                  np.zeros(4, np.float32), v_hat)]
    with form.running(), np.errstate(all="ignore"):
        kernels.adam_update(*d[:4], 0.01, 0.9, 0.999, 1e-7, d[4])
    for got, expected in zip(d, want):
        np.testing.assert_allclose(form.host(got), expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel", ["adam", "amsgrad", "momentum"])
def test_optimizer_slots_flush_subnormals_to_zero(form, dtype, kernel):
    """A slot whose gradient is 0 decays; once it would turn subnormal it is stored as +0
    (x86 arithmetic on subnormals is ~100x slower), in every form alike. Normal values, NaN
    and the parameter itself are left as the math gives them."""
    tiny = np.finfo(dtype).tiny
    g = np.zeros(5, dtype)
    slot = np.array([1.05 * tiny, 3 * tiny, -1.05 * tiny, np.nan, 1.0], dtype)
    p = np.ones(5, dtype)
    v = np.array([1.0005 * tiny, 3 * tiny, 1.0005 * tiny, np.nan, 1.0], dtype)  # x 0.999
    d = [form.device(a) for a in (p, g, slot, v, np.zeros(5, dtype))]
    with form.running(), np.errstate(invalid="ignore"):
        if kernel == "momentum":
            kernels.sgd_update(d[0], d[1], 0.1, 0.9, d[2])
            slots = [d[2]]
        else:
            kernels.adam_update(d[0], d[1], d[2], d[3], 0.01, 0.9, 0.999, 1e-7,
                                d[4] if kernel == "amsgrad" else None)
            slots = [d[2], d[3]]
    for got in map(form.host, slots):
        assert got[0] == 0 and got[2] == 0 and not np.signbit(got[2])
        assert got[1] >= tiny and np.isnan(got[3]) and got[4] > 0.8
    want_m1 = dtype(3 * tiny) * dtype(0.9)
    if kernel != "momentum":
        assert form.host(d[2])[1] == want_m1 and form.host(d[0])[4] < 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("decay", [None, 0.99])
def test_sgd_update_is_the_math(form, dtype, momentum, nesterov, decay):
    rng = np.random.default_rng(int(momentum * 10) + nesterov)
    p, g, v = (rng.standard_normal((4, 3)).astype(dtype) for _ in range(3))
    wp, wv = p.astype(np.float64), v.astype(np.float64)
    for _ in range(2):
        wp = wp * (1.0 if decay is None else decay)
        if momentum:
            wv = momentum * wv - 0.1 * g
            wp = wp + (momentum * wv - 0.1 * g if nesterov else wv)
        else:
            wp = wp - 0.1 * g
    dp, dg, dv = form.device(p), form.device(g), form.device(v)
    with form.running():
        assert kernels.current_implementation("sgd_update", dp) == form.expected
        for _ in range(2):
            assert kernels.sgd_update(dp, dg, 0.1, momentum, dv if momentum else None, nesterov,
                                      decay) is dp
    np.testing.assert_allclose(form.host(dp), wp, **TOL[dtype])
    np.testing.assert_allclose(form.host(dv), wv if momentum else v, **TOL[dtype])


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_a_large_dropout_mask_split_over_worker_threads_is_the_same_mask(monkeypatch, threads):
    """Above MIN_SPLIT_BYTES the Numba CPU form splits the mask over the worker threads:
    each element depends on its index only, so every split gives the reference's bits."""
    import importlib
    from accelnet.kernels import _workers
    dm = importlib.import_module("accelnet.kernels.dropout_mask")
    monkeypatch.setenv("ACCELNET_NUM_THREADS", threads)
    like = np.zeros(1, np.float32)
    shape = (33, 12, 12, 256)
    got = dm.numba_cpu(like, shape, 0xDEADBEEF, 0.3)
    assert got.nbytes >= _workers.MIN_SPLIT_BYTES
    want = dm.reference(like, shape, 0xDEADBEEF, 0.3)
    np.testing.assert_array_equal(got, want)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    mask, y = dm.numba_cpu(like, shape, 0xDEADBEEF, 0.3, x=x)
    np.testing.assert_array_equal(mask, want)
    np.testing.assert_array_equal(y, x * want)


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("kernel", ["adam", "amsgrad", "momentum"])
def test_a_large_optimizer_update_split_over_worker_threads_is_the_same(monkeypatch, threads,
                                                                        kernel):
    """Above MIN_SPLIT_BYTES the Numba CPU optimizer forms split the parameter over the
    worker threads: elementwise, so every split gives the same bits as one call."""
    import importlib
    from accelnet.kernels import _workers
    ou = importlib.import_module("accelnet.kernels.optimizer_update")
    rng = np.random.default_rng(5)
    n = _workers.MIN_SPLIT_BYTES // 4 + 1001
    p, g, m, v, h = (rng.standard_normal(n).astype(np.float32) for _ in range(5))
    v, h = np.abs(v), np.abs(h)
    results = {}
    for t in ("0", threads):  # "0": workers off, one call
        monkeypatch.setenv("ACCELNET_NUM_THREADS", t)
        arrays = [a.copy() for a in (p, g, m, v, h)]
        if kernel == "momentum":
            ou.numba_cpu_sgd(arrays[0], arrays[1], 0.1, 0.9, arrays[2], nesterov=True)
        else:
            ou.numba_cpu_adam(*arrays[:4], 1e-3, 0.9, 0.999, 1e-7,
                              v_hat=arrays[4] if kernel == "amsgrad" else None)
        results[t] = arrays
    for got, want in zip(results[threads], results["0"]):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(results[threads][0], p)  # the update ran

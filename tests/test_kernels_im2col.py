"""im2col / col2im: shape rules, reference vs Numba CPU, adjointness, and convolution
through im2col against a direct nested-loop convolution.

Tolerances: im2col exact (a copy); col2im rtol 1e-6 in float32 and 1e-12 in float64
(overlaps are summed; both forms add in the same (kh, kw) order, so in practice they
agree bit for bit). Adjoint and convolution checks run in float64, rtol 1e-12.
"""
import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from accelnet import kernels
from accelnet.errors import InvalidArgumentError, ShapeError

im = importlib.import_module("accelnet.kernels.im2col")
FORMS = {"reference": (im.reference_im2col, im.reference_col2im),
         "numba-cpu": (im.numba_cpu_im2col, im.numba_cpu_col2im)}
COL2IM_TOL = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


@pytest.mark.parametrize("size,k,s,padding,want", [
    (28, 3, 1, "valid", 26), (28, 3, 2, "valid", 13), (28, 3, 1, "same", 28),
    (28, 3, 2, "same", 14), (5, 2, 2, "valid", 2), (5, 2, 2, "same", 3),
    (7, 3, 3, "valid", 2), (7, 3, 3, "same", 3), (1, 1, 1, "valid", 1), (3, 5, 1, "valid", -1)])
def test_conv_output_size(size, k, s, padding, want):
    assert kernels.conv_output_size(size, k, s, padding) == want


@pytest.mark.parametrize("size,k,s,want", [
    (5, 3, 1, (1, 1)), (5, 2, 1, (0, 1)), (5, 3, 2, (1, 1)), (6, 3, 2, (0, 1)),
    (4, 1, 1, (0, 0)), (5, 4, 2, (1, 2)), (1, 3, 1, (1, 1)), (7, 2, 3, (0, 1)),
    (2, 5, 4, (1, 2)), (28, 2, 2, (0, 0))])
def test_same_padding_tensorflow_rule(size, k, s, want):
    assert kernels.same_padding(size, k, s) == want


def geometry():
    return st.tuples(st.integers(1, 3), st.integers(1, 7), st.integers(1, 7), st.integers(1, 3),
                     st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3),
                     st.sampled_from(["valid", "same"]))


def image(seed, shape, dtype, transposed=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    return np.ascontiguousarray(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3) if transposed else x


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), g=geometry(),
       dtype=st.sampled_from([np.float32, np.float64]), transposed=st.booleans())
def test_numba_cpu_matches_reference(seed, g, dtype, transposed):
    n, h, w, c, kh, kw, sh, sw, padding = g
    assume(padding == "same" or (kh <= h and kw <= w))
    x = image(seed, (n, h, w, c), dtype, transposed)
    cols = im.reference_im2col(x, (kh, kw), (sh, sw), padding)
    got = im.numba_cpu_im2col(x, (kh, kw), (sh, sw), padding)
    assert got.dtype == dtype and got.shape == cols.shape
    np.testing.assert_array_equal(got, cols)
    dcols = image(seed + 1, cols.shape + (1, 1), dtype)[..., 0, 0]
    if transposed:
        dcols = np.asfortranarray(dcols)
    want = im.reference_col2im(dcols, x.shape, (kh, kw), (sh, sw), padding)
    got = im.numba_cpu_col2im(dcols, x.shape, (kh, kw), (sh, sw), padding)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, want, **COL2IM_TOL[dtype])


@pytest.mark.parametrize("name", FORMS)
@pytest.mark.parametrize("kernel,stride,padding", [
    ((3, 3), 1, "valid"), ((2, 2), 2, "same"), ((3, 2), (2, 1), "same"), ((1, 4), 3, "valid")])
def test_col2im_is_the_adjoint_of_im2col(name, kernel, stride, padding):
    to_cols, to_image = FORMS[name]
    x = image(0, (2, 6, 7, 3), np.float64)
    cols = to_cols(x, kernel, stride, padding)
    c = image(1, cols.shape + (1, 1), np.float64)[..., 0, 0]
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, to_image(c, x.shape, kernel, stride, padding))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)


def direct_conv(x, w, stride, padding):
    """Nested-loop convolution (Keras kernel (KH, KW, C, F)) with explicit zero padding."""
    n, h, wd, c = x.shape
    kh, kw, _, f = w.shape
    sh, sw = stride
    if padding == "same":
        oh, ow = -(-h // sh), -(-wd // sw)
        ph = max((oh - 1) * sh + kh - h, 0)
        pw = max((ow - 1) * sw + kw - wd, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.zeros((n, oh, ow, f))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                patch = x[b, i * sh:i * sh + kh, j * sw:j * sw + kw, :]
                for o in range(f):
                    out[b, i, j, o] = (patch * w[:, :, :, o]).sum()
    return out


@pytest.mark.parametrize("name", FORMS)
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("kernel", [3, 2, (3, 2)])
def test_convolution_through_im2col_equals_direct(name, padding, stride, kernel):
    to_cols = FORMS[name][0]
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = image(2, (2, 6, 5, 3), np.float64)
    w = image(3, (kh, kw, 3, 4), np.float64)
    cols = to_cols(x, kernel, stride, padding)
    want = direct_conv(x, w, (stride, stride), padding)
    got = (cols @ w.reshape(-1, 4)).reshape(want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", FORMS)
def test_minus_inf_and_batch_chunks(name):
    """Max-pooling feeds -inf padding; conv layers feed batch chunks x[start:stop]."""
    to_cols, to_image = FORMS[name]
    x = image(4, (3, 4, 4, 2), np.float32)
    x[:, 0] = -np.inf
    cols = to_cols(x, 2, 2, "valid")
    np.testing.assert_array_equal(cols, im.reference_im2col(x, 2, 2, "valid"))
    for start, stop in [(0, 1), (1, 3)]:
        part = to_cols(x[start:stop], 2, 2, "valid")
        np.testing.assert_array_equal(part, cols[start * 4:stop * 4])
        assert to_image(part, x[start:stop].shape, 2, 2, "valid").shape == (stop - start, 4, 4, 2)


@pytest.mark.parametrize("name", FORMS)
def test_errors(name):
    to_cols, to_image = FORMS[name]
    x = np.zeros((2, 5, 5, 1), np.float32)
    with pytest.raises(InvalidArgumentError, match="full"):
        to_cols(x, 3, 1, "full")
    with pytest.raises(ShapeError, match=r"\(5, 5, 1\)"):
        to_cols(x[0], 3)
    with pytest.raises(ShapeError, match=r"6x3.*5x5"):
        to_cols(x, (6, 3))
    with pytest.raises(InvalidArgumentError, match="stride"):
        to_cols(x, 3, 0)
    with pytest.raises(InvalidArgumentError, match="kernel_size"):
        to_cols(x, (3, 3, 3))
    with pytest.raises(ShapeError, match=r"\(18, 9\).*\(18, 8\)"):
        to_image(np.zeros((18, 8), np.float32), x.shape, 3)


@pytest.mark.parametrize("kernel", ["im2col", "col2im"])
@pytest.mark.parametrize("family,form", [("reference", "reference"), ("numba", "numba_cpu")])
def test_public_functions_call_the_chosen_form(kernel, family, form, monkeypatch):
    monkeypatch.setattr(im, f"{form}_{kernel}", lambda *args: ("sentinel", form))
    x = np.zeros((1, 3, 3, 1))
    args = (x, 2) if kernel == "im2col" else (np.zeros((4, 4)), x.shape, 2)
    with kernels.implementation(family):
        assert getattr(kernels, kernel)(*args) == ("sentinel", form)

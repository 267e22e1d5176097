"""relu_backward kernel: reference vs Numba CPU vs the definition, in place and not.

Tolerance: exact (every form selects dy or writes 0; there is no arithmetic).
"""
import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelnet import kernels
from accelnet.errors import InvalidArgumentError, ShapeError

relu = importlib.import_module("accelnet.kernels.relu_backward")
FORMS = {"reference": relu.reference, "numba-cpu": relu.numba_cpu}


def expected(dy, x):
    return np.array([d if v > 0 else 0 for d, v in zip(dy.ravel(), x.ravel())],
                    dtype=dy.dtype).reshape(dy.shape)


def layout(a, kind):
    """The same values as a C-contiguous, transposed-view or strided-slice array."""
    if kind == "transposed" and a.ndim >= 2:
        return np.ascontiguousarray(a.T).T
    if kind == "sliced" and a.ndim >= 1:
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    return a


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       shape=st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple),
       dtype=st.sampled_from([np.float32, np.float64]),
       kind=st.sampled_from(["contiguous", "transposed", "sliced"]),
       inplace=st.booleans())
def test_numba_cpu_matches_reference(seed, shape, dtype, kind, inplace):
    rng = np.random.default_rng(seed)
    dy = layout(np.asarray(rng.standard_normal(shape), dtype=dtype), kind)
    x = layout(np.asarray(rng.choice([-1.0, 0.0, 2.0, np.nan], size=shape), dtype=dtype), kind)
    want = expected(dy, x)
    for form in FORMS.values():
        if inplace:
            out = dy.copy()
            got = form(out, x, out=out)
            assert got is out
        else:
            got = form(dy, x)
        assert got.dtype == dtype and got.shape == dy.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
def test_zero_at_x_equal_zero_nan_and_dy_inf(form):
    x = np.array([0.0, -0.0, 1e-30, -1.0, np.nan, np.inf, -np.inf], dtype=np.float32)
    dy = np.array([5.0, 5.0, 5.0, np.inf, np.nan, 7.0, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(form(dy, x), [0, 0, 5, 0, 0, 7, 0])


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
def test_out_variants(form):
    dy = np.arange(-3.0, 3.0).reshape(2, 3)
    x = -dy
    want = expected(dy, x)
    out = np.full_like(dy, 99)
    assert form(dy, x, out=out) is out and np.array_equal(out, want)
    strided = np.full((2, 6), 99.0)[:, ::2]  # non-contiguous out
    assert form(dy, x, out=strided) is strided and np.array_equal(strided, want)
    same = dy.copy()
    assert form(same, x, out=same) is same and np.array_equal(same, want)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
def test_errors(form):
    with pytest.raises(ShapeError, match=r"\(2, 3\).*\(3, 2\)"):
        form(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ShapeError, match=r"\(6,\)"):
        form(np.ones((2, 3)), np.ones((2, 3)), out=np.ones(6))
    with pytest.raises(InvalidArgumentError, match="float32"):
        form(np.ones(3), np.ones(3), out=np.ones(3, np.float32))


def test_other_dtypes_run_the_reference_form():
    dy = np.array([1, 2, 3], dtype=np.float16)
    x = np.array([1, -1, 0], dtype=np.float16)
    got = kernels.relu_backward(dy, x)
    assert got.dtype == np.float16 and got.tolist() == [1, 0, 0]


@pytest.mark.parametrize("family,form", [("reference", "reference"), ("numba", "numba_cpu")])
def test_public_function_calls_the_chosen_form(family, form, monkeypatch):
    monkeypatch.setattr(relu, form, lambda dy, x, out=None: ("sentinel", form))
    with kernels.implementation(family):
        assert kernels.relu_backward(np.ones(2), np.ones(2)) == ("sentinel", form)


def test_read_only_install_falls_back_to_no_cache(monkeypatch):
    """With no writable cache location Numba refuses cache=True; cpu_jit must still work."""
    import numba.core.caching

    from accelnet.kernels import _jit

    monkeypatch.setattr(numba.core.caching.CacheImpl, "_locator_classes", [])
    monkeypatch.setattr(_jit, "_warned", False)

    def double(a, out):
        for i in _jit.prange(a.size):
            out[i] = 2 * a[i]

    kernel = _jit.cpu_jit()(double)
    out = np.zeros(3)
    with pytest.warns(RuntimeWarning, match="NUMBA_CACHE_DIR"):
        kernel(np.arange(3.0), out)
    assert out.tolist() == [0, 2, 4]

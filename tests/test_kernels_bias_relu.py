"""bias_relu / relu_bias_grad kernels: reference vs Numba CPU vs the definition.

Tolerance: the activations are exact (an add then a selection); bias_grad (float64 sums
of the selected dy) 1e-12 relative (the reference sums pairwise, the Numba forms in order).
"""
import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelnet import kernels
from accelnet.errors import ShapeError

br = importlib.import_module("accelnet.kernels.bias_relu")
FORMS = {"reference": (br.reference, br.reference_grad),
         "numba-cpu": (br.numba_cpu, br.numba_cpu_grad)}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(0, 40), f=st.integers(1, 9),
       dtype=st.sampled_from([np.float32, np.float64]), inplace=st.booleans())
def test_forms_match_the_definition(seed, rows, f, dtype, inplace):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, f)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    want = np.where(z + bias > 0, z + bias, 0).astype(dtype)
    dy = rng.standard_normal((rows, f)).astype(dtype)
    want_dz = np.where(want > 0, dy, 0).astype(dtype)
    want_db = want_dz.astype(np.float64).sum(axis=0)
    for fwd, bwd in FORMS.values():
        zz = z.copy()
        assert fwd(zz, bias) is zz
        np.testing.assert_array_equal(zz, want)
        out = dy.copy() if inplace else None
        dz, db = bwd(out if inplace else dy, zz, out=out)
        assert dz.dtype == dtype and db.dtype == np.float64 and db.shape == (f,)
        if inplace:
            assert dz is out
        np.testing.assert_array_equal(dz, want_dz)
        np.testing.assert_allclose(db, want_db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", FORMS)
def test_nan_inf_and_zero(name):
    fwd, bwd = FORMS[name]
    z = np.array([[np.nan, -1.0, 0.0, np.inf]], np.float32)
    out = fwd(z, np.zeros(4, np.float32))
    assert np.isnan(out[0, 0]) and out[0, 1] == 0 and out[0, 2] == 0 and out[0, 3] == np.inf
    dz, db = bwd(np.array([[1.0, np.inf, np.nan, 2.0]], np.float32), out)
    np.testing.assert_array_equal(dz, [[0, 0, 0, 2.0]])  # NaN input and y <= 0 pass nothing
    np.testing.assert_array_equal(db, [0, 0, 0, 2.0])


@pytest.mark.parametrize("name", FORMS)
def test_shape_errors(name):
    fwd, bwd = FORMS[name]
    with pytest.raises(ShapeError, match="bias_relu"):
        fwd(np.zeros((2, 3), np.float32), np.zeros(4, np.float32))
    with pytest.raises(ShapeError, match="relu_bias_grad"):
        bwd(np.zeros((2, 3), np.float32), np.zeros((3, 2), np.float32))


def test_public_entry_points_dispatch():
    assert kernels.current_implementation("bias_relu", np) == "numba-cpu"
    assert kernels.current_implementation("relu_bias_grad", np) == "numba-cpu"
    z = np.array([[-1.0, 2.0]], np.float32)
    kernels.bias_relu(z, np.array([0.5, 0.5], np.float32))
    np.testing.assert_array_equal(z, [[0, 2.5]])
    dz, db = kernels.relu_bias_grad(np.ones((1, 2), np.float32), z)
    np.testing.assert_array_equal(db, [0, 1])

"""softmax_cross_entropy kernel: reference vs Numba CPU, both vs an independent float64
formula and finite differences; error handling; form selection (dispatch).

Tolerances (loss and dlogits): float32 rtol 1e-5, atol 1e-7; float64 rtol 1e-12,
atol 1e-15. The Numba form accumulates each row in float64, the reference computes in
the logits' dtype, so float32 results differ by a few ulps.
"""
import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelnet import kernels
from accelnet.errors import InvalidArgumentError, ShapeError

sce = importlib.import_module("accelnet.kernels.softmax_cross_entropy")
FORMS = {"reference": sce.reference, "numba-cpu": sce.numba_cpu}
TOL = {np.float32: dict(rtol=1e-5, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-15)}
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def expected(logits, labels):
    """Loss and gradient in float64 from the definition (independent of the kernels)."""
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    logp = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    n, c = x.shape
    p = np.eye(c)[labels] if labels.ndim == 1 else labels.astype(np.float64)
    terms = np.where(p != 0, -p * np.where(p != 0, logp, 0), 0)
    grad = (np.exp(logp) * p.sum(axis=1, keepdims=True) - p) / n
    return terms.sum(axis=1).mean(), grad


def layout(a, kind):
    """The same values as a C-contiguous, transposed-view or strided-slice array."""
    if kind == "transposed":
        return np.ascontiguousarray(a.T).T
    if kind == "sliced":
        wide = np.zeros((a.shape[0], 2 * a.shape[1]), dtype=a.dtype)
        wide[:, ::2] = a
        return wide[:, ::2]
    return a


def make(seed, n, c, dtype, scale=3.0, soft=False):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c)) * scale).astype(dtype)
    labels = rng.dirichlet(np.ones(c), n) if soft else rng.integers(0, c, n)
    return logits, labels


def check(form, logits, labels, dtype):
    loss, grad = form(logits, labels)
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == dtype
    assert grad.shape == logits.shape and grad.dtype == dtype
    want_loss, want_grad = expected(logits, labels)
    np.testing.assert_allclose(loss, want_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, want_grad, **TOL[dtype])
    return loss, grad


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 6), c=st.integers(1, 6),
       dtype=st.sampled_from([np.float32, np.float64]), soft=st.booleans(),
       kind=st.sampled_from(["contiguous", "transposed", "sliced"]),
       scale=st.sampled_from([1.0, 30.0, 1e4]))
def test_numba_cpu_matches_reference_and_definition(seed, n, c, dtype, soft, kind, scale):
    logits, labels = make(seed, n, c, dtype, scale, soft)
    logits = layout(logits, kind)
    if soft:
        labels = layout(labels, kind)
    ref_loss, ref_grad = check(sce.reference, logits, labels, dtype)
    loss, grad = check(sce.numba_cpu, logits, labels, dtype)
    np.testing.assert_allclose(loss, ref_loss, **TOL[dtype])
    np.testing.assert_allclose(grad, ref_grad, **TOL[dtype])


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
def test_loss_is_minus_mean_log_softmax_at_label(form):
    logits, labels = make(1, 7, 5, np.float64)
    x = logits.astype(np.float64)
    logsoftmax = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    loss, _ = form(logits, labels)
    np.testing.assert_allclose(loss, -logsoftmax[np.arange(7), labels].mean(), rtol=1e-12)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
@pytest.mark.parametrize("soft", [False, True])
def test_gradient_matches_central_differences(form, soft):
    logits, labels = make(2, 4, 5, np.float64, soft=soft)
    _, grad = form(logits, labels)
    eps = 1e-6
    numeric = np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (form(plus, labels)[0] - form(minus, labels)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite(form, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    labels = np.array([1, 2, 0])
    loss, grad = check(form, logits, labels, dtype)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    np.testing.assert_allclose(loss, 2e4 / 3 + np.log(2) / 3, rtol=1e-6)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
@pytest.mark.parametrize("soft", [False, True])
def test_row_of_minus_inf_except_label(form, soft):
    logits = np.full((2, 4), -np.inf, dtype=np.float32)
    logits[0, 2] = 1.5
    logits[1] = [0.1, 0.2, 0.3, 0.4]
    labels = np.array([2, 0])
    if soft:
        labels = np.eye(4)[labels]
    with np.errstate(all="raise"):
        loss, grad = form(logits, labels)
    assert np.isfinite(grad).all()
    row1 = -(0.1 - np.log(np.exp([0.1, 0.2, 0.3, 0.4]).sum()))
    np.testing.assert_allclose(loss, row1 / 2, rtol=1e-5)  # row 0 contributes 0
    np.testing.assert_array_equal(grad[0], 0)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
def test_soft_one_hot_labels_equal_int_labels(form):
    logits, labels = make(3, 6, 4, np.float64)
    loss_int, grad_int = form(logits, labels)
    loss_soft, grad_soft = form(logits, np.eye(4)[labels].astype(np.float32))
    np.testing.assert_allclose(loss_soft, loss_int, rtol=1e-12)
    np.testing.assert_allclose(grad_soft, grad_int, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
@pytest.mark.parametrize("n,c", [(1, 1), (1, 5), (5, 1)])
def test_batch_of_one_and_single_class(form, n, c):
    logits, labels = make(4, n, c, np.float32)
    loss, grad = check(form, logits, labels, np.float32)
    if c == 1:
        assert loss == 0 and not grad.any()


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
def test_label_dtypes(form):
    logits, labels = make(5, 4, 3, np.float32)
    base = form(logits, labels)
    for other in (labels.astype(np.uint8), labels.astype(np.int32), labels.astype(np.float32)):
        loss, grad = form(logits, other)
        assert loss == base[0] and np.array_equal(grad, base[1])


@pytest.mark.parametrize("form", [*FORMS.values(), kernels.softmax_cross_entropy],
                         ids=[*FORMS, "public"])
@pytest.mark.parametrize("bad", [3, -1, 2.5])
def test_bad_label_raises_naming_value_index_and_classes(form, bad):
    logits = np.zeros((4, 3), dtype=np.float32)
    labels = np.array([0, 1, bad, 2], dtype=np.float64 if bad == 2.5 else np.int64)
    with pytest.raises(InvalidArgumentError, match=rf"label {bad}.* index 2 .*3 classes"):
        form(logits, labels)


def test_device_flag_records_first_bad_label_and_check_errors_resets():
    """The array-op flag update (used by the reference form on GPU), run on NumPy."""
    sce._flags.pop(("numpy", None), None)
    kernels.check_errors()  # nothing flagged: no error
    sce._flag_bad_labels(np, np.array([0, 1, 2]), 3)
    kernels.check_errors()
    sce._flag_bad_labels(np, np.array([0, 7, -1]), 3)
    sce._flag_bad_labels(np, np.array([-5]), 3)  # a later batch does not overwrite
    with pytest.raises(InvalidArgumentError, match=r"label 7 at index 1 .*3 classes"):
        kernels.check_errors()
    kernels.check_errors()  # reset
    sce._flags.pop(("numpy", None), None)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS)
def test_shape_errors_name_the_shapes(form):
    with pytest.raises(ShapeError, match=r"\(6,\)"):
        form(np.zeros(6, np.float32), np.zeros(6, np.int64))
    with pytest.raises(ShapeError, match=r"\(5,\).*\(4, 3\)"):
        form(np.zeros((4, 3), np.float32), np.zeros(5, np.int64))
    with pytest.raises(ShapeError, match=r"\(4, 2\)"):
        form(np.zeros((4, 3), np.float32), np.zeros((4, 2), np.float32))


# ------------------------------------------------------------------------- dispatch

KERNELS = ["softmax_cross_entropy", "relu_backward", "im2col", "col2im"]


@pytest.mark.parametrize("name", KERNELS)
def test_env_var_and_context_manager_select_the_form(name, monkeypatch):
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)
    default = kernels.DEFAULTS[name]["cpu"]
    assert kernels.current_implementation(name, np) == \
        ("reference" if default == "reference" else "numba-cpu")
    monkeypatch.setenv("ACCELNET_KERNELS", "reference")
    assert kernels.current_implementation(name, np.zeros(2)) == "reference"
    with kernels.implementation("numba"):
        assert kernels.current_implementation(name, np) == "numba-cpu"
        with kernels.implementation(None):
            assert kernels.current_implementation(name, np) == "reference"
    monkeypatch.setenv("ACCELNET_KERNELS", "numba")
    assert kernels.current_implementation(name, np) == "numba-cpu"
    with kernels.implementation("reference"):
        assert kernels.current_implementation(name, np) == "reference"
    assert kernels.current_implementation(name, np) == "numba-cpu"


def test_invalid_implementation_names_raise(monkeypatch):
    monkeypatch.setenv("ACCELNET_KERNELS", "fortran")
    with pytest.raises(ValueError, match="numba, reference"):
        kernels.current_implementation("relu_backward", np)
    with pytest.raises(ValueError, match="fortran"):
        kernels.relu_backward(np.ones(2), np.ones(2))
    monkeypatch.delenv("ACCELNET_KERNELS")
    with pytest.raises(ValueError, match="numba, reference"):
        with kernels.implementation("cuda"):
            pass
    with pytest.raises(ValueError, match="Unknown kernel"):
        kernels.current_implementation("conv3d", np)


@pytest.mark.parametrize("family,form", [("reference", "reference"), ("numba", "numba_cpu")])
def test_public_function_calls_the_chosen_form(family, form, monkeypatch):
    monkeypatch.setattr(sce, form, lambda logits, labels: ("sentinel", form))
    with kernels.implementation(family):
        assert kernels.softmax_cross_entropy(np.zeros((2, 3)), np.zeros(2, int)) == \
            ("sentinel", form)

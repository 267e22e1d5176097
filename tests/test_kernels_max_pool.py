"""max_pool kernel: reference vs Numba CPU vs a loop over windows (the definition).

Tolerance: forward exact (a selection); backward exact where windows do not overlap,
else 1e-6 relative (overlapping windows add their gradients in another order).
"""
import importlib

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from accelnet import kernels
from accelnet.errors import ShapeError

mp = importlib.import_module("accelnet.kernels.max_pool")
FORMS = {"reference": (mp.reference, mp.reference_backward),
         "numba-cpu": (mp.numba_cpu, mp.numba_cpu_backward)}


def expected(x, pool, strides, padding):
    """Loops straight from the definition: first maximum in row-major window order."""
    n, h, w, c = x.shape
    (ph, pw), (sh, sw) = pool, strides
    oh, ow = (kernels.conv_output_size(s, k, t, padding) for s, k, t in zip((h, w), pool, strides))
    top, left = ((kernels.same_padding(s, k, t)[0] for s, k, t in zip((h, w), pool, strides))
                 if padding == "same" else (0, 0))
    out = np.empty((n, oh, ow, c), x.dtype)
    arg = np.empty((n, oh, ow, c), np.int64)
    for b, i, j, ch in np.ndindex(n, oh, ow, c):
        best, win = None, None
        for p in range(ph):
            for q in range(pw):
                y, z = i * sh - top + p, j * sw - left + q
                if 0 <= y < h and 0 <= z < w and (best is None or x[b, y, z, ch] > best):
                    best, win = x[b, y, z, ch], p * pw + q
        out[b, i, j, ch], arg[b, i, j, ch] = best, win
    return out, arg


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3), h=st.integers(1, 7),
       w=st.integers(1, 7), c=st.integers(1, 4), ph=st.integers(1, 3), pw=st.integers(1, 3),
       sh=st.integers(1, 3), sw=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]),
       dtype=st.sampled_from([np.float32, np.float64]))
@example(seed=1, n=2, h=4, w=6, c=3, ph=2, pw=2, sh=2, sw=2, padding="valid",  # 2x2 windows
         dtype=np.float32)  # tiling the input exactly: the CPU backward's direct writes
@example(seed=2, n=1, h=6, w=4, c=17, ph=2, pw=2, sh=2, sw=2, padding="same", dtype=np.float64)
def test_forms_match_the_definition(seed, n, h, w, c, ph, pw, sh, sw, padding, dtype):
    if padding == "valid" and (ph > h or pw > w):
        return
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 0.0, 0.5, 2.0], size=(n, h, w, c)).astype(dtype)  # many ties
    want_out, want_arg = expected(x, (ph, pw), (sh, sw), padding)
    grad = rng.standard_normal(want_out.shape).astype(dtype)
    dx = {}
    for name, (fwd, bwd) in FORMS.items():
        out, arg = fwd(x, (ph, pw), (sh, sw), padding)
        assert out.dtype == dtype and arg.dtype == np.uint8
        np.testing.assert_array_equal(out, want_out)
        np.testing.assert_array_equal(arg, want_arg)
        dx[name] = bwd(grad, arg, x.shape, (ph, pw), (sh, sw), padding)
        assert dx[name].dtype == dtype and dx[name].shape == x.shape
    overlap = sh < ph or sw < pw
    np.testing.assert_allclose(dx["numba-cpu"], dx["reference"], rtol=1e-6 if overlap else 0,
                               atol=1e-6 if overlap else 0)
    # The adjoint: <dx, x-direction> equals <grad, output change> for the recorded winners.
    total = np.zeros(x.shape)
    for b, i, j, ch in np.ndindex(*want_out.shape):
        k = want_arg[b, i, j, ch]
        top, left = ((kernels.same_padding(s, q, t)[0] for s, q, t in zip((h, w), (ph, pw), (sh, sw)))
                     if padding == "same" else (0, 0))
        total[b, i * sh - top + k // pw, j * sw - left + k % pw, ch] += grad[b, i, j, ch]
    np.testing.assert_allclose(dx["numba-cpu"], total, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", FORMS)
def test_nan_wins_and_padding_never_does(name):
    fwd, _ = FORMS[name]
    x = np.full((1, 3, 3, 1), -5.0, np.float32)
    x[0, 0, 1, 0] = np.nan
    out, arg = fwd(x, (2, 2), (2, 2), "same")
    assert np.isnan(out[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 1
    assert out[0, 1, 1, 0] == -5.0 and arg[0, 1, 1, 0] == 0  # the lone corner cell
    x = np.full((1, 2, 4, 2), -5.0, np.float32)  # two 2x2 windows inside: the first NaN wins
    x[0, 1, 0, 0] = x[0, 1, 1, 0] = np.nan  # window 0, channel 0: cells 2 and 3
    x[0, 0, 3, 0], x[0, 1, 2, 0] = np.inf, np.nan  # window 1: inf at cell 1, NaN at 2
    x[0, 0, 1, 1], x[0, 1, 1, 1] = 3.0, 3.0  # a tie: the first maximum (cell 1)
    out, arg = fwd(x, (2, 2), (2, 2), "valid")
    assert np.isnan(out[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 2
    assert np.isnan(out[0, 0, 1, 0]) and arg[0, 0, 1, 0] == 2
    assert out[0, 0, 0, 1] == 3.0 and arg[0, 0, 0, 1] == 1


def test_large_windows_use_int32_indices():
    x = np.random.default_rng(0).standard_normal((1, 17, 17, 2)).astype(np.float32)
    for fwd, _ in FORMS.values():
        out, arg = fwd(x, (17, 17), (17, 17), "valid")
        assert arg.dtype == np.int32
        np.testing.assert_array_equal(out[0, 0, 0], x[0].reshape(-1, 2).max(axis=0))


@pytest.mark.parametrize("name", FORMS)
def test_backward_rejects_mismatched_shapes(name):
    _, bwd = FORMS[name]
    with pytest.raises(ShapeError, match="max_pool_backward"):
        bwd(np.zeros((1, 2, 2, 1), np.float32), np.zeros((1, 2, 2, 1), np.uint8), (1, 6, 6, 1),
            (2, 2), (2, 2), "valid")


def test_public_entry_points_dispatch():
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 3)).astype(np.float32)
    out, arg = kernels.max_pool(x, (2, 2), (2, 2))
    with kernels.implementation("reference"):
        want, want_arg = kernels.max_pool(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(out, want)
    dx = kernels.max_pool_backward(np.ones_like(out), arg, x.shape, (2, 2), (2, 2))
    assert dx.sum() == out.size
    assert kernels.current_implementation("max_pool", np) == "numba-cpu"


@pytest.mark.parametrize("threads", ["1", "2", "3"])
def test_a_large_batch_split_over_worker_threads_gives_the_same_bits(monkeypatch, threads):
    """Above MIN_SPLIT_BYTES the Numba form splits the batch over the worker threads; the
    samples are independent, so any split gives the reference's bits."""
    from accelnet.kernels import _workers
    monkeypatch.setenv("ACCELNET_NUM_THREADS", threads)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 24, 24, 64)).astype(np.float32)
    assert x.nbytes >= _workers.MIN_SPLIT_BYTES
    want, want_arg = mp.reference(x, (2, 2), (2, 2), "same")
    got, arg = mp.numba_cpu(x, (2, 2), (2, 2), "same")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(arg, want_arg)
    grad = rng.standard_normal(want.shape).astype(np.float32)
    np.testing.assert_array_equal(
        mp.numba_cpu_backward(grad, arg, x.shape, (2, 2), (2, 2), "same"),
        mp.reference_backward(grad, want_arg, x.shape, (2, 2), (2, 2), "same"))


def test_split_batch_covers_the_batch_once():
    from accelnet.kernels import _workers
    seen = []
    big = np.zeros(_workers.MIN_SPLIT_BYTES // 4 + 1, np.float32)
    _workers.split_batch(big, 7, lambda a, b: seen.append((a, b)))
    assert sorted(i for a, b in seen for i in range(a, b)) == list(range(7))
    seen.clear()
    _workers.split_batch(np.zeros(4, np.float32), 7, lambda a, b: seen.append((a, b)))
    assert seen == [(0, 7)]

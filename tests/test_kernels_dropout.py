"""dropout kernel: the hash mask is the same bit for bit in every form, drops about
`rate`, is reproducible from the key (and from accelnet.random.seed in the layer)."""
import importlib

import numpy as np
import pytest

import accelnet as an
from accelnet import kernels, layers
from accelnet.errors import ShapeError

dr = importlib.import_module("accelnet.kernels.dropout")
FORMS = {"reference": (dr.reference, dr.reference_backward),
         "numba-cpu": (dr.numba_cpu, dr.numba_cpu_backward)}
KEY = np.array([12345.0, 4294967295.0])


def splitmix_keep(key, i, rate):
    """The definition, in Python integers."""
    mask64 = (1 << 64) - 1
    z = ((int(key[0]) << 32 | int(key[1])) + (i + 1) * 0x9E3779B97F4A7C15) & mask64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask64
    z ^= z >> 31
    return (z >> 40) >= round(rate * (1 << 24))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0,), (7,), (3, 5, 2)])
def test_forms_agree_with_the_definition(dtype, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    want_mask = np.array([splitmix_keep(KEY, i, 0.3) for i in range(x.size)],
                         dtype=np.uint8).reshape(shape)
    for fwd, bwd in FORMS.values():
        y, mask = fwd(x, KEY, 0.3)
        assert y.dtype == dtype and mask.dtype == np.uint8 and mask.shape == shape
        np.testing.assert_array_equal(mask, want_mask)
        np.testing.assert_array_equal(y, np.where(want_mask, x * dtype(1 / 0.7), 0))
        g = np.ones(shape, dtype)
        np.testing.assert_array_equal(bwd(g, mask, 0.3), np.where(want_mask, dtype(1 / 0.7), 0))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_drop_fraction_and_independence_of_keys(rate):
    x = np.ones(200_000, np.float32)
    _, a = dr.numba_cpu(x, KEY, rate)
    _, b = dr.numba_cpu(x, np.array([1.0, 2.0]), rate)
    assert abs(1 - a.mean() - rate) < 0.005 and abs(1 - b.mean() - rate) < 0.005
    both = (a & b).mean()  # independent masks: P(both kept) = (1 - rate)^2
    assert abs(both - (1 - rate) ** 2) < 0.005


def test_bad_key_and_mask_shapes():
    for fwd, bwd in FORMS.values():
        with pytest.raises(ShapeError, match="key"):
            fwd(np.ones(3, np.float32), np.zeros(3), 0.5)
        with pytest.raises(ShapeError, match="mask"):
            bwd(np.ones(3, np.float32), np.ones(2, np.uint8), 0.5)


def test_layer_masks_are_reproducible_from_the_seed_and_differ_per_call():
    x = np.ones((64, 50), np.float32)
    runs = []
    for _ in range(2):
        an.random.seed(7)
        layer = layers.Dropout(0.4)
        runs.append([layer.forward(x) for _ in range(2)])
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert (runs[0][0] != runs[0][1]).any()
    with kernels.implementation("reference"):  # the same masks from the reference form
        an.random.seed(7)
        np.testing.assert_array_equal(layers.Dropout(0.4).forward(x), runs[0][0])


def test_layer_backward_uses_the_forward_mask():
    an.random.seed(1)
    layer = layers.Dropout(0.5)
    x = np.random.default_rng(2).standard_normal((8, 9)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx != 0, y != 0)
    np.testing.assert_array_equal(dx[dx != 0], np.float32(2.0))

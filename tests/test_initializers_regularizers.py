"""Initializers follow Keras's definitions; regularizers seed 002's penalty/gradient."""
import math

import numpy as np
import pytest

from accelnet import initializers, random, regularizers
from accelnet.errors import UnknownNameError
from accelnet.gradient_check import numerical_grad


def draw(name_or_init, shape=(400, 300)):
    random.seed(0)
    return initializers.get(name_or_init)(shape, dtype=np.float64)


def test_fans():
    assert initializers.compute_fans((784, 512)) == (784, 512)
    assert initializers.compute_fans((3, 3, 32, 64)) == (288, 576)


def test_glorot_uniform_limit():
    w = draw("glorot_uniform")
    limit = math.sqrt(6 / 700)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit


@pytest.mark.parametrize("name,var", [("glorot_normal", 2 / 700), ("he_normal", 2 / 400),
                                      ("he_uniform", 2 / 400), ("lecun_normal", 1 / 400)])
def test_variance_scaling_variance(name, var):
    assert abs(draw(name).var() / var - 1) < 0.03


def test_truncated_normal_stays_within_two_sigma():
    w = draw(initializers.TruncatedNormal(stddev=0.1))
    assert np.abs(w).max() <= 0.2 and abs(w.std() - 0.088) < 0.003


def test_constant_zeros_ones_uniform():
    assert np.all(draw(initializers.constant(0.1), (3,)) == 0.1)
    assert np.all(draw("zeros", (3,)) == 0) and np.all(draw("ones", (3,)) == 1)
    w = draw(initializers.RandomUniform(-1, 1))
    assert w.min() >= -1 and w.max() < 1


def test_seeded_draws_repeat_and_dtype():
    a = draw("glorot_uniform")
    b = draw("glorot_uniform")
    np.testing.assert_array_equal(a, b)
    assert initializers.get("he_normal")((2, 2), dtype=np.float32).dtype == np.float32


def test_unknown_initializer():
    with pytest.raises(UnknownNameError, match="glorot_uniform"):
        initializers.get("glorot_unifrom")


W = np.array([[0.5, -2.0], [0.0, 3.0]])


def test_penalties_match_seed_002():
    assert float(regularizers.l1(0.1).penalty(W)) == pytest.approx(0.1 * 5.5)
    assert float(regularizers.l2(0.1).penalty(W)) == pytest.approx(0.1 * 13.25)
    assert float(regularizers.l1_l2(0.1, 0.2).penalty(W)) == pytest.approx(0.55 + 2.65)


def test_gradients_match_seed_002():
    np.testing.assert_allclose(regularizers.l1(0.1).gradient(W), 0.1 * np.sign(W))
    np.testing.assert_allclose(regularizers.l2(0.1).gradient(W), 0.2 * W)


@pytest.mark.parametrize("reg", [regularizers.l2(0.3), regularizers.l1_l2(0.1, 0.2), regularizers.l1(0.2)])
def test_gradient_is_derivative_of_penalty(reg):
    w = np.array([[0.5, -2.0], [0.7, 3.0]])  # no zeros: |w| is not differentiable there
    num = numerical_grad(lambda: float(reg.penalty(w)), w)
    np.testing.assert_allclose(reg.gradient(w), num, rtol=1e-6)


def test_regularizer_get():
    assert regularizers.get(None) is None
    assert isinstance(regularizers.get("l2"), regularizers.L2)
    r = regularizers.get(regularizers.serialize(regularizers.l1_l2(0.1, 0.2)))
    assert (r.l1, r.l2) == (0.1, 0.2)
    with pytest.raises(ValueError, match="must be a finite number >= 0"):
        regularizers.l2(-1)

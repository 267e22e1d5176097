"""Each optimizer's first two steps against values worked out by hand on scalars.

The expected numbers are written as the textbook/Keras formulas on plain Python
floats, independently of the array code under test.
"""
import math

import numpy as np
import pytest

from accelnet import optimizers
from accelnet.errors import InvalidArgumentError, UnknownNameError

G1, G2 = 0.5, -0.25  # the two gradients


def two_steps(opt, p0=1.0):
    p = {"w": np.array([p0, -p0], dtype=np.float64)}
    for g in (G1, G2):
        opt.apply(p, {"w": np.array([g, -g])})
    return p["w"]


def check(opt, expected):
    w = two_steps(opt)
    np.testing.assert_allclose(w, [expected, -expected], rtol=1e-12)


def test_sgd_plain():
    check(optimizers.SGD(0.1), 1.0 - 0.1 * 0.5 + 0.1 * 0.25)  # 0.975


def test_sgd_decay_uses_step_count():
    lr1, lr2 = 0.1, 0.1 / (1 + 0.5 * 1)
    check(optimizers.SGD(0.1, decay=0.5), 1.0 - lr1 * G1 - lr2 * G2)


def test_sgd_momentum():
    v1 = -0.1 * G1                 # -0.05
    v2 = 0.9 * v1 - 0.1 * G2       # -0.045 + 0.025 = -0.02
    check(optimizers.SGD(0.1, momentum=0.9), 1.0 + v1 + v2)  # 0.93


def test_sgd_nesterov():
    v1 = -0.1 * G1
    p1 = 1.0 + 0.9 * v1 - 0.1 * G1
    v2 = 0.9 * v1 - 0.1 * G2
    check(optimizers.SGD(0.1, momentum=0.9, nesterov=True), p1 + 0.9 * v2 - 0.1 * G2)


def test_adam():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-7
    p, m, v = 1.0, 0.0, 0.0
    for t, g in ((1, G1), (2, G2)):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (math.sqrt(v) + eps)
    check(optimizers.Adam(0.1), p)


def test_adam_first_step_moves_by_lr():
    # With bias correction the first Adam step is lr·sign(g) (up to epsilon).
    p = {"w": np.array([1.0])}
    optimizers.Adam(0.01).apply(p, {"w": np.array([123.0])})
    np.testing.assert_allclose(p["w"], [0.99], rtol=1e-9)


def test_rmsprop():
    lr, rho, eps = 0.01, 0.9, 1e-7
    p, v = 1.0, 0.0
    for g in (G1, G2):
        v = rho * v + (1 - rho) * g * g
        p -= lr * g / math.sqrt(v + eps)
    check(optimizers.RMSprop(0.01), p)


def test_adagrad():
    lr, eps = 0.1, 1e-7
    p, a = 1.0, 0.1
    for g in (G1, G2):
        a += g * g
        p -= lr * g / math.sqrt(a + eps)
    check(optimizers.Adagrad(0.1), p)


def test_adadelta():
    lr, rho, eps = 1.0, 0.95, 1e-7
    p, eg, ed = 1.0, 0.0, 0.0
    for g in (G1, G2):
        eg = rho * eg + (1 - rho) * g * g
        delta = -math.sqrt(ed + eps) / math.sqrt(eg + eps) * g
        ed = rho * ed + (1 - rho) * delta * delta
        p += lr * delta
    check(optimizers.Adadelta(1.0), p)


def test_float32_stays_float32():
    p = {"w": np.ones(3, np.float32)}
    for opt in (optimizers.SGD(0.1, momentum=0.9), optimizers.Adam(), optimizers.RMSprop(),
                optimizers.Adagrad(), optimizers.Adadelta()):
        opt.apply(p, {"w": np.full(3, 0.5, np.float32)})
        assert p["w"].dtype == np.float32
        assert all(s.dtype == np.float32 for store in opt.slots.values() for s in store.values())


def test_updates_in_place():
    w = np.ones(4)
    optimizers.Adam().apply({"w": w}, {"w": np.ones(4)})
    assert np.all(w < 1.0)


@pytest.mark.parametrize("name,cls", sorted(optimizers.OPTIMIZERS.items()))
def test_get_by_name_and_config_round_trip(name, cls):
    opt = optimizers.get(name)
    assert isinstance(opt, cls)
    again = optimizers.get(optimizers.serialize(opt))
    assert again.get_config() == opt.get_config()


def test_keras2_lr_alias():
    assert optimizers.SGD(lr=0.5).learning_rate == 0.5


@pytest.mark.parametrize("lr", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_learning_rate(lr):
    with pytest.raises(InvalidArgumentError, match="learning_rate"):
        optimizers.Adam(learning_rate=lr)


def test_unknown_name_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'adam'"):
        optimizers.get("adma")


def test_state_round_trip_gives_identical_steps():
    a, b = optimizers.Adam(0.01), optimizers.Adam(0.01)
    pa = {"w": np.linspace(-1, 1, 5)}
    a.apply(pa, {"w": np.ones(5)})
    b.set_state({k: np.array(v) for k, v in a.get_state().items()})
    pb = {"w": pa["w"].copy()}
    a.apply(pa, {"w": np.full(5, 0.3)})
    b.apply(pb, {"w": np.full(5, 0.3)})
    assert b.iterations == 2
    np.testing.assert_array_equal(pa["w"], pb["w"])


def test_gradient_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="'w'"):
        optimizers.SGD().apply({"w": np.ones(3)}, {"w": np.ones(4)})


@pytest.mark.parametrize("make", [
    lambda: optimizers.SGD(0.1), lambda: optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    lambda: optimizers.SGD(0.1, momentum=0.9, weight_decay=0.01),
    lambda: optimizers.Adam(0.01), lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.AdamW(0.01, weight_decay=0.1)], ids=["sgd", "nesterov", "sgd-wd", "adam",
                                                            "amsgrad", "adamw"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_forms_update_to_the_same_bits(make, dtype):
    """SGD and Adam update through the sgd_update/adam_update kernels: the one-pass Numba
    form gives the NumPy reference's bits, weight decay and slots included."""
    from accelnet import kernels
    rng = np.random.default_rng(0)
    start = {"w": rng.standard_normal((5, 3)).astype(dtype),
             "b": rng.standard_normal(3).astype(dtype)}
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in start.items()}
             for _ in range(3)]
    results = []
    for family in ("reference", "numba"):
        opt, params = make(), {k: v.copy() for k, v in start.items()}
        with kernels.implementation(family):
            for g in grads:
                opt.apply(params, g)
        results.append((params, opt.get_state()))
    (p_ref, s_ref), (p_numba, s_numba) = results
    for k in start:
        assert p_numba[k].dtype == dtype
        np.testing.assert_array_equal(p_numba[k], p_ref[k])
    assert s_ref.keys() == s_numba.keys()
    for k in s_ref:
        np.testing.assert_array_equal(s_numba[k], s_ref[k])


@pytest.mark.parametrize("name,slots", [("adam", ("m", "v")), ("nadam", ("m", "v")),
                                        ("adamax", ("m", "u")),
                                        ("rmsprop", ("velocity", "momentum")),
                                        ("adadelta", ("accumulated_grad", "accumulated_delta")),
                                        ("sgd", ("momentum",))])
def test_decaying_slots_flush_subnormals_to_zero(name, slots):
    """With a zero gradient every decaying slot shrinks; an entry that would turn subnormal is
    stored as +0 (TensorFlow's CPU kernels flush them too; x86 runs subnormals ~100x slower)."""
    kwargs = {"rmsprop": {"momentum": 0.9}, "sgd": {"momentum": 0.9}}.get(name, {})
    opt = optimizers.OPTIMIZERS[name](**kwargs)
    tiny = np.finfo(np.float32).tiny
    p = {"w": np.ones(3, np.float32)}
    g = {"w": np.zeros(3, np.float32)}
    opt.apply(p, g)  # creates the slots
    for slot in slots:
        opt.slots[slot]["w"][...] = np.array([1.0001 * tiny, 0.5, 4 * tiny], np.float32)
    opt.apply(p, g)
    for slot in slots:
        got = opt.slots[slot]["w"]
        assert got[0] == 0 and not np.signbit(got[0]), (name, slot, got)
        assert got[1] > 0 and got[2] >= tiny, (name, slot, got)

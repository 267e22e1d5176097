"""Keras 3's optimizer options and learning-rate schedules against hand-computed values.

Each expected number is the Keras 3 formula written out on plain Python floats (see the
loops below), independently of the array code under test; Keras itself is not needed.
"""
import json
import math

import numpy as np
import pytest

import accelnet as an
from accelnet import optimizers
from accelnet.errors import InvalidArgumentError, UnknownNameError
from accelnet.optimizers import schedules

GRADS = (0.5, -0.25, 0.1)  # three steps


def run(opt, grads=GRADS, p0=1.0):
    """Three steps on w = [p0, -p0] with gradients [g, -g]; returns w (both entries mirror)."""
    p = {"w": np.array([p0, -p0], dtype=np.float64)}
    for g in grads:
        opt.apply(p, {"w": np.array([g, -g])})
    return p["w"]


def check(opt, expected, **kwargs):
    np.testing.assert_allclose(run(opt, **kwargs), [expected, -expected], rtol=1e-12)


# -- updates ----------------------------------------------------------------------------
def test_adam_amsgrad():
    lr, b1, b2, eps = 0.1, 0.9, 0.5, 1e-7  # a short beta_2 memory: v shrinks as |g| does
    p, m, v, v_hat = 1.0, 0.0, 0.0, 0.0
    for t, g in enumerate(GRADS, 1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        v_hat = max(v_hat, v)
        p -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (math.sqrt(v_hat) + eps)
    check(optimizers.Adam(0.1, beta_2=0.5, amsgrad=True), p)
    # and it differs from plain Adam here (v shrinks, v_hat keeps step 1's value)
    assert not np.allclose(run(optimizers.Adam(0.1, beta_2=0.5)), p)


def test_adamw_decays_weights_before_the_adam_step():
    lr, wd, b1, b2, eps = 0.1, 0.004, 0.9, 0.999, 1e-7
    p, m, v = 1.0, 0.0, 0.0
    for t, g in enumerate(GRADS, 1):
        p -= p * wd * lr
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * m / (math.sqrt(v) + eps)
    check(optimizers.AdamW(0.1), p)
    assert optimizers.AdamW().weight_decay == 0.004


def test_sgd_weight_decay():
    lr, wd, mom = 0.1, 0.5, 0.9
    p, vel = 1.0, 0.0
    for g in GRADS:
        p -= p * wd * lr
        vel = mom * vel - lr * g
        p += vel
    check(optimizers.SGD(0.1, momentum=0.9, weight_decay=0.5), p)


def test_exclude_from_weight_decay_by_name():
    opt = optimizers.SGD(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["bias"])
    p = {"dense/kernel": np.ones(2), "dense/bias": np.ones(2)}
    opt.apply(p, {k: np.zeros(2) for k in p})
    np.testing.assert_allclose(p["dense/kernel"], 1 - 0.1 * 0.5)
    np.testing.assert_allclose(p["dense/bias"], 1.0)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_rmsprop_momentum_centered(momentum, centered):
    lr, rho, eps = 0.01, 0.9, 1e-7
    p, v, avg, s = 1.0, 0.0, 0.0, 0.0
    for g in GRADS:
        v = rho * v + (1 - rho) * g * g
        if centered:
            avg = rho * avg + (1 - rho) * g
            step = lr * g / math.sqrt(v - avg * avg + eps)
        else:
            step = lr * g / math.sqrt(v + eps)
        if momentum:
            s = momentum * s + step
            step = s
        p -= step
    check(optimizers.RMSprop(0.01, momentum=momentum, centered=centered), p)


def test_nadam():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-7
    p, m, v, u_product = 1.0, 0.0, 0.0, 1.0
    for t, g in enumerate(GRADS, 1):
        u_t = b1 * (1 - 0.5 * 0.96 ** t)
        u_next = b1 * (1 - 0.5 * 0.96 ** (t + 1))
        u_product *= u_t
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)
        v_hat = v / (1 - b2 ** t)
        p -= lr * m_hat / (math.sqrt(v_hat) + eps)
    check(optimizers.Nadam(0.1), p)


def test_nadam_resumes_exactly_after_set_state():
    a, b = optimizers.Nadam(0.1), optimizers.Nadam(0.1)
    pa = {"w": np.array([1.0, 2.0])}
    for g in GRADS[:2]:
        a.apply(pa, {"w": np.full(2, g)})
    b.set_state({k: np.array(v) for k, v in a.get_state().items()})
    pb = {"w": pa["w"].copy()}
    a.apply(pa, {"w": np.full(2, GRADS[2])})
    b.apply(pb, {"w": np.full(2, GRADS[2])})
    np.testing.assert_array_equal(pa["w"], pb["w"])


def test_adamax():
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-7
    p, m, u = 1.0, 0.0, 0.0
    for t, g in enumerate(GRADS, 1):
        m = b1 * m + (1 - b1) * g
        u = max(b2 * u, abs(g))
        p -= lr * m / ((1 - b1 ** t) * (u + eps))
    check(optimizers.Adamax(0.1), p)


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_every_optimizer_takes_the_common_arguments(name):
    cls = optimizers.OPTIMIZERS[name]
    opt = cls(learning_rate=schedules.ExponentialDecay(0.01, 10, 0.9), clipnorm=1.0, weight_decay=0.01)
    w = run(opt)
    assert np.all(np.isfinite(w)) and opt.iterations == 3
    again = optimizers.deserialize(json.loads(json.dumps(optimizers.serialize(opt))))
    assert type(again) is cls and again.get_config() == opt.get_config()
    assert "learning_rate=ExponentialDecay(initial_learning_rate=0.01" in repr(opt)


# -- schedules ------------------------------------------------------------------------------
def test_exponential_decay():
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    for step in (0, 5, 10, 15, 37):
        assert s(step) == pytest.approx(0.1 * 0.5 ** (step / 10), rel=1e-12)
    stairs = schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True)
    for step in (0, 9, 10, 15, 37):
        assert stairs(step) == pytest.approx(0.1 * 0.5 ** (step // 10), rel=1e-12)


def test_inverse_time_decay():
    s = schedules.InverseTimeDecay(0.1, decay_steps=10, decay_rate=0.5)
    for step in (0, 5, 10, 37):
        assert s(step) == pytest.approx(0.1 / (1 + 0.5 * step / 10), rel=1e-12)
    stairs = schedules.InverseTimeDecay(0.1, 10, 0.5, staircase=True)
    for step in (0, 9, 10, 37):
        assert stairs(step) == pytest.approx(0.1 / (1 + 0.5 * (step // 10)), rel=1e-12)


def test_piecewise_constant_decay():
    s = schedules.PiecewiseConstantDecay(boundaries=[10, 20], values=[1.0, 0.5, 0.1])
    expected = {0: 1.0, 10: 1.0, 11: 0.5, 20: 0.5, 21: 0.1, 1000: 0.1}  # step <= boundary: left value
    assert {step: s(step) for step in expected} == expected


def test_polynomial_decay():
    s = schedules.PolynomialDecay(0.1, decay_steps=10, end_learning_rate=0.01, power=2.0)
    for step in (0, 5, 10, 25):
        p = min(step, 10) / 10
        assert s(step) == pytest.approx((0.1 - 0.01) * (1 - p) ** 2 + 0.01, rel=1e-12)
    cyc = schedules.PolynomialDecay(0.1, 10, 0.01, power=2.0, cycle=True)
    for step in (0, 5, 10, 15, 25):
        decay_steps = 10 * (1 if step == 0 else math.ceil(step / 10))
        p = step / decay_steps
        assert cyc(step) == pytest.approx((0.1 - 0.01) * (1 - p) ** 2 + 0.01, rel=1e-12)


def test_cosine_decay():
    s = schedules.CosineDecay(0.1, decay_steps=100, alpha=0.1)
    for step in (0, 25, 50, 100, 300):
        cosine = 0.5 * (1 + math.cos(math.pi * min(step, 100) / 100))
        assert s(step) == pytest.approx(0.1 * ((1 - 0.1) * cosine + 0.1), rel=1e-12)
    assert s(50) == pytest.approx(0.055) and s(300) == pytest.approx(0.01)


def test_cosine_decay_with_warmup():
    s = schedules.CosineDecay(0.0, decay_steps=100, warmup_target=0.1, warmup_steps=10)
    for step in (0, 5, 9):
        assert s(step) == pytest.approx((0.1 - 0.0) * step / 10 + 0.0, abs=1e-15)
    for step in (10, 60, 110, 500):
        done = min(step, 110) - 10
        assert s(step) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * done / 100)), abs=1e-15)
    assert s(60) == pytest.approx(0.05)


def test_cosine_decay_restarts():
    s = schedules.CosineDecayRestarts(0.1, first_decay_steps=10, t_mul=2.0, m_mul=0.5, alpha=0.1)
    # periods: steps [0, 10) at scale 1, [10, 30) at 0.5, [30, 70) at 0.25
    for step, start, length, scale in ((0, 0, 10, 1.0), (4, 0, 10, 1.0), (10, 10, 20, 0.5),
                                       (25, 10, 20, 0.5), (30, 30, 40, 0.25), (69, 30, 40, 0.25)):
        cosine = 0.5 * scale * (1 + math.cos(math.pi * (step - start) / length))
        assert s(step) == pytest.approx(0.1 * ((1 - 0.1) * cosine + 0.1), rel=1e-12), step
    even = schedules.CosineDecayRestarts(0.1, 10, t_mul=1.0)
    for step in (0, 3, 10, 13, 27):
        assert even(step) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * (step % 10) / 10)), rel=1e-12)


def test_schedules_take_arrays_of_steps():
    s = schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True)
    np.testing.assert_allclose(s(np.array([0, 10, 25])), [0.1, 0.05, 0.025])
    assert isinstance(s(3), float)


@pytest.mark.parametrize("schedule", [
    schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True),
    schedules.InverseTimeDecay(0.1, 10, 0.5),
    schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5, 0.1]),
    schedules.PolynomialDecay(0.1, 10, cycle=True),
    schedules.CosineDecay(0.0, 100, alpha=0.1, warmup_target=0.1, warmup_steps=10),
    schedules.CosineDecayRestarts(0.1, 10, t_mul=1.5, m_mul=0.9, alpha=0.01)],
    ids=lambda s: type(s).__name__)
def test_schedule_config_round_trip_through_json(schedule):
    config = json.loads(json.dumps(schedules.serialize(schedule)))
    again = schedules.deserialize(config)
    assert type(again) is type(schedule) and again.get_config() == schedule.get_config()
    assert type(schedule).from_config(schedule.get_config()).get_config() == schedule.get_config()
    assert [again(s) for s in (0, 7, 15, 120)] == [schedule(s) for s in (0, 7, 15, 120)]


def test_keras_style_schedule_config_loads():
    config = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
              "config": {"initial_learning_rate": 0.1, "decay_steps": 100, "decay_rate": 0.96,
                         "staircase": True, "name": "ExponentialDecay"}, "registered_name": None}
    assert schedules.deserialize(config)(250) == pytest.approx(0.1 * 0.96 ** 2)


# -- optimizers with a schedule -----------------------------------------------------------------
def test_optimizer_evaluates_schedule_at_iterations_before_the_step():
    s = schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    opt = optimizers.SGD(learning_rate=s)
    assert opt.learning_rate == 0.1
    p = 1.0
    for step, g in enumerate(GRADS):
        p -= s(step) * g  # step 0 uses 0.1, step 1 0.05, step 2 0.025
    check(opt, p)
    assert opt.iterations == 3 and opt.learning_rate == pytest.approx(0.1 * 0.5 ** 3)


def test_user_schedule_subclass():
    class HalfEveryStep(schedules.LearningRateSchedule):
        def __init__(self, start):
            self.start = start

        def __call__(self, step):
            return self.start * 0.5 ** step

        def get_config(self):
            return {"start": self.start}

    opt = optimizers.SGD(HalfEveryStep(0.2))
    check(opt, 1.0 - 0.2 * GRADS[0] - 0.1 * GRADS[1] - 0.05 * GRADS[2])
    again = optimizers.get(json.loads(json.dumps(optimizers.serialize(opt))))
    assert again.learning_rate == 0.2


def test_user_schedule_without_get_config_cannot_be_saved():
    class Constant(schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.1

    opt = optimizers.SGD(Constant())
    assert opt.learning_rate == 0.1
    with pytest.raises(NotImplementedError, match="Constant.*get_config"):
        optimizers.serialize(opt)
    assert repr(opt) == "SGD(name='sgd', learning_rate=Constant())"


def test_learning_rate_is_settable_like_keras():
    opt = optimizers.SGD(0.1)
    opt.learning_rate = 0.05  # what ReduceLROnPlateau does
    check(opt, 1.0 - 0.05 * sum(GRADS))
    assert opt.lr == 0.05 and opt.get_config()["learning_rate"] == 0.05
    opt.lr = 0.02
    assert opt.learning_rate == 0.02
    opt.learning_rate = schedules.InverseTimeDecay(0.1, 1, 1.0)  # a schedule may replace a float
    assert opt.learning_rate == pytest.approx(0.1 / (1 + 3))


def test_setting_a_float_over_a_schedule_is_a_clear_error():
    opt = optimizers.Adam(schedules.CosineDecay(0.1, 100))
    with pytest.raises(InvalidArgumentError, match="LearningRateSchedule.*CosineDecay.*float learning_rate"):
        opt.learning_rate = 0.01


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), "0.1", None])
def test_setting_a_bad_learning_rate(value):
    opt = optimizers.SGD(0.1)
    with pytest.raises(InvalidArgumentError, match="learning_rate"):
        opt.learning_rate = value
    assert opt.learning_rate == 0.1


# -- clipping ---------------------------------------------------------------------------------
def clip_step(opt, grads):
    """One SGD(lr=1) step from zeros: the parameters become minus the clipped gradients."""
    params = {k: np.zeros_like(g) for k, g in grads.items()}
    before = {k: g.copy() for k, g in grads.items()}
    opt.apply(params, grads)
    for k in grads:  # the caller's gradients are not modified
        np.testing.assert_array_equal(grads[k], before[k])
    return {k: -p for k, p in params.items()}


def test_clipnorm_clips_each_gradient_to_its_own_norm():
    grads = {"a": np.array([3.0, 4.0]), "b": np.array([0.3, 0.4]), "z": np.zeros(2)}
    out = clip_step(optimizers.SGD(1.0, clipnorm=1.0), grads)
    np.testing.assert_allclose(out["a"], [3 / 5, 4 / 5], rtol=1e-15)  # norm 5 -> 1
    np.testing.assert_allclose(out["b"], [0.3, 0.4], rtol=1e-15)       # norm 0.5 < 1: as is
    np.testing.assert_array_equal(out["z"], [0.0, 0.0])                # zero stays zero, no NaN


def test_global_clipnorm_scales_all_gradients_together():
    grads = {"a": np.array([3.0, 4.0]), "b": np.array([[12.0], [0.0]])}  # global norm 13
    out = clip_step(optimizers.SGD(1.0, global_clipnorm=1.0), grads)
    np.testing.assert_allclose(out["a"], [3 / 13, 4 / 13], rtol=1e-15)
    np.testing.assert_allclose(out["b"], [[12 / 13], [0.0]], rtol=1e-15)
    out = clip_step(optimizers.SGD(1.0, global_clipnorm=20.0), grads)  # within: as is
    np.testing.assert_allclose(out["a"], [3.0, 4.0], rtol=1e-15)


def test_clipvalue_clips_elementwise():
    out = clip_step(optimizers.SGD(1.0, clipvalue=0.5), {"a": np.array([-2.0, 0.3, 1.0])})
    np.testing.assert_array_equal(out["a"], [-0.5, 0.3, 0.5])


def test_clipping_happens_before_the_momentum():
    lr, mom, c = 0.1, 0.9, 0.2
    p, vel = 1.0, 0.0
    for g in GRADS:
        g = max(-c, min(c, g))  # clipnorm on a one-element gradient = clip to [-c, c]
        vel = mom * vel - lr * g
        p += vel
    params = {"w": np.array([1.0])}
    opt = optimizers.SGD(lr, momentum=mom, clipnorm=c)
    for g in GRADS:
        opt.apply(params, {"w": np.array([g])})
    np.testing.assert_allclose(params["w"], [p], rtol=1e-12)


def test_clipping_keeps_float32():
    for kwargs in ({"clipnorm": 1.0}, {"global_clipnorm": 1.0}, {"clipvalue": 0.1}):
        p = {"w": np.ones(3, np.float32)}
        optimizers.Adam(**kwargs).apply(p, {"w": np.full(3, 5.0, np.float32)})
        assert p["w"].dtype == np.float32


# -- save / load -------------------------------------------------------------------------------
def test_save_load_model_with_schedule_and_clipnorm(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    an.random.seed(0)
    model = an.Sequential([an.layers.Dense(8, activation="relu", input_shape=(6,)),
                           an.layers.Dense(2, activation="softmax")])
    schedule = schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5, staircase=True)
    model.compile(optimizer=optimizers.Adam(learning_rate=schedule, clipnorm=1.0, amsgrad=True),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = an.models.load_model(tmp_path / "m.npz")
    opt = loaded.optimizer
    assert isinstance(opt, optimizers.Adam) and opt.amsgrad and opt.clipnorm == 1.0
    assert opt.get_config() == model.optimizer.get_config()
    assert opt.iterations == 8 and opt.learning_rate == pytest.approx(0.05 * 0.5 ** (8 // 3))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_old_and_keras_optimizer_configs_still_load():
    old = {"class_name": "Adam", "config": {"learning_rate": 0.01, "decay": 0.0, "beta_1": 0.9,
                                            "beta_2": 0.999, "epsilon": 1e-07}}
    assert optimizers.get(old).learning_rate == 0.01
    keras3 = {"class_name": "SGD", "config": {
        "name": "SGD", "learning_rate": {"module": "keras.optimizers.schedules",
                                         "class_name": "PiecewiseConstantDecay",
                                         "config": {"boundaries": [5], "values": [0.1, 0.01],
                                                    "name": "PiecewiseConstant"},
                                         "registered_name": None},
        "weight_decay": None, "clipnorm": None, "global_clipnorm": 1.0, "clipvalue": None,
        "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
        "loss_scale_factor": None, "gradient_accumulation_steps": None,
        "momentum": 0.9, "nesterov": False}}
    opt = optimizers.get(keras3)
    assert opt.global_clipnorm == 1.0 and opt.momentum == 0.9 and opt.learning_rate == 0.1


# -- bad arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize("make,words", [
    (lambda: optimizers.Adam(clipnorm=1.0, global_clipnorm=1.0), "only one of `clipnorm`"),
    (lambda: optimizers.SGD(clipvalue=1.0, clipnorm=1.0), "only one of `clipnorm`"),
    (lambda: optimizers.SGD(clipnorm=0.0), "clipnorm must be a finite number > 0"),
    (lambda: optimizers.SGD(global_clipnorm=-1.0), "global_clipnorm"),
    (lambda: optimizers.SGD(clipvalue=float("nan")), "clipvalue"),
    (lambda: optimizers.SGD(weight_decay=-0.1), "weight_decay"),
    (lambda: optimizers.AdamW(weight_decay=None), "AdamW: weight_decay"),
    (lambda: optimizers.RMSprop(momentum=1.5), "RMSprop: momentum"),
    (lambda: optimizers.Adam(beta_1="a"), "beta_1 must be a number"),
    (lambda: optimizers.Adam(use_ema=True), "use_ema=True is not supported"),
    (lambda: optimizers.Adam(amsgrd=True), "not recognized.*amsgrd"),
    (lambda: optimizers.SGD(learning_rate=lambda: 0.1), "LearningRateSchedule"),
    (lambda: optimizers.SGD(learning_rate="0.1"), "learning_rate must be a number"),
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
    (lambda: schedules.InverseTimeDecay(0.1, 10, -0.5), "decay_rate"),
    (lambda: schedules.CosineDecay(0.1, 10, alpha=2.0), "alpha"),
    (lambda: schedules.CosineDecay(float("inf"), 10), "initial_learning_rate"),
    (lambda: schedules.PolynomialDecay(0.1, -5), "decay_steps"),
    (lambda: schedules.CosineDecayRestarts(0.1, 10, t_mul=0.0), "t_mul"),
    (lambda: schedules.PiecewiseConstantDecay([10, 20], [1.0, 0.5]), "1 less than the length"),
    (lambda: schedules.PiecewiseConstantDecay([20, 10], [1.0, 0.5, 0.1]), "strictly increasing"),
    (lambda: schedules.PiecewiseConstantDecay(10, [1.0, 0.5]), "must be lists"),
    (lambda: schedules.deserialize({"class_name": "ExponentialDecay", "config": {"rate": 1}}),
     "ExponentialDecay: invalid config"),
])
def test_bad_arguments_get_clear_errors(make, words):
    with pytest.raises(InvalidArgumentError, match=words):
        make()


def test_unknown_schedule_class_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'CosineDecay'"):
        schedules.deserialize({"class_name": "CosinDecay", "config": {}})


def test_base_schedule_must_be_overridden():
    with pytest.raises(NotImplementedError, match="__call__"):
        schedules.LearningRateSchedule()(0)


# -- strict (CuPy-like) backend: no host reads -----------------------------------------------------
def test_clipping_and_new_optimizers_never_read_back_from_the_device():
    from accelnet import backend as an_backend
    from strict_backend import StrictBackend, reset_syncs, syncs
    previous = an_backend.get_backend()
    backend = an.use(StrictBackend())
    try:
        for opt in (optimizers.Adam(schedules.CosineDecay(0.1, 10), global_clipnorm=1.0, amsgrad=True),
                    optimizers.RMSprop(momentum=0.5, centered=True, clipnorm=1.0),
                    optimizers.Nadam(clipvalue=0.1), optimizers.Adamax(weight_decay=0.1),
                    optimizers.AdamW()):
            params = {"a": backend.asarray(np.ones((2, 3), np.float32)),
                      "b": backend.asarray(np.ones(3, np.float32))}
            reset_syncs()
            for _ in range(3):
                opt.apply(params, {k: backend.asarray(np.full(p.shape, 2.0, np.float32))
                                   for k, p in params.items()})
            assert syncs() == 0, type(opt).__name__
            assert np.all(np.isfinite(backend.to_numpy(params["a"])))
    finally:
        an.use(previous)

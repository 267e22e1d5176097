"""kernels.adaptive_blas_threads: BLAS's own threads or one thread per training step, chosen
by timing probes (a busy machine makes OpenBLAS's threads stall), and BLAS given back."""
import numpy as np
import pytest

import accelnet as an
from accelnet import kernels, layers
from accelnet.kernels import _workers


class FakeLimiter:
    def __init__(self, log):
        self.log = log
        log.append("limit")

    def restore_original_limits(self):
        self.log.append("restore")


class FakeController:
    def __init__(self):
        self.log = []

    def limit(self, limits):
        assert limits == 1
        return FakeLimiter(self.log)


class FakeClock:
    """perf_counter for the tuner: each step takes `cost[single]` seconds."""

    def __init__(self, tuner, cost):
        self.tuner, self.cost, self.now, self.started = tuner, cost, 0.0, False

    def perf_counter(self):
        if self.started:  # the end of a step: advance by the mode it ran in
            self.now += self.cost[self.tuner._limiter is not None]
        self.started = not self.started
        return self.now


def run_steps(monkeypatch, tuner, steps, cost):
    clock = FakeClock(tuner, cost)
    monkeypatch.setattr(_workers, "time", clock)
    modes = []
    for _ in range(steps):
        with tuner.step():
            modes.append(tuner._limiter is not None)
    return modes


def test_a_busy_machine_switches_to_one_blas_thread_and_backs_off(monkeypatch):
    tuner = _workers.AdaptiveBlasThreads(FakeController())
    p, w = tuner.PROBE_STEPS, tuner.WARMUP
    modes = run_steps(monkeypatch, tuner, 400, {True: 0.003, False: 0.009})
    assert modes[:w] == [False] * w  # BLAS's threads until the first probe
    assert modes[w:w + 2 * p] == [True, False] * p  # the probe alternates
    assert tuner.single and all(modes[w + 2 * p:w + 2 * p + tuner.PROBE_EVERY])
    threads = [i for i, single in enumerate(modes) if not single and i >= w]  # probe steps
    starts = [i for k, i in enumerate(threads) if k == 0 or i - threads[k - 1] > 2 * p]
    gaps = np.diff(starts)
    assert gaps[1] > gaps[0] and gaps[2] > gaps[1]  # confirmed: probed half as often
    tuner.close()
    assert tuner._limiter is None and tuner._controller.log[-1] == "restore"


def test_a_quiet_machine_keeps_blas_threads(monkeypatch):
    tuner = _workers.AdaptiveBlasThreads(FakeController())
    modes = run_steps(monkeypatch, tuner, 300, {True: 0.0032, False: 0.0023})
    assert not tuner.single
    probe_steps = sum(modes)
    assert 0 < probe_steps <= 3 * tuner.PROBE_STEPS  # only probes ran at one thread
    assert tuner._limiter is None


def test_within_the_margin_or_tiny_steps_no_switch(monkeypatch):
    tuner = _workers.AdaptiveBlasThreads(FakeController())
    run_steps(monkeypatch, tuner, 100, {True: 0.0090, False: 0.0100})  # 10 % faster only
    assert not tuner.single
    tuner = _workers.AdaptiveBlasThreads(FakeController())
    run_steps(monkeypatch, tuner, 100, {True: 1e-5, False: 1e-4})  # under MIN_STEP_S
    assert not tuner.single


def test_the_choice_carries_over_and_can_be_switched_off(monkeypatch):
    x = np.zeros((4, 3), np.float32)
    tuner = kernels.adaptive_blas_threads(x)
    if tuner._controller is None:
        pytest.skip("threadpoolctl cannot limit this BLAS, or it runs on one thread")
    assert kernels.adaptive_blas_threads(x, previous=tuner) is tuner
    assert kernels.adaptive_blas_threads(x, enabled=False)._controller is None
    monkeypatch.setenv("ACCELNET_ADAPTIVE_BLAS", "0")
    assert kernels.adaptive_blas_threads(x, previous=tuner)._controller is None
    monkeypatch.delenv("ACCELNET_ADAPTIVE_BLAS")
    with kernels.implementation("reference"):
        assert kernels.adaptive_blas_threads(x)._controller is None


def test_fit_gives_blas_its_threads_back():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]
    an.random.seed(0)
    model = an.Sequential([layers.Dense(64, activation="relu", input_shape=(32,)),
                           layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).standard_normal((640, 32)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 640)
    model.fit(x, y, batch_size=32, epochs=2, verbose=0)
    assert [lib["num_threads"] for lib in threadpoolctl.threadpool_info()] == before
    assert isinstance(model._blas_tuner, _workers.AdaptiveBlasThreads)


def test_a_worker_step_model_chooses_mkl_threads_or_halves_for_its_products(monkeypatch):
    """For a model on the worker threads the tuner's "one thread" is `gemm`'s halves on the
    workers instead of MKL's threads: chosen per step by the same probes, with its own
    margin, and back to MKL's threads after; ACCELNET_ADAPTIVE_BLAS=0 keeps MKL's."""
    from accelnet.kernels import _mkl
    monkeypatch.setenv("ACCELNET_NUM_THREADS", "2")
    monkeypatch.setenv("ACCELNET_MKL", "1")
    a = np.ones((128, 2304), np.float32)
    b = np.ones((2304, 64), np.float32)
    tuner = kernels.adaptive_blas_threads(a, workers=True)
    if not kernels.threaded(a) or _mkl.library() is None:
        assert tuner._controller is None
        pytest.skip("needs MKL and worker threads")
    assert tuner._controller is _workers._GEMM_HALVES and tuner.margin == _workers.GEMM_MARGIN
    assert kernels.adaptive_blas_threads(a, workers=True, previous=tuner) is tuner
    split = []
    real = _workers.run_tasks
    monkeypatch.setattr(_workers, "run_tasks", lambda *args: split.append(1) or real(*args))
    ran = []
    for mode in (True, False):
        tuner._set(mode)
        with kernels.worker_step(a):
            np.testing.assert_array_equal(kernels.gemm(a, b), np.full((128, 64), 2304.0))
        ran.append(len(split))
    assert ran == [1, 1]  # halves while chosen, MKL's threads after
    probed = _workers.AdaptiveBlasThreads(_workers._GEMM_HALVES, _workers.GEMM_MARGIN)
    modes = run_steps(monkeypatch, probed, 60, {True: 0.040, False: 0.050})  # 20 % faster
    assert modes[-1] and getattr(_workers._local, "gemm_halves", False)
    probed.close()
    assert not getattr(_workers._local, "gemm_halves", False)
    quiet = _workers.AdaptiveBlasThreads(_workers._GEMM_HALVES, _workers.GEMM_MARGIN)
    run_steps(monkeypatch, quiet, 60, {True: 0.047, False: 0.050})  # 6 % only: MKL's kept
    assert not quiet.single
    quiet.close()
    monkeypatch.setenv("ACCELNET_ADAPTIVE_BLAS", "0")
    assert kernels.adaptive_blas_threads(a, workers=True)._controller is None

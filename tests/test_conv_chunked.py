"""Conv2D's chunked CPU path (cache-sized chunks on worker threads, fused bias + ReLU)
against the whole-batch path, and its determinism across thread counts.

Tolerance: float32 results agree with the whole-batch path to 1e-5 relative (other GEMM
blockings and summation orders); the same chunking gives bit-identical results on 1 or 3
threads (partial sums are added in a fixed order).
"""
import numpy as np
import pytest

from accelnet import kernels, layers, random
from accelnet.gradient_check import check_layer, to_float64
from accelnet.kernels import _workers


def conv(activation="relu", padding="valid", use_bias=True, shape=(9, 9, 3), filters=4):
    random.seed(1)
    layer = layers.Conv2D(filters, 3, padding=padding, activation=activation, use_bias=use_bias)
    layer.build(shape)
    layer.needs_input_grad = True
    if use_bias:
        layer.params["bias"][...] = np.linspace(-0.5, 0.5, filters)
    return layer


def step(layer, x, grad):
    out = layer.forward(x).copy()
    dx = layer.backward(grad.copy())
    return [out, dx] + [g.copy() for g in layer.grads.values()]


@pytest.fixture
def small_chunks(monkeypatch):
    """One or two samples per chunk, several tasks: the threaded machinery at tiny sizes."""
    monkeypatch.setenv("ACCELNET_CHUNK_KB", "4")
    monkeypatch.delenv("ACCELNET_KERNELS", raising=False)


@pytest.mark.parametrize("activation,padding,use_bias", [
    ("relu", "valid", True), ("relu", "same", True), ("tanh", "same", True),
    ("relu", "valid", False), ("linear", "valid", True)])
def test_chunked_matches_whole_batch(small_chunks, monkeypatch, activation, padding, use_bias):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 9, 9, 3)).astype(np.float32)
    layer = conv(activation, padding, use_bias)
    assert kernels.threaded(x) and len(layer._tasks(x)) > 2
    grad = rng.standard_normal((37,) + layer.compute_output_shape(x.shape[1:])).astype(np.float32)
    chunked = step(layer, x, grad)
    monkeypatch.setattr(_workers, "threaded", lambda a: False)
    monkeypatch.setattr(kernels, "threaded", lambda a: False)
    whole = step(layer, x, grad)
    for got, want in zip(chunked, whole):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_same_result_on_any_thread_count(small_chunks, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((29, 9, 9, 3)).astype(np.float32)
    layer = conv()
    grad = rng.standard_normal((29, 7, 7, 4)).astype(np.float32)
    results = []
    for threads in ("1", "3"):
        monkeypatch.setenv("ACCELNET_NUM_THREADS", threads)
        results.append(step(layer, x, grad))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_chunked_gradients_match_finite_differences(small_chunks):
    layer = to_float64(conv(shape=(5, 5, 2), filters=3, padding="same"))
    x = np.random.default_rng(2).standard_normal((6, 5, 5, 2))
    assert len(layer._tasks(x)) > 1
    check_layer(layer, x)


def test_worker_errors_reach_the_caller(small_chunks):
    def fail(chunks):
        raise ValueError(f"bad chunk {chunks[0]}")
    x = np.zeros((8, 2), np.float32)
    tasks = kernels.batch_tasks(x, 8, 4096, 1 << 20)
    with pytest.raises(ValueError, match=r"bad chunk \(0, 1\)"):
        kernels.run_tasks(x, fail, tasks)


def test_every_task_runs_and_results_come_in_task_order(monkeypatch):
    """run_tasks: the workers take tasks one after another; the results are in task order,
    every task runs even when some fail, and the first failing task's error is raised."""
    monkeypatch.setenv("ACCELNET_NUM_THREADS", "2")
    x = np.zeros((16, 2), np.float32)
    assert kernels.run_tasks(x, lambda t: t * t, list(range(16))) == [t * t for t in range(16)]
    ran = []

    def some_fail(t):
        ran.append(t)
        if t in (3, 7):
            raise ValueError(f"task {t}")
        return t
    with pytest.raises(ValueError, match="task 3"):
        kernels.run_tasks(x, some_fail, list(range(16)))
    assert sorted(ran) == list(range(16))


def test_tasks_cover_the_batch_in_order():
    x = np.zeros((100, 2), np.float32)
    for per_sample in (1, 3000, 10**9):
        tasks = kernels.batch_tasks(x, 100, per_sample, 10**6)
        flat = [c for task in tasks for c in task]
        assert flat[0][0] == 0 and flat[-1][1] == 100 and len(tasks) <= _workers.TASKS
        assert all(a[1] == b[0] for a, b in zip(flat, flat[1:]))
    with kernels.implementation("reference"):  # the whole-batch path: one task
        assert len(kernels.batch_tasks(x, 100, 3000, 10**6)) == 1


def _blas_threads():
    from threadpoolctl import threadpool_info
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


@pytest.mark.parametrize("convnet", [True, False])
def test_a_convnet_step_keeps_blas_at_one_thread(monkeypatch, convnet):
    """A model with worker-thread layers runs its whole step (Dense GEMMs included) with
    one BLAS thread, so OpenBLAS's spinning threads never take a worker's core; an MLP keeps
    BLAS's threads."""
    import accelnet as an
    monkeypatch.setenv("ACCELNET_NUM_THREADS", "2")
    seen = []

    class Probe(layers.Dense):
        def forward(self, x, training=True, logits=False):
            seen.append(_blas_threads())
            return super().forward(x, training, logits)

    random.seed(0)
    body = [layers.Conv2D(2, 3, input_shape=(6, 6, 1)), layers.Flatten()] if convnet else \
        [layers.Flatten(input_shape=(6, 6, 1))]
    model = an.Sequential(body + [Probe(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    outside = _blas_threads()
    x = np.random.default_rng(0).random((8, 6, 6, 1), dtype=np.float32)
    model.fit(x, np.arange(8) % 3, batch_size=8, epochs=1, verbose=0)
    model.predict(x)
    assert model.uses_worker_threads == convnet
    assert seen and all(n == (1 if convnet else outside) for n in seen), (seen, outside)
    assert _blas_threads() == outside


def _halves(a, b, axis):
    """The product as `gemm` splits it: two fixed halves along `axis` (one BLAS thread)."""
    if axis == "m":
        h = a.shape[0] // 2
        return np.concatenate([a[:h] @ b, a[h:] @ b])
    if axis == "n":
        h = b.shape[1] // 2
        return np.concatenate([a @ b[:, :h], a @ b[:, h:]], axis=1)
    h = a.shape[1] // 2
    out = a[:, :h] @ b[:h]
    out += a[:, h:] @ b[h:]
    return out


@pytest.mark.parametrize("threads", ["1", "2", "3"])
@pytest.mark.parametrize("shape, axis", [((400, 96, 300), "m"), ((96, 300, 700), "n"),
                                         ((64, 4000, 64), "k")])
def test_gemm_in_a_worker_step_is_matmul_whatever_the_thread_count(monkeypatch, threads,
                                                                    shape, axis):
    """Inside a worker step, where MKL is not used, a large product runs as two fixed halves
    on the workers, split along the axis that reads least per thread (rows, columns or the
    inner dimension): the same bits for every thread count (and equal to one matmul to float
    rounding), for C- and F-ordered operands."""
    monkeypatch.setenv("ACCELNET_NUM_THREADS", threads)
    monkeypatch.setenv("ACCELNET_MKL", "0")
    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    assert 2.0 * m * n * k >= _workers.MIN_SPLIT_FLOPS
    assert _workers.split_axis(m, k, n) == axis
    a_f, b_f = np.asfortranarray(a), np.asfortranarray(b)  # e.g. x.T in a weight gradient
    calls = []
    real = _workers.run_tasks
    monkeypatch.setattr(_workers, "run_tasks", lambda *args: calls.append(1) or real(*args))
    with _workers.worker_step(a):
        got = kernels.gemm(a, b)
        got_f = kernels.gemm(a_f, b_f)
        out = np.full((m, n), np.nan, np.float32)
        assert kernels.gemm(a, b, out=out) is out
        halves = _halves(a, b, axis)  # one BLAS thread here too
    assert calls == [1, 1, 1]
    np.testing.assert_array_equal(got, halves)
    np.testing.assert_array_equal(out, halves)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=1e-4, atol=2e-3)
    np.testing.assert_allclose(got_f, a.astype(np.float64) @ b, rtol=1e-4, atol=2e-3)
    assert kernels.gemm(a, b) is not None and calls == [1, 1, 1]  # outside a step: one matmul

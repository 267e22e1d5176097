"""kernels.gemm's products by Intel MKL (where the `mkl` wheel is installed) or NumPy, with
alpha/beta; and the plain-SGD update folded into Dense's weight-gradient GEMM."""
import numpy as np
import pytest

import accelnet as an
from accelnet import kernels, layers
from accelnet.kernels import _mkl, _workers

MKL = pytest.param("mkl", marks=pytest.mark.skipif(
    _mkl.library() is None, reason="the mkl wheel (libmkl_rt) or libgomp is not installed"))


@pytest.fixture(params=[MKL, "numpy"])
def blas(request, monkeypatch):
    """Which library runs `matmul`: MKL, or NumPy (ACCELNET_MKL=0)."""
    monkeypatch.setenv("ACCELNET_MKL", "1" if request.param == "mkl" else "0")
    return request.param


def _layouts(rng, shape, dtype):
    """The same matrix as a C-ordered array, a transposed F-ordered one, and a strided view."""
    dense = rng.standard_normal(shape).astype(dtype)
    wide = np.zeros((shape[0], shape[1] + 3), dtype)
    wide[:, 1:shape[1] + 1] = dense
    return {"C": dense, "F": np.asfortranarray(dense), "view": wide[:, 1:shape[1] + 1]}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout_a", ["C", "F", "view"])
@pytest.mark.parametrize("layout_b", ["C", "F"])
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.05, 1.0), (2.0, 0.5)])
def test_matmul_is_alpha_a_b_plus_beta_out(blas, dtype, layout_a, layout_b, alpha, beta):
    rng = np.random.default_rng(0)
    a = _layouts(rng, (37, 53), dtype)[layout_a]
    b = _layouts(rng, (53, 29), dtype)[layout_b]
    out = rng.standard_normal((37, 29)).astype(dtype)
    want = alpha * (a.astype(np.float64) @ b) + beta * out
    got = _workers.matmul(a, b, out, alpha, beta)
    assert got is out
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * 10)
    if beta == 0:
        fresh = kernels.gemm(a, b, alpha=alpha)
        np.testing.assert_allclose(fresh, want, rtol=tol, atol=tol * 10)


@pytest.mark.skipif(_mkl.library() is None, reason="the mkl wheel is not installed")
def test_mkl_declines_what_blas_cannot_take_and_gemm_falls_back(monkeypatch):
    """None (NumPy runs it) for other dtypes, mixed dtypes, no contiguous axis, an output
    that overlaps an operand or is read-only, beta without an output, ACCELNET_MKL=0,
    reference kernels."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((8, 6)).astype(np.float32)
    b = rng.standard_normal((6, 5)).astype(np.float32)
    square = rng.standard_normal((6, 6)).astype(np.float32)
    assert _mkl.gemm(a, b) is not None
    cases = {"int": (a.astype(np.int32), b.astype(np.int32), None),
             "mixed": (a, b.astype(np.float64), None),
             "strided both ways": (np.zeros((16, 12), np.float32)[::2, ::2], b, None),
             "beta without out": (a, b, None),
             "out overlaps a": (square, square, square),
             "read-only out": (a, b, np.zeros((8, 5), np.float32))}
    cases["read-only out"][2].flags.writeable = False
    for name, (x, y, out) in cases.items():
        beta = 1.0 if name == "beta without out" else 0.0
        assert _mkl.gemm(x, y, out, 1.0, beta) is None, name
        if name == "read-only out":  # NumPy refuses it, with its own message
            with pytest.raises(ValueError, match="read-only"):
                kernels.gemm(x, y, out)
        elif name != "beta without out":
            want = x.astype(np.float64) @ y
            np.testing.assert_allclose(kernels.gemm(x, y, out), want, rtol=1e-5, atol=1e-5)
    monkeypatch.setenv("ACCELNET_MKL", "0")
    assert _mkl.gemm(a, b) is None
    monkeypatch.setenv("ACCELNET_MKL", "1")
    with kernels.implementation("reference"):
        assert _mkl.gemm(a, b) is None


@pytest.mark.skipif(_mkl.library() is None, reason="the mkl wheel is not installed")
def test_mkl_threads_are_set_with_blas_in_a_worker_step():
    """threadpoolctl controls MKL with OpenBLAS: one thread in a worker step, as before after."""
    from threadpoolctl import threadpool_info
    from accelnet.backend import _blas_controller

    def mkl_threads():
        return [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "mkl"]

    assert "mkl" in [lib.internal_api for lib in _blas_controller().lib_controllers]
    before = mkl_threads()
    x = np.zeros((4, 4), np.float32)
    with kernels.worker_step(x):
        inside = mkl_threads()
    if kernels.threaded(x):
        assert inside == [1]
    assert mkl_threads() == before


@pytest.mark.skipif(_mkl.library() is None, reason="the mkl wheel is not installed")
@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (-0.05, 1.0)])
def test_a_large_product_in_a_worker_step_runs_on_mkls_threads(monkeypatch, alpha, beta):
    """In a worker step (BLAS held at one thread) a product of at least MIN_SPLIT_FLOPS goes to
    MKL on as many threads as there are workers, for this call only: not split into halves,
    alpha/beta folded in, the same bits on every call, MKL's limit back at one after."""
    from threadpoolctl import threadpool_info
    monkeypatch.setenv("ACCELNET_MKL", "1")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((128, 2304)).astype(np.float32)
    b = rng.standard_normal((2304, 64)).astype(np.float32)
    c = rng.standard_normal((128, 64)).astype(np.float32)
    assert 2.0 * a.shape[0] * a.shape[1] * b.shape[1] >= _workers.MIN_SPLIT_FLOPS
    threads, split = [], []
    real = _mkl.gemm
    monkeypatch.setattr(_mkl, "gemm", lambda *args, **kw: threads.append(kw.get("threads"))
                        or real(*args, **kw))
    monkeypatch.setattr(_workers, "run_tasks", lambda *args: split.append(1))
    outs = []
    with kernels.worker_step(a):
        if not kernels.threaded(a):
            pytest.skip("no worker threads here")
        for _ in range(2):
            out = c.copy()
            assert kernels.gemm(a, b, out=out, alpha=alpha, beta=beta) is out
            outs.append(out)
        after = [i["num_threads"] for i in threadpool_info() if i["internal_api"] == "mkl"]
    assert threads == [_workers.num_threads()] * 2 and split == []
    assert after == [1]
    np.testing.assert_array_equal(outs[0], outs[1])
    want = alpha * (a.astype(np.float64) @ b) + beta * c
    np.testing.assert_allclose(outs[0], want, rtol=1e-4, atol=2e-3)


# -- plain SGD folded into Dense's backward ----------------------------------------------

def _mlp(optimizer, regularize=False, freeze=False):
    model = an.Sequential([
        layers.Dense(24, activation="relu", input_shape=(12,),
                     kernel_regularizer="l2" if regularize else None),
        layers.Dense(16, activation="relu"), layers.Dense(4, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.set_weights([rng.standard_normal(w.shape).astype(np.float32) * 0.3
                       for w in model.get_weights()])
    model.layers[1].trainable = not freeze
    return model


def _fit(model, fold):
    """Two epochs; `fold`: True forces the fold wherever the model allows it (NumPy's matmul
    then adds the update in separate passes), False turns it off."""
    folded = []
    real = model._fold_rate
    if fold:
        model._fold_rate = lambda x: folded.append(1) or (
            real(x) if kernels.gemm_accumulates(x) else _forced(model))
    else:
        model._fold_rate = lambda x: None
    rng = np.random.default_rng(1)
    x = rng.random((96, 12), dtype=np.float32)
    y = rng.integers(0, 4, 96)
    model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    return model.get_weights(), model.optimizer.iterations, folded


def _forced(model):
    """_fold_rate's answer without its `gemm_accumulates` condition."""
    if not model._fold_layers:
        return None
    return model.optimizer.plain_step_rate()


@pytest.mark.parametrize("blas_lib", [MKL, "numpy"])
@pytest.mark.parametrize("make", [
    lambda: an.optimizers.SGD(0.1),
    lambda: an.optimizers.SGD(an.optimizers.schedules.ExponentialDecay(0.1, 3, 0.5)),
    lambda: an.optimizers.SGD(0.1, decay=0.01)], ids=["constant", "schedule", "keras2-decay"])
def test_folded_sgd_step_is_the_optimizers_step(monkeypatch, blas_lib, make):
    """Dense's folded update (kernel -= lr x^T dz inside the GEMM, bias by sgd_update) gives the
    weights and step count of the optimizer's own apply, to rounding, at every rate."""
    monkeypatch.setenv("ACCELNET_MKL", "1" if blas_lib == "mkl" else "0")
    want, steps, _ = _fit(_mlp(make()), fold=False)
    got, folded_steps, folded = _fit(_mlp(make()), fold=True)
    assert folded_steps == steps == 12 and len(folded) == 12
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [
    lambda: an.optimizers.SGD(0.1, momentum=0.9), lambda: an.optimizers.SGD(0.1, weight_decay=0.01),
    lambda: an.optimizers.SGD(0.1, clipnorm=1.0), lambda: an.optimizers.Adam(1e-3)],
    ids=["momentum", "weight-decay", "clipnorm", "adam"])
def test_no_fold_unless_the_step_is_p_minus_lr_g(make):
    assert make().plain_step_rate() is None


def test_an_sgd_subclass_with_its_own_update_is_not_folded():
    class Halved(an.optimizers.SGD):
        def update_one(self, key, p, g, lr, decay=None):
            super().update_one(key, p, g, lr / 2, decay)
    assert Halved(0.1).plain_step_rate() is None and an.optimizers.SGD(0.1).plain_step_rate() == 0.1


@pytest.mark.parametrize("variant", ["regularized", "frozen"])
def test_folding_leaves_out_regularized_and_frozen_layers(variant):
    """A regularized layer's update goes through apply (its penalty gradient is added there);
    a frozen layer is not updated at all; the result matches the unfolded run."""
    make = lambda: _mlp(an.optimizers.SGD(0.1), regularize=variant == "regularized",
                        freeze=variant == "frozen")
    model = make()
    model._prepare_step()
    index = 0 if variant == "regularized" else 1
    assert model.layers[index] not in model._fold_layers and len(model._fold_layers) == 2
    want, _, _ = _fit(make(), fold=False)
    got, _, folded = _fit(make(), fold=True)
    assert folded
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_a_shared_dense_layer_is_not_folded():
    """A layer used twice in a graph reads its kernel in both backwards: never folded."""
    shared = layers.Dense(8, activation="relu")
    inputs = an.Input((8,))
    outputs = layers.Dense(3, activation="softmax")(shared(shared(inputs)))
    model = an.Model(inputs, outputs)
    model.compile(optimizer=an.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model._prepare_step()
    assert shared not in model._fold_layers and len(model._fold_layers) == 1


@pytest.mark.skipif(_mkl.library() is None, reason="the mkl wheel is not installed")
def test_a_forked_child_computes_its_products_without_mkl():
    """GNU OpenMP's threads do not survive fork(): a child's first threaded MKL product hung.
    The child's products go to NumPy (a subprocess, so a regression fails by timeout)."""
    import subprocess
    import sys
    script = (
        "import os, sys, numpy as np\n"
        "from accelnet import kernels\n"
        "from accelnet.kernels import _mkl\n"
        "a = np.random.default_rng(0).random((512, 512), dtype=np.float32)\n"
        "kernels.gemm(a, a)\n"  # MKL's threads started in the parent
        "assert _mkl.enabled()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    r = kernels.gemm(a, a)\n"
        "    ok = not _mkl.enabled() and np.allclose(r, a @ a, rtol=1e-5)\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n")
    proc = subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr

"""kernels.dense_step (a whole training step of a Dense stack: the plain-SGD update, or the
gradients) on every form, its reference against float64 finite differences, and
accelnet.dense_stack: fit through the one-call step equals fit through the layers."""
import importlib

import numpy as np
import pytest

import accelnet as an
from accelnet import kernels
from accelnet.errors import InvalidArgumentError, ShapeError
from accelnet.kernels import _mkl
from kernel_forms import ALL_FORMS

step_module = importlib.import_module("accelnet.kernels.dense_step")
needs_mkl = pytest.mark.skipif(_mkl.library() is None,
                               reason="the compiled step calls MKL: the mkl wheel is not installed")

# (widths, ReLU flags of the hidden layers, which layers have a bias)
STACKS = [((6, 5, 4, 3), (True, True), (True, True, True)),
          ((6, 5, 3), (False,), (False, True)),
          ((6, 3), (), (True,)),
          ((6, 5, 4, 3), (True, False), (True, False, False))]


def _stack(widths, with_bias, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    ks = [(rng.standard_normal((a, b)) * 0.5).astype(dtype) for a, b in zip(widths, widths[1:])]
    bs = [(rng.standard_normal(b) * 0.1).astype(dtype) if has else None
          for b, has in zip(widths[1:], with_bias)]
    return ks, bs


def _labels(rng, n, classes, soft):
    if not soft:
        return rng.integers(0, classes, n)
    p = rng.random((n, classes)).astype(np.float32)
    return p / p.sum(axis=1, keepdims=True)


@pytest.fixture(params=ALL_FORMS)
def form(request):
    return request.param


@pytest.mark.parametrize("widths,relu,with_bias", STACKS)
@pytest.mark.parametrize("rows,soft", [(7, False), (1, False), (5, True)])
@pytest.mark.parametrize("rate", [0.1, None], ids=["sgd", "gradients"])
@pytest.mark.parametrize("drop", [False, True], ids=["", "dropout"])
def test_step_matches_the_reference_on_every_form(form, widths, relu, with_bias, rows, soft,
                                                  rate, drop):
    if form.expected == "numba-cpu" and _mkl.library() is None:
        pytest.skip("the compiled step calls MKL: the mkl wheel is not installed")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((rows, widths[0])).astype(np.float32)
    y = _labels(rng, rows, widths[-1], soft)
    ks, bs = _stack(widths, with_bias)
    before = ks[0].copy()
    want_k, want_b = [k.copy() for k in ks], [None if b is None else b.copy() for b in bs]
    want_kg = [np.full_like(k, np.nan) for k in ks]
    want_bg = [None if b is None else np.full_like(b, np.nan) for b in bs]
    dropout = [(0.4, 1000 + l) if drop and l % 2 == 0 else None for l in range(len(relu))]
    want_loss, want_logits = step_module.reference(x, y, want_k, want_b, relu, rate, want_kg,
                                                   want_bg, dropout=dropout)
    dk = [form.device(k) for k in ks]
    db = [None if b is None else form.device(b) for b in bs]
    kg = [form.device(g) for g in want_kg]  # NaN until written
    bg = [None if g is None else form.device(np.full_like(g, np.nan)) for g in want_bg]
    with form.running():
        assert kernels.current_implementation("dense_step", form.device(x)) == form.expected
        loss, logits = kernels.dense_step(form.device(x), form.device(y), dk, db, relu, rate,
                                          None if rate else kg, bg, dropout=dropout)
    np.testing.assert_allclose(float(form.host(loss)), float(want_loss), rtol=1e-5)
    np.testing.assert_allclose(form.host(logits), want_logits, rtol=1e-5, atol=1e-6)
    outs = dk + [b for b in db if b is not None] + [g for g in bg if g is not None]
    wants = want_k + [b for b in want_b if b is not None] + [g for g in want_bg if g is not None]
    if rate is None:
        outs, wants = outs + kg, wants + want_kg
    for got, want in zip(outs, wants):
        assert np.isfinite(want).all()
        np.testing.assert_allclose(form.host(got), want, rtol=1e-5, atol=1e-6)
    moved = not np.array_equal(form.host(dk[0]), before)
    assert moved == (rate is not None)  # the gradients' ending leaves the weights alone


def _loss64(x, y, ks, bs, relu, masks=None):
    a = x
    for l, (k, b) in enumerate(zip(ks, bs)):
        a = a @ k + (0 if b is None else b)
        if l < len(relu) and relu[l]:
            a = np.maximum(a, 0)
        if l < len(relu) and masks is not None:
            a = a * masks[l]
    a = a - a.max(axis=1, keepdims=True)
    logp = a - np.log(np.exp(a).sum(axis=1, keepdims=True))
    return -logp[np.arange(len(x)), y].mean()


@pytest.mark.parametrize("widths,relu,with_bias", STACKS)
@pytest.mark.parametrize("drop", [False, True], ids=["", "dropout"])
def test_reference_gradients_and_update_match_finite_differences(widths, relu, with_bias, drop):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, widths[0]))
    y = rng.integers(0, widths[-1], 4)
    ks, bs = _stack(widths, with_bias, np.float64, seed=3)
    rate = 0.5
    dropout = [(0.5, 77 + l) for l in range(len(relu))] if drop else None
    from accelnet.kernels.dropout_mask import reference as drop_mask
    masks = None if not drop else [drop_mask(x, (4, w), key, r) for (r, key), w
                                   in zip(dropout, widths[1:-1])]
    loss64 = lambda: _loss64(x, y, ks, bs, relu, masks)
    new_k, new_b = [k.copy() for k in ks], [None if b is None else b.copy() for b in bs]
    loss, _ = step_module.reference(x, y, new_k, new_b, relu, rate, dropout=dropout)
    assert float(loss) == pytest.approx(loss64(), rel=1e-12)
    kg = [np.empty_like(k) for k in ks]
    bg = [None if b is None else np.empty_like(b) for b in bs]
    step_module.reference(x, y, ks, bs, relu, None, kg, bg, dropout=dropout)
    eps = 1e-6
    for params, updated, grads in [(ks, new_k, kg), (bs, new_b, bg)]:
        for p, after, got in zip(params, updated, grads):
            if p is None:
                continue
            for index in list(np.ndindex(p.shape))[::3]:
                keep = p[index]
                p[index] = keep + eps
                up = loss64()
                p[index] = keep - eps
                down = loss64()
                p[index] = keep
                grad = (up - down) / (2 * eps)
                assert (keep - after[index]) / rate == pytest.approx(grad, rel=1e-5, abs=1e-8)
                assert got[index] == pytest.approx(grad, rel=1e-5, abs=1e-8)


def test_bad_shapes_and_labels_are_named():
    ks, bs = _stack((6, 5, 3), (True, True))
    x = np.zeros((2, 6), np.float32)
    with pytest.raises(ShapeError, match="layer 1 has kernel"):
        kernels.dense_step(x, np.zeros(2, int), [ks[0], ks[0]], bs, [True], 0.1)
    with pytest.raises(ShapeError, match="one flag per hidden layer"):
        kernels.dense_step(x, np.zeros(2, int), ks, bs, [], 0.1)
    with pytest.raises(ShapeError, match="ReLU but no bias"):
        kernels.dense_step(x, np.zeros(2, int), ks, [None, bs[1]], [True], 0.1)
    with pytest.raises(InvalidArgumentError, match="label 7"):
        kernels.dense_step(x, np.array([0, 7]), ks, bs, [True], 0.1)
    with pytest.raises(ShapeError, match="need kernel_grads"):
        kernels.dense_step(x, np.zeros(2, int), ks, bs, [True])
    with pytest.raises(ShapeError, match="kernel_grads must match"):
        kernels.dense_step(x, np.zeros(2, int), ks, bs, [True], None, [ks[1], ks[1]], bs)


# -- the model: fit through the one-call step against fit through the layers -------------

def _model(kind, optimizer=None):
    L = an.layers
    an.random.seed(0)
    if kind == "flatten-sparse":
        layers = [L.Flatten(input_shape=(4, 5)), L.Dense(16, activation="relu"),
                  L.Dropout(0.25), L.Dense(8, activation="relu"), L.Dense(3, activation="softmax")]
        loss = "sparse_categorical_crossentropy"
    elif kind == "onehot":
        layers = [L.Dense(16, activation="relu", input_shape=(20,)), L.Dense(3, activation="softmax")]
        loss = an.losses.CategoricalCrossentropy(label_smoothing=0.1)
    else:  # logits out, a linear hidden layer without bias
        layers = [L.Input(shape=(20,)), L.Dense(16, use_bias=False),
                  L.Dense(3)]
        loss = an.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = an.Sequential(layers)
    model.compile(optimizer=optimizer or an.optimizers.SGD(0.1), loss=loss, metrics=["accuracy"])
    return model


def _data(kind, n=100):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 4, 5) if kind == "flatten-sparse" else (n, 20)).astype(np.float32)
    y = rng.integers(0, 3, n)
    return x, (np.eye(3, dtype=np.float32)[y] if kind == "onehot" else y)


def _fit(kind, monkeypatch, step_on, optimizer=None):
    monkeypatch.setenv("ACCELNET_DENSE_STEP", "1" if step_on else "0")
    model = _model(kind, optimizer)
    x, y = _data(kind)
    history = model.fit(x, y, batch_size=32, epochs=3, verbose=0)
    return model, history.history


@needs_mkl
@pytest.mark.parametrize("kind", ["flatten-sparse", "onehot", "logits"])
def test_fit_through_the_step_equals_fit_through_the_layers(kind, monkeypatch):
    stepped, logs = _fit(kind, monkeypatch, True)
    assert stepped._dense_step is not None
    calls = []
    real = kernels.dense_step
    monkeypatch.setattr(kernels, "dense_step", lambda *a: calls.append(1) or real(*a))
    stepped.train_on_batch(*(a[:32] for a in _data(kind)))
    assert calls == [1]  # train_on_batch takes it too
    layered, want = _fit(kind, monkeypatch, False)
    assert logs.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(logs[key], want[key], rtol=1e-6)
    layered.train_on_batch(*(a[:32] for a in _data(kind)))
    for got, expected in zip(stepped.get_weights(), layered.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


OPTIMIZERS = {"adam": lambda: an.optimizers.Adam(1e-2),
              "momentum": lambda: an.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
              "rmsprop-clipnorm": lambda: an.optimizers.RMSprop(1e-2, clipnorm=0.5),
              "sgd-weight-decay": lambda: an.optimizers.SGD(0.1, weight_decay=0.01)}


@needs_mkl
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_any_optimizer_applies_the_steps_gradients_as_the_layers(name, monkeypatch):
    calls = []
    real = kernels.dense_step
    monkeypatch.setattr(kernels, "dense_step", lambda *a: calls.append(a[5]) or real(*a))
    stepped, logs = _fit("flatten-sparse", monkeypatch, True, OPTIMIZERS[name]())
    assert calls and all(rate is None for rate in calls)  # the gradients' ending
    layered, want = _fit("flatten-sparse", monkeypatch, False, OPTIMIZERS[name]())
    assert len(calls) == 12  # 4 batches x 3 epochs, all through the step
    for key in want:
        np.testing.assert_allclose(logs[key], want[key], rtol=1e-5)
    for got, expected in zip(stepped.get_weights(), layered.get_weights()):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert stepped.optimizer.iterations == layered.optimizer.iterations == 12


@pytest.mark.parametrize("change", ["regularizer", "input-dropout", "last-dropout", "fixed-mask",
                                    "mse", "frozen", "softmax-layer"])
def test_other_models_keep_the_layer_step(change, monkeypatch):
    calls = []
    monkeypatch.setattr(kernels, "dense_step", lambda *a: calls.append(1))
    L = an.layers
    hidden = L.Dense(8, activation="relu", kernel_regularizer="l2" if change == "regularizer"
                     else None)
    drop = L.Dropout(0.5)
    layers = [L.Input(shape=(5,))] + ([drop] if change == "input-dropout" else []) + [hidden]
    layers += [drop] if change == "fixed-mask" else []
    layers += [L.Dense(3, activation="softmax")]
    layers += [drop] if change == "last-dropout" else []
    if change == "softmax-layer":
        layers[-1:] = [L.Dense(3), L.Activation("softmax")]
    model = an.Sequential(layers)
    if change == "frozen":
        hidden.trainable = False
    if change == "fixed-mask":
        drop.set_mask(np.full((4, 8), 2.0, np.float32))
    model.compile(optimizer=an.optimizers.SGD(0.1),
                  loss="mse" if change == "mse" else "sparse_categorical_crossentropy")
    x = np.zeros((4, 5), np.float32)
    y = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]] if change == "mse" else np.array([0, 1, 2, 0])
    model.fit(x, y, epochs=1, verbose=0)
    assert calls == []
    assert all(np.isfinite(w).all() for w in model.get_weights())


@needs_mkl
def test_batches_the_step_cannot_take_run_the_layers(monkeypatch):
    model = _model("flatten-sparse")
    x, y = _data("flatten-sparse")
    calls = []
    real = kernels.dense_step
    monkeypatch.setattr(kernels, "dense_step", lambda *a: calls.append(1) or real(*a))
    model.fit(x, y, batch_size=50, epochs=1, verbose=0, sample_weight=np.ones(len(x)))
    model.fit(x.astype(np.float64), y, batch_size=50, epochs=1, verbose=0)  # cast to float32
    assert len(calls) == 2
    model.train_on_batch(x[:10].astype(np.float64), y[:10])  # float64 batch: the layers
    monkeypatch.setenv("ACCELNET_DENSE_STEP", "0")
    model.fit(x, y, batch_size=50, epochs=1, verbose=0)
    assert len(calls) == 2
    with pytest.raises(InvalidArgumentError, match="label 5"):
        monkeypatch.setenv("ACCELNET_DENSE_STEP", "1")
        model.train_on_batch(x[:2], np.array([0, 5]))


@needs_mkl
def test_a_step_cached_by_a_parallel_process_runs_in_a_serial_one(tmp_path):
    """The compiled step has its kernels compiled in (always their serial builds): one cache
    serves a process with ACCELNET_NUMBA_PARALLEL=1 and a serial one. (With parallel callees,
    a step cached by a parallel process crashed a serial one that loaded it from the
    package's __pycache__; this isolated cache did not reproduce that.)"""
    import os
    import subprocess
    import sys
    script = ("import numpy as np, importlib; "
              "ds = importlib.import_module('accelnet.kernels.dense_step'); "
              "r = np.random.default_rng(0); "
              "ks = [r.random((6, 5), dtype=np.float32), r.random((5, 3), dtype=np.float32)]; "
              "bs = [np.zeros(5, np.float32), np.zeros(3, np.float32)]; "
              "loss, _ = ds.numba_cpu(r.random((4, 6), dtype=np.float32), np.arange(4) % 3, "
              "ks, bs, [True], 0.1); print(float(loss))")
    losses = []
    for parallel in ("1", "0"):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), ACCELNET_NUMBA_PARALLEL=parallel)
        proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        losses.append(float(proc.stdout.split()[-1]))
    assert losses[0] == losses[1]
    assert any(tmp_path.rglob("*dense_step*_step_cpu*.nbi"))  # the second one loaded it


@needs_mkl
def test_buffers_are_kept_for_a_few_batch_sizes_only():
    """train_on_batch with ever new batch sizes must not keep a workspace for each."""
    from accelnet import dense_stack
    model = _model("flatten-sparse")
    x, y = _data("flatten-sparse")
    for n in range(1, 13):
        model.train_on_batch(x[:n], y[:n])
    kept = model._dense_step._workspaces
    assert len(kept) == dense_stack.MAX_WORKSPACES and set(kept) == {9, 10, 11, 12}


def test_weights_gradients_and_step_buffers_are_64_byte_aligned():
    """On the CPU a layer's weights and gradients and the one-call step's buffers start on a
    64-byte boundary (`backend.aligned_empty`: MKL reads aligned operands faster, and the step
    time no longer depends on where malloc put them); the values are the initializer's."""
    from accelnet.backend import aligned_empty, get_backend
    if get_backend().name != "cpu":
        pytest.skip("the CPU backend aligns")
    an.random.seed(0)
    model = an.Sequential([an.layers.Dense(7, activation="relu", input_shape=(5,)),
                           an.layers.Dense(3, activation="softmax")])
    model.predict(np.zeros((2, 5), np.float32), verbose=0)  # builds the layers
    for layer in model.layers:
        for arrays in (layer.params, layer.grads):
            for a in arrays.values():
                assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.flags.writeable
    assert not np.any(model.layers[0].grads["kernel"])
    ws = kernels.DenseStepWorkspace(9, [7, 3], np.float32)
    for a in ws.acts + ws.grads + ws.input_grads + ws.masks + ws.dropped:
        assert a.ctypes.data % 64 == 0
    a = aligned_empty((3, 5), np.float64, align=128)
    assert a.shape == (3, 5) and a.dtype == np.float64 and a.ctypes.data % 128 == 0

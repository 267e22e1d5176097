#!/usr/bin/env bash
# bench/gpu_check.sh: accelnet's GPU check on a real NVIDIA GPU (`python -m bench --suite gpu`
# runs it with OUT under bench/results/). Grown from shared/gpu/device_check.sh.
# Run it from the accelnet project root: bash bench/gpu_check.sh
# It expects cupy-cuda13x (or 12x), numba, numba-cuda, torch (CUDA build), pytest and mpi4py to be
# installed already, and needs no internet. Everything it writes goes under $OUT (default
# ./gpu_check_out): summary.txt, results.json, and one log/JSON per step.
# Each step has its own timeout and the run as a whole has a deadline (BUDGET_S, default 420 s,
# 7 min). A step that fails is recorded and the script moves on.
# Knobs: PYTHON=python3, BUDGET_S=420, GPU_CHECK_QUICK=1 (tiny sizes, for a dry run),
#        PYTEST_ARGS (extra pytest arguments, e.g. -k "softmax"),
#        GPU_CHECK_STEPS (only these steps, e.g. "install train_bench": a short confirming call).
set -u
ROOT="$(pwd)"
OUT="${OUT:-$ROOT/gpu_check_out}"
mkdir -p "$OUT/_py"
export OUT
PY="${PYTHON:-$(command -v python || command -v python3)}"
BUDGET_S="${BUDGET_S:-420}"
START=$(date +%s)
# real device and the default kernel choice (a GPU_CHECK_QUICK dry run keeps the environment)
[ "${GPU_CHECK_QUICK:-0}" = 1 ] || unset NUMBA_ENABLE_CUDASIM ACCELNET_KERNELS
export PYTHONUNBUFFERED=1
: > "$OUT/summary.txt"

log() { echo "[$(date +%T) +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/summary.txt"; }
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
# run_step NAME CAP_SECONDS CMD...: CMD's output goes to $OUT/NAME.log and its exit code to NAME.rc
run_step() {
  local name=$1 cap=$2; shift 2
  if [ -n "${GPU_CHECK_STEPS:-}" ] && [[ " $GPU_CHECK_STEPS " != *" $name "* ]]; then
    log "SKIP $name (not in GPU_CHECK_STEPS)"; echo skipped > "$OUT/$name.rc"; return 0
  fi
  local remain=$(( $(left) - 15 ))
  local t=$(( cap < remain ? cap : remain ))
  if [ "$t" -lt 10 ]; then log "SKIP $name (deadline)"; echo skipped > "$OUT/$name.rc"; return 0; fi
  log "START $name (timeout ${t}s)"
  local s=$(date +%s)
  timeout -k 5 "$t" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$rc" > "$OUT/$name.rc"
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && log "TIMEOUT $name after ${t}s"
  log "END $name rc=$rc ($(( $(date +%s) - s ))s); last lines:"
  tail -n 4 "$OUT/$name.log" | sed 's/^/    /' | tee -a "$OUT/summary.txt"
}

# ---------------------------------------------------------------- 0. environment
{
  echo "date: $(date -Is)  host: $(hostname)  root: $ROOT"
  timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1 || echo "nvidia-smi failed"
  timeout 20 nvidia-smi 2>&1 | head -n 15
  "$PY" -V 2>&1
  timeout 40 "$PY" -m pip list 2>/dev/null | grep -i -E "^(cupy|numba|numba-cuda|cuda-|nvidia-|torch|numpy|pytest|mpi4py|accelnet)" || true
  env | grep -E "^(CUDA|NUMBA|CUPY|LD_LIBRARY_PATH|ACCELNET)" || true
} > "$OUT/env.txt" 2>&1
log "environment -> env.txt ($(grep -c . "$OUT/env.txt") lines)"

# ---------------------------------------------------------------- 1. install accelnet (offline)
# --no-build-isolation first: an isolated build env would try to download setuptools (offline)
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
  log "SKIP install (dry run: the environment is used as it is)"
else
  run_step install 90 bash -c '"$0" -m pip install --no-deps --no-build-isolation -e . ||
    "$0" -m pip install --no-deps -e .' "$PY"
fi
if ! "$PY" -c "import accelnet.kernels" > /dev/null 2>&1; then
  # accelnet.kernels lives in ./kernels (pyproject package-dir): mirror the package by links
  PKG="$OUT/_pkg/accelnet"; rm -rf "$OUT/_pkg"; mkdir -p "$PKG"
  for f in "$ROOT"/accelnet/*; do ln -s "$f" "$PKG/"; done
  ln -s "$ROOT/kernels" "$PKG/kernels"
  export PYTHONPATH="$OUT/_pkg:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  log "accelnet import via $OUT/_pkg (symlinks)"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"   # bench/ for the training comparison
"$PY" -c "import accelnet, accelnet.kernels as k; print('accelnet from', accelnet.__file__, k.__file__)" 2>&1 | tee -a "$OUT/summary.txt"

# ---------------------------------------------------------------- 2. probe: CuPy, driver/runtime, numba-cuda toolchain
cat > "$OUT/_py/probe.py" <<'PYEOF'
import json, os, sys, time, traceback, warnings
out = {}
def step(name, fn):
    t = time.perf_counter()
    try:
        out[name] = {"ok": True, "value": fn()}
    except BaseException as e:
        out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()[-1500:]}
    out[name]["s"] = round(time.perf_counter() - t, 3)
    print(name, json.dumps(out[name])[:400], flush=True)
import numpy as np
def versions():
    import importlib.metadata as md
    v = {}
    for d in ("cupy-cuda13x", "cupy-cuda12x", "numba", "numba-cuda", "cuda-bindings", "cuda-core",
              "cuda-pathfinder", "nvidia-nvvm", "nvidia-cuda-nvrtc", "nvidia-nvjitlink",
              "nvidia-cuda-nvrtc-cu12", "nvidia-nvjitlink-cu12", "nvidia-cuda-nvcc-cu12",
              "nvidia-nccl-cu12", "nvidia-nccl-cu13", "torch", "numpy", "mpi4py"):
        try: v[d] = md.version(d)
        except Exception: pass
    return v
step("versions", versions)
def cupy_basics():
    import cupy as cp
    rt, drv = cp.cuda.runtime.runtimeGetVersion(), cp.cuda.runtime.driverGetVersion()
    a = cp.arange(12, dtype=cp.float32).reshape(3, 4)
    s = float((a @ a.T).sum())            # cuBLAS
    e = float(cp.exp(a).sum())            # an elementwise kernel compiled by NVRTC
    props = cp.cuda.runtime.getDeviceProperties(0)
    return {"cupy": cp.__version__, "runtime": rt, "driver": drv,
            "accelnet_check_driver_lt_runtime_would_refuse": bool(drv < rt),
            "device": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
            "cc": f"{props['major']}.{props['minor']}", "matmul_sum": s, "exp_sum": e,
            "device_count": cp.cuda.runtime.getDeviceCount()}
step("cupy", cupy_basics)
def accelnet_backend():
    import accelnet as an
    b = an.use("gpu")
    return {"describe": b.describe(), "rng_state_type": type(b.get_rng_state()).__name__}
step("accelnet_gpu_backend", accelnet_backend)
def numba_cuda_probe():
    from numba import cuda
    import cupy as cp
    dev = cuda.get_current_device()
    r = {"numba_device": str(getattr(dev, "name", "?")), "cc": dev.compute_capability}
    def k(x, n):
        i = cuda.grid(1)
        if i < n:
            x[i] += 1.0
    ptx, _ = cuda.compile_ptx(k, "void(float32[::1], int64)", cc=dev.compute_capability)
    r["ptx_target"] = [l for l in ptx.splitlines() if l.startswith((".target", ".version"))]
    x = cp.zeros(1000, dtype=cp.float32)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kk = cuda.jit(k)
        s = cuda.external_stream(cp.cuda.get_current_stream().ptr)
        kk[4, 256, s](cuda.as_cuda_array(x, sync=False), x.size)
        cp.cuda.get_current_stream().synchronize()
        r["warnings"] = sorted({f"{x.category.__name__}: {str(x.message)[:150]}" for x in w})
    r["launch_ok"] = bool(float(x.sum()) == 1000.0)
    try:
        from numba.cuda.cudadrv import nvvm
        r["nvvm_version"] = str(nvvm.NVVM().get_version())
    except Exception as e:
        r["nvvm_version"] = f"? {type(e).__name__}: {e}"
    return r
step("numba_cuda", numba_cuda_probe)
def accelnet_kernels_first_launch():
    import cupy as cp
    from accelnet import kernels
    t = time.perf_counter()
    with kernels.implementation("numba"):  # the GPU default is the reference until measured
        d = kernels.relu_backward(cp.ones(8, cp.float32), cp.ones(8, cp.float32))
        cp.cuda.get_current_stream().synchronize()
        impl = kernels.current_implementation("relu_backward", d)
    return {"impl": impl, "first_launch_s": time.perf_counter() - t}
step("accelnet_numba_cuda_kernel", accelnet_kernels_first_launch)
def nccl_probe():
    from cupy.cuda import nccl
    return {"available": bool(getattr(nccl, "available", False)),
            "get_unique_id_type": type(nccl.get_unique_id()).__name__ if getattr(nccl, "available", False) else None}
step("nccl", nccl_probe)
json.dump(out, open(os.path.join(os.environ["OUT"], "probe.json"), "w"), indent=1, default=str)
PYEOF
run_step probe 75 "$PY" "$OUT/_py/probe.py"

# ---------------------------------------------------------------- 3. GPU-marked tests (kernel parity on the device)
# --continue-on-collection-errors: a missing hypothesis must not stop the gpu tests from running
run_step pytest_gpu 210 "$PY" -m pytest -m gpu tests -q -rs -p no:cacheprovider --durations=8 \
  --continue-on-collection-errors --junitxml="$OUT/pytest_gpu.xml" ${PYTEST_ARGS:-}

# ---------------------------------------------------------------- 4. training: accelnet GPU vs PyTorch CUDA, time/step
cat > "$OUT/_py/train_bench.py" <<'PYEOF'
"""MLP 784-512-512-10 (SGD) and the Keras mnist_cnn (Adam), batch 128, float32, synthetic data:
accelnet GPU backend (numba-cuda kernels, and the reference kernels) against PyTorch CUDA on the
same model in this process. Time/step = one fit epoch over `steps` batches, best of 2, synced."""
import json, os, sys, time, traceback, warnings
import numpy as np
OUT = os.environ["OUT"]
QUICK = os.environ.get("GPU_CHECK_QUICK") == "1"
DEADLINE = time.time() + float(os.environ.get("STEP_BUDGET_S", "170")) - 10
res = {"rows": [], "errors": [], "notes": []}
def save():
    json.dump(res, open(os.path.join(OUT, "train_bench.json"), "w"), indent=1, default=str)
import accelnet as an
from accelnet import backend as B, kernels
try:
    be = an.use("gpu")
except an.BackendError as e:
    res["backend_error"] = str(e)
    if "driver supports CUDA" in str(e):   # backend.py's driver<runtime refusal: bypass to measure
        import cupy
        B._import_cupy = lambda: cupy
        B._created.pop("gpu", None)
        be = an.use("gpu")
        res["driver_runtime_check_bypassed"] = True
    else:
        save(); raise
res["describe"] = be.describe()
cp = be.xp
try:
    kernels.relu_backward(cp.ones(8, cp.float32), cp.ones(8, cp.float32)); be.synchronize()
    # default: the mix DEFAULTS picks; numba-slow: numba through numba's own launch
    # (ACCELNET_CUDA_FAST_LAUNCH=0), the other arms through the direct one
    impls = ["numba", "reference"] if QUICK else ["default", "numba", "numba-slow", "reference"]
except Exception as e:
    res["numba_cuda_error"] = f"{type(e).__name__}: {e}"
    impls = ["reference"]
from accelnet.kernels import _cuda_launch
res["fast_launch_check_problem"] = _cuda_launch.check_problem()  # the backend's start-up check
from bench import workloads, peers_torch
BATCH = 128
PLAN = ([("mlp", 16, 2), ("cnn", 2, 1), ("mlp", 32, 1)] if QUICK else   # dry run (simulator)
        [("mlp", 128, 300), ("cnn", 128, 150), ("mlp", 1024, 60), ("cnn", 1024, 20)])
def fit_time(model, xd, yd, n, bs):
    be.synchronize(); t = time.perf_counter()
    h = model.fit(xd[:n], yd[:n], batch_size=bs, epochs=1, verbose=0, shuffle=True)
    be.synchronize()
    return time.perf_counter() - t, h.history
warnings.simplefilter("default")
ROUNDS = 1 if QUICK else 3
import contextlib
@contextlib.contextmanager
def family(impl):
    """kernels.implementation for the arm; numba-slow also sets ACCELNET_CUDA_FAST_LAUNCH=0."""
    slow = impl.endswith("-slow")
    saved = os.environ.pop("ACCELNET_CUDA_FAST_LAUNCH", None)
    if slow:
        os.environ["ACCELNET_CUDA_FAST_LAUNCH"] = "0"
    try:
        with kernels.implementation(None if impl == "default" else impl.replace("-slow", "")):
            yield
    finally:
        os.environ.pop("ACCELNET_CUDA_FAST_LAUNCH", None)
        if saved is not None: os.environ["ACCELNET_CUDA_FAST_LAUNCH"] = saved
def accelnet_contender(name, impl, xd, yd, n, bs):
    """(warm-up s, run()) for one kernel family: the model built and warmed in the family's block."""
    with family(impl):
        an.random.seed(0)
        m = workloads.accelnet_model(name)
        t0 = time.perf_counter()
        m.fit(xd[:2 * bs], yd[:2 * bs], batch_size=bs, epochs=1, verbose=0); be.synchronize()
    def run():
        with family(impl):
            s, hist = fit_time(m, xd, yd, n, bs)
        return s, {"loss": hist["loss"][0], "acc": hist.get("accuracy", [None])[0]}
    return time.perf_counter() - t0, run
def torch_contender(w, x, y, n, bs):
    import torch
    tt = peers_torch.TorchTrainer(w, x, y, "gpu", None)
    t0 = time.perf_counter(); tt.train(2 * bs, bs); torch.cuda.synchronize()
    def run():
        torch.cuda.synchronize(); t = time.perf_counter()
        loss, acc = tt.train(n, bs); torch.cuda.synchronize()
        return time.perf_counter() - t, {"loss": loss, "acc": acc}
    return time.perf_counter() - t0, run
# contenders built and warmed first, then timed in turn for ROUNDS rounds (alternated: a slow
# phase of the machine, or the GPU's clocks ramping up, hits every one), best round kept
for name, bs, steps in PLAN:
    if time.time() > DEADLINE:
        res["notes"].append(f"deadline: skipped {name} bs{bs}"); break
    n = bs * steps
    w = workloads.mlp(True) if name == "mlp" else workloads.cnn(True)
    x, y = workloads.data(w, n)
    xd, yd = be.asarray(x), be.asarray(y)
    contenders = {}
    for impl in impls:
        try:
            contenders[f"accelnet[{impl}]"] = accelnet_contender(name, impl, xd, yd, n, bs)
        except Exception as e:
            res["errors"].append({"model": name, "lib": f"accelnet[{impl}]", "error": f"{type(e).__name__}: {e}",
                                  "tb": traceback.format_exc()[-2000:]})
            print(f"accelnet[{impl}]:", res["errors"][-1]["error"][:300], flush=True)
    try:
        import torch
        contenders[f"torch {torch.__version__}"] = torch_contender(w, x, y, n, bs)
    except Exception as e:
        res["errors"].append({"model": name, "lib": "torch", "error": f"{type(e).__name__}: {e}",
                              "tb": traceback.format_exc()[-1500:]})
        print("torch:", res["errors"][-1]["error"][:300], flush=True)
    runs = {lib: [] for lib in contenders}
    last = {}
    for _ in range(ROUNDS):
        if time.time() > DEADLINE and all(runs.values()): break
        for lib, (warm, run) in list(contenders.items()):
            try:
                s, last[lib] = run(); runs[lib].append(s)
            except Exception as e:
                res["errors"].append({"model": name, "lib": lib, "error": f"{type(e).__name__}: {e}",
                                      "tb": traceback.format_exc()[-2000:]})
                print(f"{lib}:", res["errors"][-1]["error"][:300], flush=True)
                del contenders[lib]
    for lib, times in runs.items():
        if not times: continue
        row = {"model": name, "batch": bs, "lib": lib, "steps": steps, "ms_per_step": 1e3 * min(times) / steps,
               "runs_s": times, "warmup_s": contenders.get(lib, (None,))[0], **last.get(lib, {})}
        if lib.startswith("accelnet"):
            row["pool_MiB"] = cp.get_default_memory_pool().total_bytes() / 2**20
        else:
            row["reserved_MiB"] = torch.cuda.memory_reserved() / 2**20
        res["rows"].append(row)
        print(json.dumps(row)[:300], flush=True)
    contenders.clear()
    save()
for r in res["rows"]:
    t = [q for q in res["rows"] if q["model"] == r["model"] and q["batch"] == r["batch"] and q["lib"].startswith("torch")]
    if t and r["lib"].startswith("accelnet"):
        r["accelnet_over_torch"] = r["ms_per_step"] / t[0]["ms_per_step"]
save()
print("\n%-5s %5s %-22s %10s %8s %8s" % ("model", "batch", "lib", "ms/step", "x torch", "loss"))
for r in res["rows"]:
    print("%-5s %5d %-22s %10.3f %8s %8.4f" % (r["model"], r["batch"], r["lib"], r["ms_per_step"],
          f"{r['accelnet_over_torch']:.2f}" if "accelnet_over_torch" in r else "-", r["loss"]))
for e in res["errors"]:
    print("ERROR", e["model"], e["lib"], e["error"][:300])
PYEOF
STEP_BUDGET_S=$(( $(left) < 170 ? $(left) : 170 )) run_step train_bench 170 "$PY" "$OUT/_py/train_bench.py"

# ---------------------------------------------------------------- 5. end-to-end smoke on the device (fit/evaluate/predict/save/callbacks/hand loop)
cat > "$OUT/_py/smoke.py" <<'PYEOF'
import json, os, sys, tempfile, time, traceback, warnings, importlib
import numpy as np
OUT = os.environ["OUT"]
DEADLINE = time.time() + float(os.environ.get("STEP_BUDGET_S", "90")) - 5
res = {}
caught = []
warnings.showwarning = lambda m, c, f, l, file=None, line=None: caught.append(f"{c.__name__}: {str(m)[:160]}")
def save():
    res["_warnings"] = sorted(set(caught))[:40]
    json.dump(res, open(os.path.join(OUT, "smoke.json"), "w"), indent=1, default=str)
def sc(fn):
    if time.time() > DEADLINE:
        res[fn.__name__] = {"ok": None, "error": "skipped (deadline)"}; save(); return fn
    t = time.perf_counter()
    try:
        res[fn.__name__] = {"ok": True, "detail": fn()}
    except BaseException as e:
        res[fn.__name__] = {"ok": False, "error": f"{type(e).__name__}: {e}", "tb": traceback.format_exc()[-1800:]}
    res[fn.__name__]["s"] = round(time.perf_counter() - t, 2)
    print(("OK  " if res[fn.__name__]["ok"] else "FAIL"), fn.__name__, str(res[fn.__name__].get("error", res[fn.__name__].get("detail")))[:250], flush=True)
    save(); return fn
import accelnet as an
from accelnet import backend as B, kernels
try:
    an.use("gpu")
except an.BackendError as e:
    res["backend_error"] = str(e)
    if "driver supports CUDA" in str(e):
        import cupy
        B._import_cupy = lambda: cupy
        B._created.pop("gpu", None)
        an.use("gpu")
be = an.get_backend(); cp = be.xp
L = an.layers
rng = np.random.default_rng(0)
X = rng.random((256, 20), dtype=np.float32); Y = rng.integers(0, 3, 256).astype(np.int32)
XI = rng.random((32, 12, 12, 1), dtype=np.float32); YI = rng.integers(0, 3, 32).astype(np.int32)
TMP = tempfile.mkdtemp()
def mlp(drop=0.2):
    m = an.Sequential([L.Dense(32, activation="relu", input_shape=(20,)), L.Dropout(drop),
                       L.Dense(32, activation="relu"), L.Dense(3, activation="softmax")])
    m.compile(optimizer=an.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m
def cnn():
    m = an.Sequential([L.Conv2D(8, 3, activation="relu", input_shape=(12, 12, 1)), L.Conv2D(8, 3, activation="relu"),
                       L.MaxPooling2D(2), L.Dropout(0.25), L.Flatten(), L.Dense(16, activation="relu"),
                       L.Dropout(0.5), L.Dense(3, activation="softmax")])
    m.compile(optimizer=an.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m
@sc
def mlp_fit_evaluate_predict_save_load():
    m = mlp(); h = m.fit(X, Y, batch_size=32, epochs=2, verbose=0, validation_split=0.25)
    ev = m.evaluate(X, Y, verbose=0); p = m.predict(X[:7])
    assert isinstance(p, np.ndarray) and p.shape == (7, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    path = os.path.join(TMP, "m.npz"); m.save(path); m2 = an.models.load_model(path)
    assert np.allclose(m2.predict(X[:7]), p, atol=1e-6); m2.fit(X, Y, batch_size=32, epochs=1, verbose=0)
    return {"history": h.history, "evaluate": ev}
@sc
def cnn_fit_evaluate_predict():
    m = cnn(); h = m.fit(XI, YI, batch_size=8, epochs=1, verbose=0); ev = m.evaluate(XI, YI, verbose=0)
    return {"history": h.history, "evaluate": ev, "pred": m.predict(XI[:2]).shape}
@sc
def cnn_same_strides_bn_nontiled_pool():
    m = an.Sequential([L.Conv2D(4, 3, strides=2, padding="same", activation="tanh", input_shape=(9, 9, 2)),
                       L.BatchNormalization(), L.MaxPooling2D(3, strides=2, padding="same"), L.Flatten(),
                       L.Dense(3, activation="softmax")])
    m.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((16, 9, 9, 2), dtype=np.float32); y = rng.integers(0, 3, 16)
    return m.fit(x, y, batch_size=8, epochs=1, verbose=0).history
@sc
def early_stopping_restore_best():
    es = an.callbacks.EarlyStopping(patience=0, restore_best_weights=True, min_delta=10.0)
    h = mlp().fit(X, Y, batch_size=32, epochs=3, verbose=0, validation_split=0.25, callbacks=[es])
    return {"epochs": len(h.history["loss"])}
@sc
def backup_and_restore():
    d = os.path.join(TMP, "bk")
    mlp().fit(X, Y, batch_size=32, epochs=2, verbose=0, callbacks=[an.callbacks.BackupAndRestore(d, delete_checkpoint=False)])
    m2 = mlp(); m2.fit(X, Y, batch_size=32, epochs=3, verbose=0, callbacks=[an.callbacks.BackupAndRestore(d)])
    return {"resumed_at": m2._resume_epoch}
@sc
def per_batch_callbacks_terminate_on_nan_csv():
    seen = []
    cbs = [an.callbacks.LambdaCallback(on_batch_end=lambda b, l: seen.append(l["loss"])),
           an.callbacks.TerminateOnNaN(), an.callbacks.CSVLogger(os.path.join(TMP, "l.csv"))]
    mlp().fit(X, Y, batch_size=64, epochs=1, verbose=0, callbacks=cbs)
    return {"batches": len(seen)}
@sc
def hand_driven_loop():
    net = [L.Dense(16, activation="relu"), L.Dense(3)]
    loss_fn = an.losses.SparseCategoricalCrossentropy(from_logits=True); opt = an.optimizers.Adam(1e-3)
    x, y = be.asarray(X), be.asarray(Y.astype(np.int64)); losses = []
    for _ in range(10):
        out = x
        for l in net: out = l.forward(out, training=True)
        loss, grad = loss_fn.value_and_grad(y, out); losses.append(loss)
        for l in reversed(net): grad = l.backward(grad)
        opt.apply({f"{i}/{k}": p for i, l in enumerate(net) for k, p in l.params.items()},
                  {f"{i}/{k}": g for i, l in enumerate(net) for k, g in l.grads.items()})
    return {"loss0": float(losses[0]), "loss9": float(losses[-1]), "acc": float((out.argmax(axis=1) == y).mean())}
@sc
def other_losses_and_optimizers():
    out = {}
    yc = an.utils.to_categorical(Y, 3)
    for loss, y, last in [("categorical_crossentropy", yc, L.Dense(3, activation="softmax")),
                          ("binary_crossentropy", (Y > 0).astype(np.float32), L.Dense(1, activation="sigmoid")),
                          ("mse", rng.random((256, 2), dtype=np.float32), L.Dense(2))]:
        for opt in ("sgd", "adagrad", "adadelta", "rmsprop"):
            m = an.Sequential([L.Dense(8, activation="tanh", input_shape=(20,), kernel_regularizer=an.regularizers.l1_l2(1e-3, 1e-3)),
                               type(last)(**{k: v for k, v in last.get_config().items() if k != "name"})])
            m.compile(optimizer=opt, loss=loss, metrics=["accuracy"])
            out[f"{loss}/{opt}"] = m.fit(X, y, batch_size=64, epochs=1, verbose=0).history["loss"][0]
    return out
@sc
def bad_labels_reported_by_check_errors():
    sce = importlib.import_module("accelnet.kernels.softmax_cross_entropy"); r = {}
    kernels.check_errors()
    for form in ("numba_cuda", "reference"):
        getattr(sce, form)(cp.zeros((8, 4), cp.float32), cp.asarray([0, 1, 2, 3, 0, 9, 1, 2]))
        try:
            kernels.check_errors(); r[form] = "NOT RAISED"
        except an.errors.InvalidArgumentError as e:
            r[form] = str(e)[:70]
    return r
@sc
def kernels_on_a_non_default_stream():
    relu = importlib.import_module("accelnet.kernels.relu_backward")
    dy = rng.standard_normal(1 << 20).astype(np.float32); x = rng.standard_normal(1 << 20).astype(np.float32)
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        got = relu.numba_cuda(cp.asarray(dy), cp.asarray(x)); tot = got.sum()
    s.synchronize()
    return {"match": bool(np.array_equal(got.get(), np.where(x > 0, dy, 0)))}
@sc
def cpu_gpu_parity_one_epoch():
    out = {}
    for kind in ("mlp", "cnn"):
        ws = {}
        for dev in ("cpu", "gpu"):
            an.use(dev); an.random.seed(3)
            m = (an.Sequential([L.Dense(32, activation="relu", input_shape=(20,)), L.Dense(3, activation="softmax")])
                 if kind == "mlp" else
                 an.Sequential([L.Conv2D(4, 3, activation="relu", input_shape=(12, 12, 1)), L.MaxPooling2D(2),
                                L.Flatten(), L.Dense(3, activation="softmax")]))
            m.compile(optimizer=an.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy")
            x, y = (X, Y) if kind == "mlp" else (XI, YI)
            h = m.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
            ws[dev] = (m.get_weights(), h.history["loss"])
        an.use("gpu")
        out[kind] = {"max_abs_weight_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(ws["cpu"][0], ws["gpu"][0])),
                     "loss_cpu": ws["cpu"][1], "loss_gpu": ws["gpu"][1]}
    return out
@sc
def launch_overhead_us():
    relu = importlib.import_module("accelnet.kernels.relu_backward")
    a = cp.ones(1024, cp.float32); r = {}
    def slow(a):
        os.environ["ACCELNET_CUDA_FAST_LAUNCH"] = "0"
        try:
            return relu.numba_cuda(a, a)
        finally:
            os.environ.pop("ACCELNET_CUDA_FAST_LAUNCH", None)
    for name, fn in (("numba_cuda relu_backward, numba's launch", lambda: slow(a)),
                     ("numba_cuda relu_backward, direct launch", lambda: relu.numba_cuda(a, a)),
                     ("cupy reference relu_backward", lambda: relu.reference(a, a)),
                     ("cupy a*2", lambda: a * 2)):
        fn(); be.synchronize(); t = time.perf_counter()
        for _ in range(300): fn()
        be.synchronize(); r[name] = round((time.perf_counter() - t) / 300 * 1e6, 1)
    return r
save()
print("smoke:", sum(1 for v in res.values() if isinstance(v, dict) and v.get("ok")), "ok,",
      sum(1 for v in res.values() if isinstance(v, dict) and v.get("ok") is False), "failed")
PYEOF
# (a dry run under the simulator keeps to the reference forms: numba-cuda's there take minutes)
SMOKE_KERNELS=$([ "${GPU_CHECK_QUICK:-0}" = 1 ] && echo reference || echo "${ACCELNET_KERNELS:-}")
STEP_BUDGET_S=$(( $(left) < 100 ? $(left) : 100 )) run_step smoke 100 \
  env ACCELNET_KERNELS="$SMOKE_KERNELS" "$PY" "$OUT/_py/smoke.py"

# ---------------------------------------------------------------- 5b. where a step's time goes on the device (synced per layer)
[ "${GPU_CHECK_QUICK:-0}" = 1 ] && log "SKIP step_profile (dry run)" ||
run_step step_profile 90 env ACCELNET_BACKEND=gpu "$PY" -m bench.step_profile --device gpu \
  --json "$OUT/step_profile.json"
# mnist_cnn at batch 1024, where accelnet was ~11x PyTorch CUDA (36 against 3.2 ms/step)
[ "${GPU_CHECK_QUICK:-0}" = 1 ] ||
run_step step_profile_1024 60 env ACCELNET_BACKEND=gpu "$PY" -m bench.step_profile --device gpu \
  --batch 1024 --only cnn --json "$OUT/step_profile_1024.json"

# ---------------------------------------------------------------- 6. kernel microbench (numba-cuda form vs CuPy reference), if time is left
# (full shapes: the quick ones, 8-16 images, left every GPU kernel launch-bound; numba-cuda
# through the direct launch, the default, whose "match" column also checks it)
[ "${GPU_CHECK_QUICK:-0}" = 1 ] && log "SKIP bench_kernels (dry run: the simulator is too slow)" ||
run_step bench_kernels 120 env ACCELNET_BACKEND=gpu "$PY" -m bench --suite kernels \
  --out "$OUT/bench_kernels"

# ---------------------------------------------------------------- 7. one results.json + summary
cat > "$OUT/_py/collect.py" <<'PYEOF'
import json, os, glob, xml.etree.ElementTree as ET
OUT = os.environ["OUT"]; r = {}
for n in ("probe", "train_bench", "smoke", "step_profile", "step_profile_1024"):
    try: r[n] = json.load(open(os.path.join(OUT, n + ".json")))
    except Exception as e: r[n] = {"missing": str(e)}
try:
    s = ET.parse(os.path.join(OUT, "pytest_gpu.xml")).getroot()
    s = s if s.tag == "testsuite" else s[0]
    r["pytest_gpu"] = {k: s.get(k) for k in ("tests", "failures", "errors", "skipped", "time")}
    r["pytest_gpu"]["failed"] = [c.get("name") for c in s.iter("testcase") if c.find("failure") is not None or c.find("error") is not None]
except Exception as e:
    r["pytest_gpu"] = {"missing": str(e)}
r["step_rc"] = {os.path.basename(p)[:-3]: open(p).read().strip() for p in glob.glob(os.path.join(OUT, "*.rc"))}
json.dump(r, open(os.path.join(OUT, "results.json"), "w"), indent=1, default=str)
print("step exit codes:", r["step_rc"]); print("pytest -m gpu:", r["pytest_gpu"])
p = r.get("probe", {})
for k in ("cupy", "accelnet_gpu_backend", "numba_cuda", "accelnet_numba_cuda_kernel", "nccl"):
    v = p.get(k, {}); print(f"probe {k}: {'ok' if v.get('ok') else 'FAIL'} {str(v.get('value', v.get('error')))[:200]}")
for row in r.get("train_bench", {}).get("rows", []):
    print(f"train {row['model']} b{row['batch']} {row['lib']}: {row['ms_per_step']:.3f} ms/step"
          + (f" ({row['accelnet_over_torch']:.2f}x torch)" if "accelnet_over_torch" in row else ""))
for e in r.get("train_bench", {}).get("errors", []): print("train ERROR", e["model"], e["lib"], e["error"][:200])
for k, v in r.get("smoke", {}).items():
    if isinstance(v, dict) and "ok" in v: print(f"smoke {k}: {'ok' if v['ok'] else ('SKIP' if v['ok'] is None else 'FAIL ' + v['error'][:160])}")
PYEOF
timeout 30 "$PY" "$OUT/_py/collect.py" 2>&1 | tee -a "$OUT/summary.txt"
log "done in $(( $(date +%s) - START ))s; results in $OUT (summary.txt, results.json)"
# keep $OUT to three files (summary, results, one archive of the rest): easy to carry back and commit
( cd "$OUT" && tar czf /tmp/gpu_check_all.tgz --exclude=_pkg . 2>/dev/null && \
  find . -mindepth 1 -maxdepth 1 ! -name summary.txt ! -name results.json -exec rm -rf {} + && \
  mv /tmp/gpu_check_all.tgz . ) || true
exit 0

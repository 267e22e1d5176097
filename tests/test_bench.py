"""The bench runs end to end in --quick mode and writes a complete JSON record.

No timing is asserted (CI machines are noisy); only that every figure is there and positive.
"""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNELS = {"softmax_cross_entropy", "relu_backward", "im2col", "col2im", "max_pool",
           "max_pool_backward", "max_pool_relu_grad", "dropout_mask", "relu_bias_grad",
           "winograd_conv", "winograd_weight_grad", "winograd_grads", "conv_forward", "conv_weight_grad",
           "conv_input_grad", "batch_norm_forward", "batch_norm_backward", "adam_update", "dense_step",
           "winograd_conv_pool", "winograd_pool_grads",
           "sgd_update", "bias_relu"}


def run_bench(out, *args):
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(out.glob("bench_*.json"))
    assert len(files) == 1, list(out.iterdir())
    return json.loads(files[0].read_text()), proc.stdout


def check_machine(machine):
    for key in ("cpu_model", "blas", "numpy", "numba", "backend", "backend_describe",
                "git_commit", "date", "hostname"):
        assert machine[key], key
    assert machine["sgemm_gflops"] > 0
    assert machine["numba_threads"] >= 1 and machine["logical_cores"] >= 1


def check_kernels(rows):
    assert {r["kernel"] for r in rows} == KERNELS
    assert len(rows) == 61  # Winograd forward and weight gradient at 4 shapes (default tiles), both
    # gradients at 1; Adam at 2 shapes, SGD at 1, bias + ReLU at 2, im2col/col2im at 4, the
    # im2col convolution forward and weight gradient at 4 shapes, the MLP's whole step at 1
    # (SGD folded) and with its gradients out; Winograd with pooling at 2 slices, its
    # gradients at 1
    for r in rows:
        assert "error" not in r, r
        for form in ("reference", "numba"):
            assert r[form]["median_s"] > 0 and r[form]["first_call_s"] > 0
            assert r[form]["min_s"] <= r[form]["median_s"] <= r[form]["max_s"]
        assert r["numba"]["implementation"].startswith("numba")
        assert r["reference"]["implementation"] == "reference"
        assert r["speedup"] > 0 and r["match"], r


@pytest.fixture(scope="module")
def quick_all(tmp_path_factory):
    return run_bench(tmp_path_factory.mktemp("bench"))


def test_quick_bench_writes_machine_kernels_train_and_memory(quick_all):
    results, stdout = quick_all
    assert set(results) >= {"machine", "kernels", "train", "targets", "args"}
    check_machine(results["machine"])
    check_kernels(results["kernels"])
    rows = {(r["workload"], r["contender"]): r for r in results["train"]["rows"]}
    assert {("mlp", "accelnet"), ("cnn", "accelnet"), ("mlp", "numpy"), ("cnn", "numpy")} <= set(rows)
    for key, r in rows.items():
        if "unavailable" in r:  # only an optional peer may be missing, with a reason
            assert (key[1] == "torch" or key[0] not in ("mlp", "cnn")) and r["unavailable"]
            continue
        for field in ("seconds_per_epoch", "samples_per_s", "gflops", "sgemm_fraction"):
            assert r[field] > 0, (key, field)
        assert r["peak_host_mib"] >= 0
        if key[1] != "accelnet":
            assert r["accelnet_over_peer"] > 0
    assert {"seed004_cnn", "cifar_cnn"} <= {w for w, _ in rows}
    for workload, prof in results["train"]["step_profile"].items():
        acc = prof["accelnet"]
        assert acc["step_ms"] > 0 and acc["optimizer_ms"] > 0 and acc["loss_ms"] > 0, workload
        assert all(l["forward_ms"] is not None and l["backward_ms"] is not None
                   for l in acc["layers"] if not l["layer"].endswith("Dense")), workload
    mem = results["train"]["memory"]
    assert len(mem["mlp_rss_after_epoch_mib"]) == 5
    assert mem["cnn_peak_mib_batch128"] > 0 and mem["cnn_peak_mib_batch1024"] > 0
    assert all(isinstance(t["pass"], bool) for t in results["targets"])
    assert stdout.splitlines()[0].startswith(results["machine"]["cpu_model"])
    assert "Kernels" in stdout and "Training" in stdout and "Targets" in stdout
    assert "Step profile" in stdout


def test_quick_bench_draws_a_chart_beside_the_json(quick_all):
    pytest.importorskip("matplotlib")
    results, stdout = quick_all
    assert ".png" in stdout.splitlines()[-1]


def test_kernels_suite_alone(tmp_path):
    results, stdout = run_bench(tmp_path, "--suite", "kernels")
    check_machine(results["machine"])
    check_kernels(results["kernels"])
    assert results["train"] is None
    assert "Training" not in stdout
    gemm = results["gemm"]  # MKL against NumPy at the MLP's shapes, where MKL is installed
    assert (gemm["mkl"] is None) == (results["machine"]["mkl"] is None)
    assert "GEMM" in stdout
    if gemm["mkl"]:
        assert len(gemm["rows"]) == 5 and all(r["numpy_ms"] > 0 and r["mkl_ms"] > 0
                                              for r in gemm["rows"])
        assert any(t["name"].startswith("gemm: MKL") for t in results["targets"])
    else:
        assert gemm["rows"] == [] and gemm["note"]


def test_missing_torch_becomes_an_unavailable_row_and_the_suite_goes_on(monkeypatch):
    from bench import report, train_bench, workloads
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    tiny = workloads.Workload("mlp", (784,), 256, workloads.mlp_macs())
    rows = train_bench.bench_workload(tiny, ["torch"], 1, "cpu", 1, "synthetic", {"cpu": 100.0},
                                      log=lambda message: None)
    by_name = {r["contender"]: r for r in rows}
    assert "PyTorch not importable" in by_name["torch"]["unavailable"]
    assert by_name["accelnet"]["seconds_per_epoch"] > 0
    assert "unavailable: PyTorch not importable" in report.train_table(rows)


def test_peer_list_rejects_unknown_names():
    from bench.__main__ import parse
    assert parse(["--peers", "numpy"]).peers == ["numpy"]
    assert parse(["--peers", "none"]).peers == []
    assert parse(["--quick"]).repeat == 1 and parse([]).repeat == 3
    with pytest.raises(SystemExit):
        parse(["--peers", "tensorflow"])


def test_soak_suite_records_rss_after_every_epoch(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--suite", "soak", "--quick", "--out",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    (path,) = tmp_path.glob("soak_*.json")
    result = json.loads(path.read_text())
    assert proc.returncode == (0 if all(r["flat"] for r in result["rows"]) else 1)
    assert [r["workload"] for r in result["rows"]] == ["mlp", "cnn"]
    for row in result["rows"]:
        assert len(row["rss_after_epoch_mib"]) == row["epochs"] >= 2
        assert all(v > 0 for v in row["rss_after_epoch_mib"])
        assert row["growth_epoch2_to_last_mib"] == pytest.approx(
            row["rss_after_epoch_mib"][-1] - row["rss_after_epoch_mib"][1])


def test_busy_suite_times_quiet_then_under_a_competing_load(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--suite", "busy", "--quick", "--repeat",
                           "1", "--load-procs", "1", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = tmp_path.glob("busy_*.json")
    result = json.loads(path.read_text())
    assert result["load_procs"] == 1
    assert [r["workload"] for r in result["rows"]] == ["mlp", "cnn"]
    for row in result["rows"]:
        assert row["quiet_s"]["accelnet"] > 0 and row["busy_s"]["accelnet"] > 0
        assert row["slowdown"]["accelnet"] == pytest.approx(
            row["busy_s"]["accelnet"] / row["quiet_s"]["accelnet"])


def test_mlp_arms_times_openblas_mkl_folded_one_call_torch_and_the_floor(capsys, tmp_path,
                                                                       monkeypatch):
    """bench.mlp_arms: the six arms alternated in one process (where MKL is installed)."""
    monkeypatch.delenv("ACCELNET_DENSE_STEP", raising=False)
    from accelnet.kernels import _mkl
    if _mkl.library() is None:
        pytest.skip("the mkl wheel is not installed")
    pytest.importorskip("torch")
    from bench import mlp_arms
    previous = os.environ.get("ACCELNET_MKL")
    path = mlp_arms.main(["--rounds", "1", "--quick", "--out", str(tmp_path)])
    assert os.environ.get("ACCELNET_MKL") == previous  # given back as it was
    assert "ACCELNET_DENSE_STEP" not in os.environ
    lines = capsys.readouterr().out.splitlines()
    arms = ["openblas", "mkl", "mkl+fold", "one-call", "torch", "floor"]
    assert [line.split()[0] for line in lines[-7:-1]] == arms
    assert all(float(line.split()[2]) > 0 for line in lines[-7:-1])
    with open(path) as f:
        results = json.load(f)
    assert set(results["runs_s"]) == set(arms)
    assert results["machine"]["mkl"] and results["best_over_torch"]["torch"] == 1.0


def test_mlp_arms_adam_times_the_layers_the_one_call_and_torch(capsys, tmp_path, monkeypatch):
    """bench.mlp_arms --adam: Adam on both sides, three arms (where MKL is installed)."""
    monkeypatch.delenv("ACCELNET_DENSE_STEP", raising=False)
    from accelnet.kernels import _mkl
    if _mkl.library() is None:
        pytest.skip("the mkl wheel is not installed")
    pytest.importorskip("torch")
    from bench import mlp_arms
    path = mlp_arms.main(["--rounds", "1", "--quick", "--adam", "--out", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[-4:-1]] == ["layers", "one-call", "torch"]
    with open(path) as f:
        results = json.load(f)
    assert os.path.basename(path).startswith("mlp_arms_adam_") and results["args"]["adam"]

"""`python -m bench --suite gpu --quick` (the GPU check's dry run) on the CuPy stand-in under
Numba's CUDA simulator: every step runs and records its result, so the one call a GPU
session makes is known to work before a GPU is at hand."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _dry_run(tmp_path, **env):
    """The GPU check's dry run on the stand-in under the simulator: its output folder."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", **env,
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "cupy_standin"), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-m", "bench", "--suite", "gpu", "--quick",
                           "--out", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    return run_dir


def test_gpu_check_dry_run_on_the_standin(tmp_path):
    run_dir = _dry_run(tmp_path, BUDGET_S="240")
    assert sorted(p.name for p in run_dir.iterdir()) == ["gpu_check_all.tgz", "results.json",
                                                         "summary.txt"]
    results = json.loads((run_dir / "results.json").read_text())
    probe = results["probe"]
    # ("numba_cuda" probes PTX compilation, which the simulator lacks)
    for step in ("cupy", "accelnet_gpu_backend", "accelnet_numba_cuda_kernel"):
        assert probe[step]["ok"], (step, probe[step])
    assert probe["accelnet_numba_cuda_kernel"]["value"]["impl"] == "numba-cuda"
    assert results["pytest_gpu"]["failures"] == "0" and results["pytest_gpu"]["errors"] == "0"
    smoke = {k: v for k, v in results["smoke"].items() if isinstance(v, dict) and "ok" in v}
    assert smoke and all(v["ok"] is not False for v in smoke.values()), smoke
    libs = {row["lib"] for row in results["train_bench"]["rows"]}
    assert {"accelnet[numba]", "accelnet[reference]"} <= libs


def test_gpu_check_steps_runs_only_the_named_steps(tmp_path):
    """GPU_CHECK_STEPS="probe": a short confirming call runs the probe and skips the rest."""
    run_dir = _dry_run(tmp_path, BUDGET_S="120", GPU_CHECK_STEPS="probe")
    rc = json.loads((run_dir / "results.json").read_text())["step_rc"]
    assert rc["probe"] == "0"
    assert rc["pytest_gpu"] == rc["train_bench"] == rc["smoke"] == "skipped", rc
    assert "not in GPU_CHECK_STEPS" in (run_dir / "summary.txt").read_text()


def test_launch_sync_probe_runs_on_the_standin():
    """bench/gpu_launch_sync.py on the CuPy stand-in under the simulator: every part is timed
    or reports why it cannot run there (the simulator has no as_cuda_array)."""
    code = ("import bench.gpu_launch_sync as g\n"
            "g.WORK_MS, g.SIZE = 1, 64\n"
            "out = g.main(['--quick'])\n"
            "assert out['queued_ms'] > 0 and 'relu_backward reference' in out['parts_ms']\n"
            "assert all('behind_queue' in v or 'error' in v for v in out['parts_ms'].values())\n"
            "print('parts', len(out['parts_ms']))\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "cupy_standin"), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "parts 6" in proc.stdout, \
        proc.stdout[-2000:] + proc.stderr[-2000:]

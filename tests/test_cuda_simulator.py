"""Run tests/cudasim (the Numba CUDA kernels vs the references) under Numba's CUDA
simulator, in a subprocess: NUMBA_ENABLE_CUDASIM must be set before Numba is imported.
A failed numba.cuda import fails this test; it is never skipped."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cuda_kernels_pass_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env.pop("ACCELNET_KERNELS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "tests/cudasim", "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, output

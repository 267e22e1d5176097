"""Run, under Numba's CUDA simulator in a subprocess (NUMBA_ENABLE_CUDASIM must be set
before Numba is imported): tests/cudasim (simulator-specific kernel cases), the
`numba-cuda-sim` form of tests/test_kernel_parity.py, tests/test_kernels_batch_norm.py and
tests/test_dense_step.py (numba-cuda on CuPy stand-in arrays), and the cross-device suite with the GPU backend's
numba-cuda kernels. A failed numba.cuda import fails this test; it is never skipped."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cuda_kernels_pass_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env.pop("ACCELNET_KERNELS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/cudasim", "tests/test_kernel_parity.py",
         "tests/test_kernels_batch_norm.py", "tests/test_dense_step.py",
         "tests/test_cross_device.py",
         "-p", "no:cacheprovider"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    summary = proc.stdout.strip().splitlines()[-1]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 30 and "failed" not in summary and "error" not in summary, output

"""`python -m bench --suite gpu`: the one-command GPU check (bench/gpu_check.sh).

Probes CuPy, the driver/runtime, numba-cuda's toolchain and NCCL; runs `pytest -m gpu`;
times MLP and ConvNet training steps (batch 128 and 1024) against PyTorch CUDA in the same
run, with each kernel family; runs the kernel bench on the GPU. About 7 minutes on an H100
with everything preinstalled and no internet. Writes summary.txt, results.json and one
archive of the logs into `<out>/gpu_check_<host>_<time>/` (`--out`, default bench/results).
`--quick` is a dry run with tiny sizes (CI runs it on the CuPy stand-in under the simulator).
"""
import os
import socket
import subprocess
import sys
import time

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_check.sh")
ROOT = os.path.dirname(os.path.dirname(SCRIPT))


def run(args):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.join(os.path.abspath(args.out), f"gpu_check_{socket.gethostname()}_{stamp}")
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, OUT=out, PYTHON=sys.executable)
    if args.quick:
        env["GPU_CHECK_QUICK"] = "1"
    print(f"GPU check -> {out}", flush=True)
    return subprocess.call(["bash", SCRIPT], cwd=ROOT, env=env)

"""Does a numba-cuda launch from accelnet wait for the GPU? `python -m bench.gpu_launch_sync`.

On an H100 a `fit` step looked ~3 ms slower on mnist_cnn (b128) with only softmax-CE's
numba-cuda form on, though that form replaces ~20 CuPy launches by one, as if the launch waited
for the queued work. Here ~20 ms of CuPy matrix products are queued, then each part of
accelnet's launch path is timed on the host: a part that takes about the queued time
synchronizes. On the H100 none did (bench/results/gpu_launch_sync_vm_20261127-025500: the
numba-cuda softmax-CE 0.99 ms, its reference 1.85); the slowdown rather came from the GPU check
timing its contenders one after another, where the first of each model ran slow whatever its
kernels (the check now alternates them). Prints, and writes JSON with --json F;
--quick leaves softmax-CE out (a dry run on the CPU stand-in).
"""
import json
import sys
import time

import numpy

WORK_MS = 20.0
SIZE = 4096  # of the queued square products (the test shrinks it: CPU stand-in)


def main(argv):
    import cupy
    import importlib
    from accelnet.kernels import _cuda
    relu_backward = importlib.import_module("accelnet.kernels.relu_backward")
    softmax_cross_entropy = importlib.import_module("accelnet.kernels.softmax_cross_entropy")
    cuda = _cuda.cuda_module()
    a = cupy.ones((SIZE, SIZE), cupy.float32)
    dy, x = cupy.ones(1 << 16, cupy.float32), cupy.ones(1 << 16, cupy.float32)
    logits, labels = cupy.zeros((128, 10), cupy.float32), cupy.zeros(128, cupy.int64)
    sync = cupy.cuda.get_current_stream().synchronize

    def queue(k):
        for _ in range(k):
            a @ a

    queue(1), sync()
    t = time.perf_counter()
    queue(4)
    sync()
    k = max(1, int(WORK_MS / (1e3 * (time.perf_counter() - t) / 4)))
    t = time.perf_counter()
    queue(k)
    sync()
    queued_ms = 1e3 * (time.perf_counter() - t)

    parts = {
        "cupy a*2": lambda: dy * 2,
        "as_cuda (accelnet's view)": lambda: _cuda.as_cuda(dy),
        "numba as_cuda_array(cupy, sync=False)": lambda: cuda.as_cuda_array(dy, sync=False),
        "external stream (cached)": lambda: _cuda._current_stream(cuda),
        "relu_backward numba_cuda": lambda: relu_backward.numba_cuda(dy, x),
        "relu_backward reference": lambda: relu_backward.reference(dy, x),
        "softmax_cross_entropy numba_cuda":
            lambda: softmax_cross_entropy.numba_cuda(logits, labels),
        "softmax_cross_entropy reference": lambda: softmax_cross_entropy.reference(logits, labels),
    }
    if "--quick" in argv:  # a dry run (the CUDA simulator runs softmax-CE's kernel for seconds)
        parts = {name: part for name, part in parts.items() if "softmax" not in name}
    out = {"queued_ms": queued_ms, "products": k, "parts_ms": {}}
    for name, part in parts.items():
        try:
            part(), sync()  # compiled, cached
        except Exception as exc:  # (the simulator has no as_cuda_array)
            out["parts_ms"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name:40s} {out['parts_ms'][name]['error']}", flush=True)
            continue
        times = []
        for _ in range(3):
            queue(k)
            t = time.perf_counter()
            part()
            times.append(1e3 * (time.perf_counter() - t))
            sync()
        idle = []
        for _ in range(3):
            t = time.perf_counter()
            part()
            idle.append(1e3 * (time.perf_counter() - t))
            sync()
        out["parts_ms"][name] = {"behind_queue": times, "idle": idle,
                                 "waits": bool(numpy.median(times) > 0.5 * queued_ms)}
        print(f"{name:40s} behind {queued_ms:5.1f} ms of queued work: "
              f"{numpy.median(times):7.3f} ms, idle {numpy.median(idle):6.3f} ms"
              f"{'  <- WAITS' if out['parts_ms'][name]['waits'] else ''}", flush=True)
    import numba
    out["numba_cuda_config"] = {k: getattr(numba.config, k) for k in dir(numba.config)
                                if k.startswith("CUDA") and isinstance(getattr(numba.config, k),
                                                                       (bool, int, str))}
    if "--json" in argv:
        with open(argv[argv.index("--json") + 1], "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main(sys.argv[1:])

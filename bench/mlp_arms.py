"""The MLP's epoch in six arms, alternated in one process (issue 13's record of what MKL, the
folded SGD update and the one-call step each bring): accelnet on NumPy's OpenBLAS
(ACCELNET_MKL=0), on MKL with the optimizer's own update, on MKL with the update folded into
Dense's GEMM (layer by layer, ACCELNET_DENSE_STEP=0), `one-call`: the whole step as one
compiled call (`accelnet.dense_stack`, the default), PyTorch-CPU, and `floor`: the same step
written out by hand in Python on the same kernels (MKL products with the folded update, bias +
ReLU, fused softmax-cross-entropy; no model, metrics or callbacks).

    python -m bench.mlp_arms [--rounds 4] [--quick] [--adam]

`--adam`: the same MLP under Adam(1e-3) on both sides, three arms: `layers` (layer by
layer), `one-call` (the step's gradients from one compiled call, Adam applied after) and
PyTorch.

Prints the best and median epoch of each arm and writes them, with the machine, to
bench/results/mlp_arms_<time>_<host>.json (`--out` elsewhere)."""
import argparse
import contextlib
import os
import re
import socket
import statistics
import time

import numpy

from accelnet import dense_stack, kernels

from . import machine, report, workloads
from .gemm_bench import mkl_setting_restored
from .train_bench import AccelnetTrainer


@contextlib.contextmanager
def _setting_restored(name):
    before = os.environ.get(name)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class HandWritten:
    """The MLP's SGD step written out on accelnet's kernels, nothing else: `floor`."""

    def __init__(self, x, y, weights, lr=0.01, seed=0):
        self.x, self.y, self.lr = x, y, lr
        self.kernels, self.biases = weights[0::2], weights[1::2]
        self.rng = numpy.random.default_rng(seed)

    def train(self, n, batch_size=workloads.BATCH):
        (w1, w2, w3), (b1, b2, b3), lr = self.kernels, self.biases, self.lr
        order = self.rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            xb, yb = self.x[idx], self.y[idx]
            h1 = kernels.bias_relu(kernels.gemm(xb, w1), b1)
            h2 = kernels.bias_relu(kernels.gemm(h1, w2), b2)
            z = kernels.gemm(h2, w3)
            z += b3
            _, dz = kernels.softmax_cross_entropy(z, yb)
            dh2 = kernels.gemm(dz, w3.T)
            kernels.gemm(h2.T, dz, w3, alpha=-lr, beta=1.0)
            kernels.sgd_update(b3, dz.sum(axis=0), lr)
            dz2, g2 = kernels.relu_bias_grad(dh2, h2)
            dh1 = kernels.gemm(dz2, w2.T)
            kernels.gemm(h1.T, dz2, w2, alpha=-lr, beta=1.0)
            kernels.sgd_update(b2, g2, lr)
            dz1, g1 = kernels.relu_bias_grad(dh1, h1)
            kernels.gemm(xb.T, dz1, w1, alpha=-lr, beta=1.0)
            kernels.sgd_update(b1, g1, lr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="8 batches instead of an epoch")
    parser.add_argument("--adam", action="store_true",
                        help="Adam(1e-3) on both sides: the layers, the one call, PyTorch")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    from accelnet.kernels import _mkl
    if _mkl.library() is None:
        raise SystemExit("the mkl wheel is not installed: nothing to compare")
    started = time.time()
    import accelnet
    info = machine.collect(accelnet.get_backend(), quick=True)
    load = machine.OtherLoad()
    workload = workloads.mlp(args.quick)
    x, y = workloads.data(workload, workload.samples)
    ours = AccelnetTrainer(workload, x, y)
    real_fold = ours.model._fold_rate
    arms = {"openblas": ("0", lambda x: None, "0"), "mkl": ("1", lambda x: None, "0"),
            "mkl+fold": ("1", real_fold, "0"), "one-call": ("1", real_fold, "1")}
    from .peers_torch import TorchTrainer
    import numba
    others = {"torch": TorchTrainer(workload, x, y, "cpu", numba.get_num_threads()),  # as the suite
              "floor": HandWritten(x, y, [w.copy() for w in ours.model.get_weights()])}
    if args.adam:  # the gradients' ending of the one call; no fold, no hand-written SGD
        ours.model.compile(optimizer=accelnet.optimizers.Adam(1e-3),
                           loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        torch_trainer = others["torch"]
        torch_trainer.optimizer = torch_trainer.torch.optim.Adam(
            torch_trainer.model.parameters(), lr=1e-3, eps=1e-7)
        arms = {"layers": ("1", real_fold, "0"), "one-call": ("1", real_fold, "1")}
        others = {"torch": torch_trainer}
    runs = {name: [] for name in list(arms) + list(others)}

    def epoch(name):
        if name in others:
            os.environ[_mkl.ENV_VAR] = "1"
            trainer = others[name]
        else:
            os.environ[_mkl.ENV_VAR], ours.model._fold_rate, os.environ[dense_stack.ENV_VAR] = \
                arms[name]
            trainer = ours
        start = time.perf_counter()
        trainer.train(workload.samples)
        return time.perf_counter() - start

    with mkl_setting_restored(), _setting_restored(dense_stack.ENV_VAR):
        for name in runs:  # warm-up: compile, caches, the BLAS tuner's first probes
            epoch(name)
        for _ in range(args.rounds):
            for name in runs:
                runs[name].append(epoch(name))
    best_torch = min(runs["torch"])
    for name, times in runs.items():
        print(f"{name:<10} best {min(times):.3f} s  median {statistics.median(times):.3f} s  "
              f"best / torch best {min(times) / best_torch:.2f}x  runs "
              + " ".join(f"{t:.3f}" for t in times))
    results = {"schema": 1, "args": vars(args), "machine": info, "samples": workload.samples,
               "runs_s": runs, "best_over_torch": {k: min(v) / best_torch for k, v in runs.items()},
               "other_load": load.share()}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())
    kind = "mlp_arms_adam" if args.adam else "mlp_arms"
    path = os.path.join(args.out, f"{kind}_{stamp}_{host}.json")
    os.makedirs(args.out, exist_ok=True)
    report.write_json(path, results)
    print(f"wrote {path} (other processes used {results['other_load']:.1%} of the CPUs)")
    return path


if __name__ == "__main__":
    main()

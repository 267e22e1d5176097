"""Data-parallel bench: allreduce cost, compute/communication split, and a scaling model.

Run under MPI, e.g. `mpiexec -n 2 python -m bench --suite dist` (one rank works too):
- allreduce time of the MLP (669,706 parameters) and ConvNet (1,199,882) gradients as one
  flat float32 buffer, medians of repeated runs;
- one training step at global batch 128 split into compute (forward + backward) and
  communication, with the per-step allreduce and with per-layer overlap;
- a ring-allreduce scaling model from the measured compute time:
  t_comm(N) = 2(N-1)/N * bytes / bandwidth + 2(N-1) * latency,
  projected efficiency t_compute / (t_compute + t_comm) for N = 8, 64, 512 over NVLink
  (450 GB/s) and 200 Gb/s InfiniBand (25 GB/s), and the per-GPU batch that keeps >= 90 %.
Rank 0 prints the table and writes `bench/results/dist_<date>_<host>.json` (+ PNG).
"""
import datetime
import json
import math
import os
import platform
import socket
import statistics
import time

import numpy

FABRICS = {"NVLink (450 GB/s)": 450e9, "InfiniBand 200 Gb/s (25 GB/s)": 25e9}
LATENCY_S = 5e-6          # per ring step, assumed for both fabrics
RANKS = (8, 64, 512)
# Per-sample training FLOPs (forward 2*MACs, backward twice that).
GPU_SUSTAINED_FLOPS = 30e12  # assumed float32 rate of one modern data-centre GPU
RESNET50 = {"params": 25_557_032, "train_flops_per_sample": 3 * 4.1e9}


def mlp():
    import accelnet as an
    return an.Sequential([an.layers.Dense(512, activation="relu", input_shape=(784,)),
                          an.layers.Dense(512, activation="relu"),
                          an.layers.Dense(10, activation="softmax")])


def convnet():
    import accelnet as an
    return an.Sequential([an.layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
                          an.layers.Conv2D(64, (3, 3), activation="relu"),
                          an.layers.MaxPooling2D((2, 2)), an.layers.Flatten(),
                          an.layers.Dense(128, activation="relu"),
                          an.layers.Dense(10, activation="softmax")])


def train_flops_per_sample(name):
    if name == "mlp":
        macs = 784 * 512 + 512 * 512 + 512 * 10
    else:
        macs = 26 * 26 * 9 * 32 + 24 * 24 * 9 * 32 * 64 + 9216 * 128 + 128 * 10
    return 3 * 2 * macs


def _median_time(fn, repeat, comm):
    times = []
    for _ in range(repeat):
        comm.Barrier()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(name, build, repeat, comm):
    """Allreduce time, compute time and step times (no overlap / overlap) for one model."""
    from mpi4py import MPI

    import accelnet as an
    from accelnet import distributed
    an.random.seed(0)
    model = build()
    model.compile(optimizer=an.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    model.build()
    n_params = model.count_params()
    size, global_batch = comm.Get_size(), 128
    lo, hi = distributed.shard_bounds(global_batch)
    rng = numpy.random.default_rng(distributed.rank())
    x = rng.random((hi - lo,) + tuple(model.input_shape), dtype=numpy.float32)
    y = rng.integers(0, 10, hi - lo)
    flat = numpy.ones(n_params, numpy.float32)
    allreduce = _median_time(lambda: comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM), repeat, comm)

    def step(reducer):
        model._reducer = reducer
        model._train_step(x, y, hi - lo, global_batch)

    results = {"params": n_params, "bytes": 4 * n_params, "allreduce_s": allreduce,
               "ranks": size, "per_rank_batch": hi - lo}
    step(None)  # warm-up (JIT compile, allocations)
    results["compute_s"] = _median_time(lambda: step(None), repeat, comm)
    for label, overlap in (("step_s", False), ("step_overlap_s", True)):
        reducer = distributed.GradientReducer(model.layers, overlap=overlap) if size > 1 else None
        step(reducer)
        results[label] = _median_time(lambda: step(reducer), repeat, comm)
    model._reducer = None
    results["comm_in_step_s"] = max(results["step_s"] - results["compute_s"], 0.0)
    results["train_flops_per_sample"] = train_flops_per_sample(name)
    results["compute_per_sample_s"] = results["compute_s"] / max(hi - lo, 1)
    return results


def ring_allreduce_s(n, nbytes, bandwidth, latency=LATENCY_S):
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


def scaling_model(models):
    """Projected efficiency per model, fabric and rank count, at per-GPU batch 128, and the
    smallest per-GPU batch that keeps >= 90 % (no overlap: the conservative case)."""
    rows = []
    for name, m in models.items():
        per_sample = m["train_flops_per_sample"] / GPU_SUSTAINED_FLOPS
        for fabric, bw in FABRICS.items():
            for n in RANKS:
                comm = ring_allreduce_s(n, m["bytes"], bw)
                compute = 128 * per_sample
                rows.append({"model": name, "fabric": fabric, "gpus": n,
                             "comm_ms": 1e3 * comm, "compute_ms_at_128": 1e3 * compute,
                             "efficiency_at_128": compute / (compute + comm),
                             "min_batch_for_90pct": math.ceil(9 * comm / per_sample)})
    return rows


def run(args, out_dir="bench/results"):
    from mpi4py import MPI

    from accelnet import distributed
    distributed.init(force=True)
    comm = MPI.COMM_WORLD
    repeat = 5 if args.quick else max(args.repeat, 10)
    models = {"mlp": measure("mlp", mlp, repeat, comm),
              "convnet": measure("convnet", convnet, max(repeat // 2, 3), comm)}
    models["resnet50_sized"] = {"params": RESNET50["params"], "bytes": 4 * RESNET50["params"],
                                "train_flops_per_sample": RESNET50["train_flops_per_sample"]}
    if comm.Get_rank() != 0:
        return None
    report = {"suite": "dist", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": {"host": socket.gethostname(), "cpu": _cpu(), "cores": os.cpu_count(),
                          "python": platform.python_version(), "numpy": numpy.__version__,
                          "mpi": MPI.Get_library_version().splitlines()[0].strip(),
                          "ranks": comm.Get_size()},
              "assumptions": {"latency_s_per_ring_step": LATENCY_S, "fabrics_bytes_per_s": FABRICS,
                              "gpu_sustained_flops": GPU_SUSTAINED_FLOPS},
              "measured": {k: v for k, v in models.items() if "allreduce_s" in v},
              "scaling": scaling_model(models)}
    print_table(report)
    os.makedirs(out_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(out_dir, f"dist_{stamp}_{comm.Get_size()}ranks_{socket.gethostname()}.json")
    from accelnet import fileio
    fileio.write_text(path, json.dumps(report, indent=2))
    _plot(report, path[:-5] + ".png")
    print(f"wrote {path}")
    return report


def _cpu():
    from accelnet.backend import cpu_model
    return cpu_model()


def print_table(report):
    print(f"== dist: {report['machine']['ranks']} rank(s), {report['machine']['mpi']}")
    print(f"{'model':10} {'params':>10} {'allreduce ms':>13} {'compute ms':>11} "
          f"{'step ms':>8} {'step+overlap ms':>16}")
    for name, m in report["measured"].items():
        print(f"{name:10} {m['params']:>10,} {1e3 * m['allreduce_s']:>13.3f} "
              f"{1e3 * m['compute_s']:>11.2f} {1e3 * m['step_s']:>8.2f} {1e3 * m['step_overlap_s']:>16.2f}")
    print(f"scaling model (ring allreduce, latency {LATENCY_S * 1e6:.0f} us/step, GPU at "
          f"{GPU_SUSTAINED_FLOPS / 1e12:.0f} TFLOP/s sustained, per-GPU batch 128, no overlap):")
    print(f"{'model':15} {'fabric':32} {'GPUs':>5} {'comm ms':>8} {'eff@128':>8} {'batch for 90%':>14}")
    for r in report["scaling"]:
        print(f"{r['model']:15} {r['fabric']:32} {r['gpus']:>5} {r['comm_ms']:>8.3f} "
              f"{100 * r['efficiency_at_128']:>7.1f}% {r['min_batch_for_90pct']:>14,}")


def _plot(report, path):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return
    fig = Figure(figsize=(9, 3.6), layout="tight")
    FigureCanvasAgg(fig)
    for i, fabric in enumerate(FABRICS):
        ax = fig.add_subplot(1, 2, i + 1)
        for model in ("mlp", "convnet", "resnet50_sized"):
            rows = [r for r in report["scaling"] if r["model"] == model and r["fabric"] == fabric]
            ax.plot([r["gpus"] for r in rows], [100 * r["efficiency_at_128"] for r in rows],
                    marker="o", label=model)
        ax.axhline(90, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("GPUs")
        ax.set_ylabel("efficiency at per-GPU batch 128 (%)")
        ax.set_title(fabric, fontsize=9)
        ax.legend(fontsize=8)
    from accelnet import fileio
    with fileio.atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=80)

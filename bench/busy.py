"""`python -m bench --suite busy`: accelnet against PyTorch-CPU on a quiet machine and under a
competing load of known size, in one run (issue 13's "busy machine" mode).

The load is `--load-procs` processes (default: one per core) each spinning a pure-Python
loop, started and stopped by this suite. For each workload the contenders are set up once,
timed alternated on the quiet machine (best of `repeat`), then alternated again while the
load runs. Reported per workload: each contender's quiet and busy seconds, its slowdown
(busy / quiet), and the accelnet / PyTorch ratio quiet and busy. Goal (issue 13): under load
accelnet slows down no more than PyTorch (busy ratio <= 1.0 is the stronger target).
Writes bench/results/busy_<time>_<host>.json.
"""
import multiprocessing
import os
import socket
import time

import accelnet as an

from . import machine, report, timing, workloads
from .train_bench import BATCH, measure, trainer_classes
from .workloads import Unavailable


def _spin(stop):
    x = 0
    while not stop.is_set():
        for _ in range(10000):
            x += 1


class CompetingLoad:
    """`procs` processes spinning on the CPU while the block runs."""

    def __init__(self, procs):
        self.procs = procs

    def __enter__(self):
        ctx = multiprocessing.get_context("spawn")
        self.stop = ctx.Event()
        self.workers = [ctx.Process(target=_spin, args=(self.stop,), daemon=True)
                        for _ in range(self.procs)]
        for w in self.workers:
            w.start()
        time.sleep(0.5)  # let them reach the scheduler
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for w in self.workers:
            w.join(5)
            if w.is_alive():
                w.terminate()


def _time(trainers, repeat, samples):
    runs = timing.alternate(trainers, repeat, lambda t: measure(t, samples))
    return {name: min(s for s, _, _ in r) for name, r in runs.items()}


def run(args, log=print):
    started = time.time()
    procs = args.load_procs or os.cpu_count() or 1
    names = ["mlp", "cnn"] + ([] if args.quick else ["seed004_cnn", "cifar_cnn"])
    rows = []
    for name in names:
        workload = getattr(workloads, name)(args.quick)
        x, y = workloads.data(workload, workload.samples)
        trainers = {}
        for contender, cls in trainer_classes(["torch"]).items():
            try:
                trainers[contender] = cls(workload, x, y, None, None)
                trainers[contender].train(BATCH)
            except Unavailable as exc:
                log(f"busy: {name} {contender} unavailable: {exc}")
        quiet = _time(trainers, args.repeat, workload.samples)
        log(f"busy: {name} quiet {quiet}; now with {procs} competing process(es)")
        with CompetingLoad(procs):
            busy = _time(trainers, args.repeat, workload.samples)
        row = {"workload": name, "samples": workload.samples, "quiet_s": quiet, "busy_s": busy,
               "slowdown": {k: busy[k] / quiet[k] for k in quiet}}
        if "torch" in quiet:
            row["ratio_quiet"] = quiet["accelnet"] / quiet["torch"]
            row["ratio_busy"] = busy["accelnet"] / busy["torch"]
        log(f"busy: {name} accelnet/torch quiet {row.get('ratio_quiet', float('nan')):.2f}x, "
            f"busy {row.get('ratio_busy', float('nan')):.2f}x; slowdown "
            + ", ".join(f"{k} {v:.2f}x" for k, v in row["slowdown"].items()))
        rows.append(row)
    result = {"schema": 1, "suite": "busy", "args": vars(args), "load_procs": procs,
              "machine": machine.collect(an.get_backend(), True), "rows": rows,
              "elapsed_s": time.time() - started}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    path = os.path.join(args.out, f"busy_{stamp}_{socket.gethostname()}.json")
    report.write_json(path, result)
    log(f"wrote {path}")
    return 0

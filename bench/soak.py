"""`python -m bench --suite soak`: resident memory over long runs (issue 14, item 6).

Trains the MLP for 50 epochs and the Keras mnist_cnn ConvNet for 5 (with `--quick`: 5 and
2, on small data), reads the process's RSS after every epoch, and reports the growth from
the end of epoch 2 (after warm-up: compiled kernels, BLAS buffers, allocator pools) to the
last epoch. Flat means growth within FLAT_SLACK_MIB. Writes bench/results/soak_<time>_<host>.json.
"""
import json
import os
import socket
import time

import accelnet as an

from . import machine, memory, report, workloads
from .train_bench import AccelnetTrainer

MIB = 2 ** 20
FLAT_SLACK_MIB = 8.0


def _soak(workload, n, epochs, log):
    x, y = workloads.data(workload, n, "synthetic")
    trainer = AccelnetTrainer(workload, x, y)
    memory.settle()
    after = []
    record = an.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: after.append(memory.rss()))
    start = time.perf_counter()
    trainer.model.fit(trainer.x, trainer.y, batch_size=128, epochs=epochs, verbose=0,
                      callbacks=[record])
    growth = (after[-1] - after[1]) / MIB
    log(f"soak {workload.name}: {epochs} epochs of {n} samples, RSS {after[1] / MIB:.0f} -> "
        f"{after[-1] / MIB:.0f} MiB from epoch 2 ({growth:+.1f} MiB)")
    return {"workload": workload.name, "samples": n, "epochs": epochs,
            "seconds": time.perf_counter() - start,
            "rss_after_epoch_mib": [r / MIB for r in after],
            "growth_epoch2_to_last_mib": growth, "flat": growth <= FLAT_SLACK_MIB}


def run(args, log=print):
    started = time.time()
    load = machine.OtherLoad()
    mlp_epochs, cnn_epochs = (5, 2) if args.quick else (50, 5)
    rows = [_soak(workloads.mlp(args.quick), 1024 if args.quick else 10000, mlp_epochs, log),
            _soak(workloads.cnn(args.quick), 256 if args.quick else 2560, cnn_epochs, log)]
    result = {"schema": 1, "suite": "soak", "args": vars(args),
              "machine": machine.collect(an.get_backend(), True), "rows": rows,
              "flat_slack_mib": FLAT_SLACK_MIB, "other_load": load.share(),
              "elapsed_s": time.time() - started}
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    path = os.path.join(args.out, f"soak_{stamp}_{socket.gethostname()}.json")
    report.write_json(path, result)
    log(f"wrote {path}{report.load_note(result['other_load'])}")
    return 0 if all(r["flat"] for r in rows) else 1

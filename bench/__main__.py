"""Command line: python -m bench [--suite kernels|train|all|dist|gpu|soak|busy] [--quick] [--peers torch,numpy]
[--out DIR] [--repeat N] [--data synthetic|fashion]. Run from the repository root."""
import argparse
import os
import sys
import time

import accelnet as an

from . import gemm_bench, kernels_bench, machine, report, train_bench

PEERS = ("torch", "numpy")
DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def peer_list(text):
    names = [p.strip().lower() for p in text.split(",") if p.strip() and p.strip() != "none"]
    bad = [p for p in names if p not in PEERS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown peer(s) {', '.join(bad)}; choose from "
                                         f"{', '.join(PEERS)} (or 'none')")
    return names


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description="accelnet bench: Numba kernels "
                                "against their references, training against PyTorch and NumPy.")
    p.add_argument("--suite", choices=("kernels", "train", "all", "dist", "gpu", "soak", "busy"), default="all",
                   help="'dist' (data-parallel, under mpiexec), 'gpu' (the GPU check, "
                        "bench/gpu_check.sh), 'soak' (RSS over 50 MLP / 5 ConvNet epochs) and "
                        "'busy' (quiet vs competing-load ratios) are not part of 'all'")
    p.add_argument("--load-procs", type=positive, default=None,
                   help="busy suite: competing processes (default: one per core)")
    p.add_argument("--quick", action="store_true",
                   help="small shapes and few batches: about a minute on 2 cores (CI)")
    p.add_argument("--peers", type=peer_list, default=list(PEERS),
                   help="comma-separated peers for the train suite: torch,numpy (default both; 'none')")
    p.add_argument("--out", default=DEFAULT_OUT, help="directory for the JSON and PNG (default bench/results)")
    p.add_argument("--repeat", type=positive, default=None,
                   help="train runs per contender, best counts (default 3; 1 with --quick)")
    p.add_argument("--data", choices=("synthetic", "fashion"), default="synthetic",
                   help="random MNIST-shaped data (default) or the real Fashion-MNIST")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    return args


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv=None):
    args = parse(argv)
    if args.suite == "dist":
        from . import dist_bench
        dist_bench.run(args, args.out)
        return 0
    if args.suite == "gpu":
        from . import gpu_check
        return gpu_check.run(args)
    if args.suite == "soak":
        from . import soak
        return soak.run(args)
    if args.suite == "busy":
        from . import busy
        return busy.run(args)
    started = time.time()
    whole = machine.OtherLoad()
    backend = an.get_backend()
    info = machine.collect(backend, args.quick)
    print(machine.line(info), flush=True)
    results = {"schema": 1, "args": vars(args), "machine": info, "kernels": None, "train": None}
    targets = []
    if args.suite in ("kernels", "all"):
        load = machine.OtherLoad()
        results["kernels"] = kernels_bench.run(backend, args.quick, log)
        results["other_load_kernels"] = load.share()
        targets += kernels_bench.targets(results["kernels"])
        print(f"\nKernels: Numba form vs reference, float32, median of alternated runs"
              f"{report.load_note(results['other_load_kernels'])}\n"
              + report.kernels_table(results["kernels"]), flush=True)
        if backend.name == "cpu":
            results["gemm"] = gemm_bench.run(args.quick)
            targets += gemm_bench.targets(results["gemm"])
            print("\n" + gemm_bench.table(results["gemm"]), flush=True)
    if args.suite in ("train", "all"):
        load = machine.OtherLoad()
        results["train"] = train_bench.run(backend, info, args.quick, args.peers, args.repeat,
                                           args.data, log)
        results["other_load_train"] = load.share()
        targets += results["train"]["targets"]
        print(f"\nTraining: batch 128, float32, {args.data} data, best of {args.repeat}, "
              f"scaled to a 60,000-sample epoch; accelnet/peer < 1 means accelnet is faster"
              f"{report.load_note(results['other_load_train'])}\n"
              + report.train_table(results["train"]["rows"]), flush=True)
        if results["train"].get("step_profile"):
            from . import step_profile
            print("\nStep profile (one batch of 128; per layer forward/backward)\n"
                  + step_profile.table(results["train"]["step_profile"]), flush=True)
        print("\nMemory\n" + report.memory_lines(results["train"]["memory"]), flush=True)
        gpu = results["train"]["gpu_over_cpu"]
        if gpu:
            print(f"accelnet MLP batch 1024: GPU {gpu['gpu_s']:.2f} s, CPU backend "
                  f"{gpu['cpu_s']:.2f} s for {gpu['samples']} samples ({gpu['speedup']:.1f}x)")
    results["targets"] = targets
    info["numba_threading_layer"] = machine.numba_layer()
    print("\nTargets\n" + report.targets_table(targets))
    results["elapsed_s"] = time.time() - started
    results["other_load"] = whole.share()
    path = os.path.join(args.out, report.filename(backend.name, info["hostname"], started))
    report.write_json(path, results)
    chart = report.write_chart(path[:-len(".json")] + ".png", results)
    print(f"\nwrote {path}" + (f" and {os.path.basename(chart)}" if chart else "")
          + f" ({results['elapsed_s']:.0f} s{report.load_note(results['other_load'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

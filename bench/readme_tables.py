"""The README's bench tables, generated from a bench JSON (never copied by hand).

    python -m bench.readme_tables bench/results/bench_<time>_<backend>_<host>.json

rewrites the blocks between `<!-- bench:kernels -->` / `<!-- bench:gemm -->` /
`<!-- bench:train -->` (from a bench JSON), `<!-- bench:busy -->` (from a busy-suite JSON),
`<!-- bench:fashion -->` (from `bench.fashion_recipes`' JSON) or `<!-- bench:gpu -->` (from a
GPU check's results.json) and their closing `<!-- /bench:... -->`
markers in README.md. tests/test_readme_tables.py checks that
the README's blocks equal what this renders from the JSON each block names.
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = {"torch": "PyTorch-CPU", "numpy": "plain NumPy"}


def _machine(results, path, load_key):
    m = results["machine"]
    load = results.get(load_key, 0.0)
    quiet = "quiet" if load < 0.05 else f"other processes used {load:.0%} of the CPUs"
    return (f"`{os.path.relpath(path, ROOT)}`: {m['cpu_model']}, {m['logical_cores']} cores, "
            f"{m['blas']} sgemm {m['sgemm_gflops']:.0f} GFLOP/s, {quiet}; git "
            f"{m['git_commit'][:7]}.")


def _defaults(kernel, measured=None):
    """(CPU default, GPU default) of a kernel: the form the bench recorded for this case
    (`measured`, where the JSON has it), else the table's CPU default."""
    from accelnet.kernels import _dispatch
    cpu = _dispatch.DEFAULTS[kernel]["cpu"]
    if measured is not None:
        cpu = "reference" if measured == "reference" else "numba"
    if (kernel, "cpu") in _dispatch.SHAPE_RULES:
        cpu += " (shape rule)"
    return cpu, _dispatch.DEFAULTS[kernel]["gpu"]


def kernels_block(results, path):
    lines = [f"Measured by `python -m bench` ({_machine(results, path, 'other_load_kernels')}) "
             f"float32, median of alternated runs:", "",
             "| kernel | case | reference ms | Numba CPU ms | speedup | CPU default | GPU default |",
             "|---|---|---|---|---|---|---|"]
    for row in results["kernels"] or []:
        if "error" in row:
            lines.append(f"| {row['kernel']} | {row['case']} | error: {row['error'][:60]} | | | | |")
            continue
        cpu, gpu = _defaults(row["kernel"], row.get("default"))
        lines.append(f"| {row['kernel']} | {row['case']} | {row['reference']['median_s'] * 1e3:.3g} "
                     f"| {row['numba']['median_s'] * 1e3:.3g} | {row['speedup']:.2f}× | {cpu} | {gpu} |")
    return "\n".join(lines)


def train_block(results, path):
    rows = results["train"]["rows"]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    lines = [f"Measured by `python -m bench` ({_machine(results, path, 'other_load_train')}) "
             f"60,000-sample epoch at batch 128, best of {results['args']['repeat']}, contenders "
             f"alternated; accelnet / peer < 1 means accelnet is faster:", "",
             "| workload | accelnet s/epoch | PyTorch-CPU s/epoch | plain NumPy s/epoch "
             "| accelnet / PyTorch | accelnet / NumPy |",
             "|---|---|---|---|---|---|"]
    for w in workloads:
        by = {r["contender"]: r for r in rows if r["workload"] == w}
        own = by.get("accelnet", {}).get("seconds_per_epoch")

        def cell(name):
            r = by.get(name)
            return f"{r['seconds_per_epoch']:.3g}" if r and "seconds_per_epoch" in r else "–"

        def ratio(name):
            r = by.get(name)
            if own is None or not r or "seconds_per_epoch" not in r:
                return "–"
            return f"**{own / r['seconds_per_epoch']:.2f}×**"
        lines.append(f"| {w} | {cell('accelnet')} | {cell('torch')} | {cell('numpy')} "
                     f"| {ratio('torch')} | {ratio('numpy')} |")
    return "\n".join(lines)


def busy_block(results, path):
    m = results["machine"]
    lines = [f"Measured by `python -m bench --suite busy` (`{os.path.relpath(path, ROOT)}`: "
             f"{m['cpu_model']}, {m['logical_cores']} cores; the load: {results['load_procs']} "
             f"processes spinning in pure Python; best of {results['args']['repeat']}, "
             f"contenders alternated; git {m['git_commit'][:7]}):", "",
             "| workload | accelnet / PyTorch, quiet | accelnet / PyTorch, busy "
             "| accelnet slowdown | PyTorch slowdown |",
             "|---|---|---|---|---|"]
    for row in results["rows"]:
        slow = row["slowdown"]
        lines.append(f"| {row['workload']} | {row.get('ratio_quiet', float('nan')):.2f}× "
                     f"| **{row.get('ratio_busy', float('nan')):.2f}×** "
                     f"| {slow.get('accelnet', float('nan')):.2f}× "
                     f"| {slow.get('torch', float('nan')):.2f}× |")
    return "\n".join(lines)


def gemm_block(results, path):
    gemm = results.get("gemm") or {"rows": []}
    if not gemm["rows"]:
        return (f"Measured by `python -m bench` ({_machine(results, path, 'other_load_kernels')}) "
                f"no MKL there: {gemm.get('note', 'not measured')}.")
    lines = [f"Measured by `python -m bench` ({_machine(results, path, 'other_load_kernels')}) "
             f"`kernels.gemm` by {gemm['mkl']} against NumPy's matmul, float32, the MLP's "
             f"products at batch 128, best of alternated runs:", "",
             "| product (m, k, n) | NumPy ms | MKL ms | speedup |", "|---|---|---|---|"]
    for row in gemm["rows"] + [dict(gemm["total"], case="all five (one MLP step)")]:
        lines.append(f"| {row['case']} | {row['numpy_ms']:.3f} | {row['mkl_ms']:.3f} "
                     f"| {row['speedup']:.2f}× |")
    return "\n".join(lines)


def gpu_block(results, path):
    """The GPU check: device and versions, the gpu tests and smoke runs, training ms/step
    against PyTorch CUDA, and the synced step profile's accelnet/torch ratios."""
    probe, versions = results["probe"], results["probe"]["versions"]["value"]
    cupy = probe["cupy"]["value"]
    tests, smoke = results["pytest_gpu"], results["smoke"]
    smoke_ok = sum(1 for v in smoke.values() if isinstance(v, dict) and v.get("ok"))
    smoke_all = sum(1 for v in smoke.values() if isinstance(v, dict) and "ok" in v)
    failed, errors, skipped = int(tests["failures"]), int(tests["errors"]), int(tests["skipped"])
    passed = int(tests["tests"]) - failed - errors - skipped
    lines = [f"Measured by `python -m bench --suite gpu` (`{os.path.relpath(path, ROOT)}`): "
             f"{cupy['device']} (compute {cupy['cc']}), driver CUDA {cupy['driver']}, CuPy "
             f"{cupy['cupy']} (runtime {cupy['runtime']}), "
             f"numba-cuda {versions.get('numba-cuda', '-')}, "
             f"NumPy {versions.get('numpy', '-')}, PyTorch {versions.get('torch', '-')}. "
             f"`pytest -m gpu`: {passed} passed, {failed} failed, {errors} errors, "
             f"{skipped} skipped; smoke runs on the device: {smoke_ok} of {smoke_all} ok.", "",
             "| model | batch | contender | ms/step | / PyTorch CUDA |", "|---|---|---|---|---|"]
    for row in results["train_bench"]["rows"]:
        ratio = f"{row['accelnet_over_torch']:.2f}×" if "accelnet_over_torch" in row else "-"
        lines.append(f"| {row['model']} | {row['batch']} | {row['lib']} | {row['ms_per_step']:.2f} "
                     f"| {ratio} |")
    profile = results.get("step_profile") or {}
    if profile and "missing" not in profile:
        parts = []
        for name, prof in profile.items():
            acc = prof.get("accelnet", {})
            parts.append(f"{name} loss {acc.get('loss_ms', 0):.2f} ms, optimizer "
                         f"{acc.get('optimizer_ms', 0):.2f} ms, "
                         f"step {acc.get('step_ms', 0):.2f} ms")
        lines += ["", "Step profile at batch 128 (each part synced; default kernels): "
                  + "; ".join(parts) + "."]
    return "\n".join(lines)


FASHION_RECIPES = {"mlp": "MLP 784-512-512-10, Dropout 0.2, Adam 1e-3, batch 128",
                   "cnn": "Keras ConvNet (issue recipe), Adam 1e-3, batch 128"}


def fashion_block(results, path):
    """`python -m bench.fashion_recipes`: test accuracy and seconds per epoch, both libraries."""
    m = results["machine"]
    lines = [f"Fashion-MNIST, the full 60,000/10,000 split (`python -m bench.fashion_recipes`, "
             f"same run for both libraries, `{os.path.relpath(path, ROOT)}`: {m['cpu_model']}, "
             f"{m['logical_cores']} cores; git {m['git_commit'][:7]}):", "",
             "| recipe | epochs | accelnet test acc | s/epoch (each epoch) | PyTorch-CPU test acc "
             "| s/epoch (each epoch) | accelnet / PyTorch |", "|---|---|---|---|---|---|---|"]
    res = results["results"]
    for name, label in FASHION_RECIPES.items():
        ours, theirs = res.get(f"{name}/accelnet"), res.get(f"{name}/torch")
        if not ours or not theirs:
            continue
        each = lambda r: ", ".join(f"{s:.2f}" for s in r["epoch_s"])  # noqa: E731
        lines.append(f"| {label} | {ours['epochs']} | {ours['test_accuracy']:.4f} | "
                     f"{ours['s_per_epoch']:.2f} ({each(ours)}) | {theirs['test_accuracy']:.4f} | "
                     f"{theirs['s_per_epoch']:.2f} ({each(theirs)}) | "
                     f"{ours['s_per_epoch'] / theirs['s_per_epoch']:.2f}× |")
    return "\n".join(lines)


BLOCKS = {"kernels": kernels_block, "gemm": gemm_block, "train": train_block, "busy": busy_block,
          "gpu": gpu_block, "fashion": fashion_block}
PATTERN = re.compile(r"<!-- bench:(\w+) (\S+) -->\n(.*?)<!-- /bench:\1 -->", re.S)


def render(name, json_path):
    with open(os.path.join(ROOT, json_path)) as f:
        results = json.load(f)
    return BLOCKS[name](results, os.path.join(ROOT, json_path))


def kinds(json_path):
    """The blocks a JSON can fill: a GPU check's results.json the gpu block, a busy-suite
    file the busy table, a bench file those of the suites it ran (`--suite train` leaves
    the kernel and GEMM tables as they were)."""
    if os.path.basename(os.path.dirname(json_path)).startswith("gpu_check_"):
        return {"gpu"}
    for prefix in ("busy", "fashion"):
        if os.path.basename(json_path).startswith(prefix + "_"):
            return {prefix}
    with open(os.path.join(ROOT, json_path)) as f:
        results = json.load(f)
    return {name for name in ("kernels", "gemm", "train") if results.get(name)}


def update(readme_text, json_path):
    """README text with the bench blocks of `json_path`'s kind re-rendered from it."""
    def block(m):
        if m.group(1) not in kinds(json_path):
            return m.group(0)
        return f"<!-- bench:{m.group(1)} {json_path} -->\n{render(m.group(1), json_path)}\n" \
               f"<!-- /bench:{m.group(1)} -->"
    return PATTERN.sub(block, readme_text)


def blocks(readme_text):
    """[(name, json path, text)] of the README's bench blocks."""
    return [(m.group(1), m.group(2), m.group(3).rstrip("\n")) for m in PATTERN.finditer(readme_text)]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    json_path = os.path.relpath(os.path.abspath(argv[0]), ROOT)
    readme = os.path.join(ROOT, "README.md")
    with open(readme) as f:
        text = f.read()
    new = update(text, json_path)
    tmp = readme + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, readme)
    print(f"README.md: {len(blocks(new))} bench blocks from {json_path}")


if __name__ == "__main__":
    main()

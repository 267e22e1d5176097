"""Output: plain-text tables on stdout, one JSON file with everything, a PNG bar chart."""
import json
import re
import time

from accelnet.fileio import atomic_write


def table(headers, rows):
    """Columns padded to width; numbers right-aligned."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    numeric = re.compile(r"^[-+]?[\d.]+(e[-+]?\d+)?[x%]?$|^-$")

    def fmt(row):
        return "  ".join(c.rjust(w) if numeric.match(c) else c.ljust(w)
                         for c, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in cells])


def _ms(s):
    return f"{s * 1e3:.3g}" if s is not None else "-"


def _num(v, spec=".2f", suffix=""):
    return "-" if v is None else f"{v:{spec}}{suffix}"


def load_note(share):
    """A warning when other processes took a noticeable share of the CPUs meanwhile."""
    return "" if share < 0.05 else f"; other processes used {share:.0%} of the CPUs meanwhile"


def kernels_table(rows):
    headers = ["kernel", "case", "ref ms [min-max]", "numba ms [min-max]", "1st call ref/numba ms",
               "runs", "speedup", "best/best", ">=2x", "match"]
    out = []
    for r in rows:
        if "error" in r:
            out.append([r["kernel"], r["case"], "ERROR: " + r["error"][:70], "", "", "", "-", "-", "-", "-"])
            continue
        ref, nb = r["reference"], r["numba"]
        out.append([r["kernel"], r["case"],
                    f"{_ms(ref['median_s'])} [{_ms(ref['min_s'])}-{_ms(ref['max_s'])}]",
                    f"{_ms(nb['median_s'])} [{_ms(nb['min_s'])}-{_ms(nb['max_s'])}]",
                    f"{_ms(ref['first_call_s'])}/{_ms(nb['first_call_s'])}", ref["runs"],
                    f"{r['speedup']:.2f}x", f"{r['speedup_best']:.2f}x", "pass" if r["pass"] else "FAIL",
                    "yes" if r["match"] else f"NO ({r['max_abs_diff']:.2g})"])
    return table(headers, out)


def train_table(rows):
    headers = ["workload", "contender", "device", "s/epoch", "samples/s", "GFLOP/s", "% sgemm",
               "peak MiB", "accelnet/peer", "warm-up s"]
    out = []
    for r in rows:
        if "unavailable" in r:
            out.append([r["workload"], r["contender"], "-", "unavailable: " + r["unavailable"],
                        "", "", "", "", "", ""])
            continue
        peak = r["peak_device_mib"] if r.get("peak_device_mib") is not None else r["peak_host_mib"]
        frac = r.get("sgemm_fraction")
        out.append([r["workload"], r["contender"], r["device"], _num(r["seconds_per_epoch"]),
                    _num(r["samples_per_s"], ".0f"), _num(r["gflops"], ".1f"),
                    _num(frac and frac * 100, ".0f", "%"), _num(peak, ".0f"),
                    _num(r.get("accelnet_over_peer"), ".2f", "x"), _num(r["warmup_s"])])
    return table(headers, out)


def memory_lines(mem):
    rss = ", ".join(f"{v:.0f}" for v in mem["mlp_rss_after_epoch_mib"])
    return (f"accelnet mlp, {mem['mlp_samples']} samples x 5 epochs: RSS after each epoch "
            f"{rss} MiB; growth epoch 2->5 {mem['mlp_growth_epoch2_to_5_mib']:+.1f} MiB\n"
            f"accelnet cnn peak (above start): batch 128 {mem['cnn_peak_mib_batch128']:.0f} MiB, "
            f"batch 1024 {mem['cnn_peak_mib_batch1024']:.0f} MiB, ratio {mem['cnn_batch_ratio']:.2f}x")


def targets_table(targets):
    out = []
    for t in targets:
        goal = f"{t['op']} {t['target']:g}" + (f" (stretch {t['stretch']:g})" if t.get("stretch") else "")
        verdict = "PASS" if t["pass"] else "FAIL"
        if t.get("stretch_pass"):
            verdict += " +stretch"
        out.append([t["name"], _num(t["value"], ".2f"), goal, verdict])
    return table(["target", "value", "goal", "result"], out)


def filename(backend, hostname, when=None):
    """bench_<YYYYmmdd-HHMMSS>_<backend>_<hostname>.json (hostname made file-safe)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return f"bench_{stamp}_{backend}_{re.sub(r'[^A-Za-z0-9.-]', '_', hostname)}.json"


def write_json(path, results):
    with atomic_write(path, "w") as f:
        json.dump(results, f, indent=1, default=float)
        f.write("\n")


def write_chart(path, results):
    """Bar chart of kernel speedups and train seconds/epoch; None when matplotlib is absent."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    kernels = [r for r in results.get("kernels") or [] if "speedup" in r]
    train = [r for r in (results.get("train") or {}).get("rows", []) if "seconds_per_epoch" in r]
    panels = [p for p in (kernels, train) if p]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False)
    axes = list(axes[0])
    if kernels:
        ax = axes.pop(0)
        ax.barh([f"{r['kernel']}\n{r['case']}" for r in kernels], [r["speedup"] for r in kernels],
                color=["tab:green" if r["pass"] else "tab:red" for r in kernels])
        ax.axvline(2.0, color="k", linestyle="--", label="2x target")
        ax.set_xlabel("speedup (reference / numba)")
        ax.tick_params(axis="y", labelsize=7)
        ax.invert_yaxis()
        ax.legend()
    if train:
        ax = axes.pop(0)
        ax.bar([f"{r['workload']}\n{r['contender']}" for r in train],
               [r["seconds_per_epoch"] for r in train],
               color=["tab:blue" if r["contender"] == "accelnet" else "tab:gray" for r in train])
        ax.set_ylabel("seconds per 60k-sample epoch (lower is better)")
        ax.set_yscale("log")
    fig.suptitle(results["machine"]["backend_describe"][:110], fontsize=8)
    fig.tight_layout()
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
    return path

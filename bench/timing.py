"""Timers: one call (device-synchronized), contenders interleaved, median and spread."""
import statistics
import time


def clock(fn, sync=None):
    """Seconds for one call of `fn`, with `sync()` (device wait) before and after."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


def alternate(contenders, runs, measure):
    """Measure each of {name: fn} `runs` times interleaved (a, b, a, b, ...), so a slow
    phase of a shared machine hits every contender alike: {name: [measure(fn), ...]}."""
    results = {name: [] for name in contenders}
    for _ in range(runs):
        for name, fn in contenders.items():
            results[name].append(measure(fn))
    return results


def spread(seconds):
    """median, min, max and quartiles of a list of timings (seconds)."""
    s = sorted(seconds)
    if len(s) >= 2:
        q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
    else:
        q1 = q3 = s[0]
    return {"median_s": statistics.median(s), "min_s": s[0], "max_s": s[-1],
            "q1_s": q1, "q3_s": q3, "runs": len(s)}

"""The CPU GEMM `kernels.gemm` runs (Intel MKL where installed, kernels/_mkl.py) against
NumPy's matmul, at the MLP's five float32 products per step (batch 128; the weight
gradients as Dense computes them, from transposed views), alternated, best of N. MKL is the
default only where this shows it faster: the kernel rule."""
import contextlib
import os
import re
import time

import numpy

from accelnet.kernels import _mkl, _workers

# (label, (m, k, n), a transposed, b transposed): Dense's products for 784-512-512-10
SHAPES = [("forward 784->512", (128, 784, 512), False, False),
          ("forward 512->512", (128, 512, 512), False, False),
          ("weight grad 784x512", (784, 128, 512), True, False),
          ("weight grad 512x512", (512, 128, 512), True, False),
          ("input grad 512->512", (128, 512, 512), False, True)]


def _operands(rng, shape, trans_a, trans_b):
    m, k, n = shape
    a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=numpy.float32)
    b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=numpy.float32)
    return (a.T if trans_a else a), (b.T if trans_b else b)


def _best(fn, runs):
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@contextlib.contextmanager
def mkl_setting_restored():
    """A context in which the caller may flip ACCELNET_MKL; it is left as it was after."""
    previous = os.environ.get(_mkl.ENV_VAR)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_mkl.ENV_VAR, None)
        else:
            os.environ[_mkl.ENV_VAR] = previous


def run(quick, rounds=None):
    """{'mkl': version or None, 'rows': [{case, numpy_ms, mkl_ms, speedup}], 'total': ...};
    rows only where MKL is installed."""
    if _mkl.library() is None:
        return {"mkl": None, "rows": [], "note": "the mkl wheel is not installed"}
    rounds = rounds or (3 if quick else 10)
    rng = numpy.random.default_rng(0)
    rows = []
    with mkl_setting_restored():
        for label, shape, trans_a, trans_b in SHAPES:
            a, b = _operands(rng, shape, trans_a, trans_b)
            out = numpy.empty((shape[0], shape[2]), numpy.float32)
            best = {"numpy": float("inf"), "mkl": float("inf")}
            for _ in range(rounds):  # alternated: a busy phase hits both
                for name in best:
                    os.environ[_mkl.ENV_VAR] = "1" if name == "mkl" else "0"
                    best[name] = min(best[name], _best(lambda: _workers.gemm(a, b, out), 20))
            rows.append({"case": f"{label} {shape}", "numpy_ms": best["numpy"] * 1e3,
                         "mkl_ms": best["mkl"] * 1e3, "speedup": best["numpy"] / best["mkl"]})
    total = {key: sum(r[key] for r in rows) for key in ("numpy_ms", "mkl_ms")}
    total["speedup"] = total["numpy_ms"] / total["mkl_ms"]
    return {"mkl": version(), "rows": rows, "total": total}


def version():
    """MKL's version string, or None."""
    lib = _mkl.library()
    if lib is None:
        return None
    import ctypes
    buffer = ctypes.create_string_buffer(256)
    lib[0].MKL_Get_Version_String(buffer, len(buffer))
    text = buffer.value.decode(errors="replace").strip()
    match = re.search(r"Version ([0-9.]+)", text)
    return f"Intel MKL {match.group(1)}" if match else text


def table(result):
    if not result["rows"]:
        return f"GEMM: NumPy's matmul only ({result.get('note')})"
    lines = [f"GEMM (kernels.gemm), {result['mkl']} vs NumPy matmul, best of alternated runs:"]
    for r in result["rows"] + [dict(result["total"], case="the MLP step's five")]:
        lines.append(f"  {r['case']:<42} numpy {r['numpy_ms']:.3f} ms  mkl {r['mkl_ms']:.3f} ms"
                     f"  {r['speedup']:.2f}x")
    return "\n".join(lines)


def targets(result):
    """MKL, the default where installed, must beat NumPy's matmul at every MLP shape."""
    if not result["rows"]:
        return []
    worst = min(r["speedup"] for r in result["rows"])
    return [{"name": "gemm: MKL (default where installed) >= NumPy matmul (worst MLP shape)",
             "value": worst, "op": ">=", "target": 1.0, "stretch": None, "pass": worst >= 1.0}]

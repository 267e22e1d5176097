"""What the bench ran on: CPU, BLAS and its measured sgemm rate, versions, threads, git."""
import datetime
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time

import numpy

from accelnet.backend import cpu_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sgemm_gflops(xp, n, reps=3, sync=None):
    """Best-of-`reps` float32 n×n matmul rate with array module `xp`, GFLOP/s."""
    rng = numpy.random.default_rng(0)
    a, b = (xp.asarray(rng.standard_normal((n, n), dtype=numpy.float32)) for _ in range(2))
    out = a @ b  # warm-up: thread pool start, page faults
    best = float("inf")
    for _ in range(reps):
        if sync:
            sync()
        start = time.perf_counter()
        xp.matmul(a, b, out=out)
        if sync:
            sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def blas():
    """(library description, BLAS thread count) as threadpoolctl sees NumPy's BLAS."""
    try:
        from threadpoolctl import threadpool_info
        libs = [i for i in threadpool_info() if i.get("user_api") == "blas"
                and "numpy" in i.get("filepath", "")] or \
               [i for i in threadpool_info() if i.get("user_api") == "blas"]
        if libs:
            i = libs[0]
            return (f"{i['internal_api']} {i.get('version') or ''} "
                    f"({i.get('architecture') or '?'}, {i.get('threading_layer', '?')})",
                    i.get("num_threads"))
    except ImportError:
        pass
    try:
        info = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name')} {info.get('version', '')}", None
    except Exception:
        return "unknown", None


def version(module, *distributions):
    """Version of a module without importing it (importing torch would load its OpenMP
    runtime into the kernel timings): from sys.modules, else the installed metadata."""
    if module in sys.modules and hasattr(sys.modules[module], "__version__"):
        return sys.modules[module].__version__
    for dist in distributions or (module,):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


THREAD_ENV = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "OPENBLAS_NUM_THREADS",
              "OPENBLAS_THREAD_TIMEOUT", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
              "NUMBA_THREADING_LAYER", "ACCELNET_BACKEND", "ACCELNET_KERNELS",
              "ACCELNET_CONV_WORKSPACE_MB", "ACCELNET_NUM_THREADS", "ACCELNET_CHUNK_KB")


def numba_layer():
    """The threading layer Numba actually uses (known once a parallel kernel has run)."""
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return f"not started yet (config: {numba.config.THREADING_LAYER})"


def git(*args):
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def collect(backend, quick):
    """Everything about the machine, as a JSON-able dict (measures sgemm: a few seconds)."""
    import numba
    blas_name, blas_threads = blas()
    n = 512 if quick else 2048
    load = OtherLoad()
    rate = sgemm_gflops(numpy, n, reps=3 if quick else 5)
    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "blas": blas_name,
        "blas_threads": blas_threads,
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": numba_layer(),
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "sgemm_n": n,
        "sgemm_gflops": rate,
        "sgemm_other_load": load.share(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "cupy": version("cupy", "cupy-cuda12x", "cupy-cuda13x", "cupy"),
        "torch": version("torch"),
        "mkl": _mkl_version(),
        "backend": backend.name,
        "backend_describe": backend.describe(),
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
    }
    if backend.name == "gpu":
        info.update(_gpu(backend, n))
    return info


def _mkl_version():
    """Intel MKL's version where kernels.gemm uses it (the mkl wheel), else None."""
    from .gemm_bench import version as mkl_version
    return mkl_version()


def _physical_cores():
    try:
        import psutil
        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


def _gpu(backend, n):
    """GPU name, memory and cuBLAS sgemm rate (GPU backend only)."""
    cp = backend.xp
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"]
    return {"gpu_name": name.decode() if isinstance(name, bytes) else name,
            "gpu_memory_gib": round(props["totalGlobalMem"] / 2 ** 30, 1),
            "gpu_sgemm_n": 2 * n,
            "gpu_sgemm_gflops": sgemm_gflops(cp, 2 * n, reps=5, sync=backend.synchronize)}


def line(info):
    """The one-line machine summary printed first."""
    cores = f"{info['logical_cores']} cores"
    if info.get("physical_cores") and info["physical_cores"] != info["logical_cores"]:
        cores = f"{info['physical_cores']} cores/{info['logical_cores']} threads"
    text = (f"{info['cpu_model']} ({cores}); BLAS {info['blas']} {info['blas_threads']} threads, "
            f"sgemm {info['sgemm_gflops']:.0f} GFLOP/s at n={info['sgemm_n']}; "
            f"numba threads {info['numba_threads']}; numpy {info['numpy']}, numba {info['numba']}, "
            f"torch {info['torch'] or '-'}"
            + (f", cupy {info['cupy']}" if info.get("cupy") else "")
            + (f"; GEMMs by {info['mkl']}" if info.get("mkl") else "")
            + "".join(f"; {k}={v}" for k, v in info["env"].items()))
    if info.get("gpu_name"):
        text += (f"; GPU {info['gpu_name']} {info['gpu_memory_gib']} GiB, "
                 f"sgemm {info['gpu_sgemm_gflops']:.0f} GFLOP/s")
    return (text + f"\nbackend {info['backend_describe']}\n"
            f"git {info['git_commit'][:12]}{' (dirty)' if info['git_dirty'] else ''}, "
            f"{info['date']}, host {info['hostname']}")


class OtherLoad:
    """Share of all CPUs that *other* processes used between construction and `share()`:
    on a shared machine it says how far to trust the timings (0 = we ran alone)."""

    def __init__(self):
        self._start = self._snapshot()

    @staticmethod
    def _snapshot():
        import psutil
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) \
            + getattr(t, "steal", 0)
        own = psutil.Process().cpu_times()
        return time.monotonic(), busy, own.user + own.system + own.children_user + own.children_system

    def share(self):
        (w0, b0, o0), (w1, b1, o1) = self._start, self._snapshot()
        return max(0.0, ((b1 - b0) - (o1 - o0)) / max((w1 - w0) * (os.cpu_count() or 1), 1e-9))

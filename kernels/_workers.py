"""accelnet's own worker threads for batch-chunked layer work on the CPU.

A convolution over a whole batch streams its im2col columns (tens of MB) through memory
and leaves the parallelism to OpenBLAS, whose threads split each tall-skinny GEMM into
barrier-synchronised blocks (and spin against any other load on the cores). Instead the
CPU path cuts the batch into slices of a few MiB and hands them to a small pool of worker
threads while BLAS is pinned to one thread (threadpoolctl). Each pass over a slice is one
`nogil` Numba call that blocks it for cache and calls BLAS inside, so the workers run in
parallel: with a dozen GIL-holding Python calls per chunk instead, two workers ran slower
than one (measured).

    tasks = batch_tasks(x, n, bytes_per_sample, workspace_bytes)  # [[(start, stop), ...], ...]
    tasks = task_slices(x, n, bytes_per_sample, workspace_bytes)  # one slice per task (CPU)
    results = run_tasks(x, fn, tasks)       # [fn(chunks) for chunks in tasks], in order
    split_batch(x, n, fn)                   # fn(start, stop) per worker, independent samples
    buffer = scratch(x, "cols", shape, dtype)  # this thread's reusable buffer (None: allocate)
    with worker_step(x): ...                # a model step: BLAS at one thread throughout
    gemm(a, b)                              # inside a step: MKL on the workers' count, or halves
    gemm(a, b, out, alpha, beta)            # out = alpha a @ b + beta out (MKL: one pass)
    tuner = adaptive_blas_threads(x)        # Dense-only models: BLAS's threads or one, timed

A task is a fixed run of consecutive chunks (at most TASKS per call, fixed by the batch and
chunk sizes, never by the thread count); results come back in task order whatever thread
ran them, and each task writes only its own slice of the outputs, so partial sums added in
task order are deterministic and independent of the number of threads. Per-task
temporaries live in per-thread scratch buffers: allocating them afresh costs a page fault
per 4 KiB (measured: twice the time of the GEMM that fills them). On the GPU, with
`ACCELNET_KERNELS=reference`, when threadpoolctl cannot limit BLAS, or with
ACCELNET_NUM_THREADS=0, slices are workspace-sized and run in order on the calling thread.

Settings (read at every call): ACCELNET_NUM_THREADS (workers; default: the cores this
process may use; 1 = the slices on the calling thread, BLAS still at one thread;
0 = off) and ACCELNET_CHUNK_KB (the per-slice working-set target, default 2048 KiB).
"""
import concurrent.futures
import contextlib
import itertools
import math
import os
import threading
import time

import numpy

from ..backend import _blas_controller, get_array_module
from . import _cublas, _dispatch, _mkl

DEFAULT_CHUNK_KB = 2048  # measured on 2 workers, batch 128, min of 30 alternated steps:
# mnist_cnn 35.1 ms at 8 MiB, 33.7 at 2 MiB; seed 004 27.8 / 27.2; CIFAR-shaped 87.2 / 85.4
# (with Conv2D + MaxPooling2D fused, a slice's convolution output must stay in L2 while it
# is pooled). At 2 MiB every bench convolution gets TASKS slices of 8 images (chunks merge
# into one slice per task), C = 1 first layers included (at 8 MiB: 4-6 slices of 23-37
# images). Earlier, unfused: 1.5 MiB 87 ms, 4 MiB 53, 8 MiB 47, 16 MiB 53 for mnist_cnn's
# convolutions, when each chunk was its own task (per-chunk overheads serialised the
# workers); TASKS 4, 8, 16 and 32 gave the same mnist_cnn and seed 004 steps within noise.
TASKS = 16        # chunks are grouped into at most this many tasks per call
MAX_SCRATCH = 16  # scratch buffers kept per thread
MAX_SCRATCH_BYTES = 16 << 20  # larger requests are not kept (a whole-batch call's temporaries)
_pool = {}  # (pid, workers) -> ThreadPoolExecutor
_lock = threading.Lock()
_local = threading.local()


def num_threads():
    """Worker threads for chunked CPU work (ACCELNET_NUM_THREADS, else usable cores)."""
    value = os.environ.get("ACCELNET_NUM_THREADS", "").strip()
    if value:
        return max(0, int(value))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def chunk_bytes():
    return int(float(os.environ.get("ACCELNET_CHUNK_KB", DEFAULT_CHUNK_KB)) * 1024)


def threaded(array):
    """Whether `array`'s layer work runs in chunks of a few MiB on worker threads."""
    return (_dispatch._device(array) == "cpu" and _dispatch._requested() != "reference"
            and not getattr(_local, "inside", False) and _blas_controller() is not None
            and num_threads() > 0)


def batch_chunks(array, n, bytes_per_sample, workspace_bytes):
    """[(start, stop)] covering range(n): chunk_bytes() each where `threaded(array)`, else as many
    samples as fit in `workspace_bytes` (at least one per chunk)."""
    limit = chunk_bytes() if threaded(array) else workspace_bytes
    step = max(1, min(n, limit // max(int(bytes_per_sample), 1)))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def batch_tasks(array, n, bytes_per_sample, workspace_bytes):
    """`batch_chunks` grouped into at most TASKS runs of consecutive chunks (one run when
    not threaded): the units handed to the workers."""
    chunks = batch_chunks(array, n, bytes_per_sample, workspace_bytes)
    count = min(TASKS, len(chunks)) if threaded(array) else 1
    bounds = [len(chunks) * k // count for k in range(count + 1)]
    return [chunks[a:b] for a, b in zip(bounds, bounds[1:])]


def task_slices(array, n, bytes_per_sample, workspace_bytes):
    """As `batch_tasks`, but where `threaded(array)` each task is one slice (start, stop),
    the batch cut evenly into as many slices as `batch_tasks` has tasks: for kernels that
    block the slice for cache themselves, in one GIL-free call. Even, because grouping the
    chunks gave slices of 5 and 10 images in turn at seed 004's first layer (5 images a
    chunk; even slices of 8: step min 29.1 -> 28.7 and 28.8 -> 27.6 ms, medians -0.6 ms,
    40 alternated steps; mnist_cnn within noise). The slices depend on n and the sizes
    only, never on the thread count."""
    tasks = batch_tasks(array, n, bytes_per_sample, workspace_bytes)
    if not threaded(array):
        return tasks
    bounds = [n * k // len(tasks) for k in range(len(tasks) + 1)]
    return [[(a, b)] for a, b in zip(bounds, bounds[1:])]


def scratch(array, name, shape, dtype):
    """This thread's reusable NumPy buffer for `name` (contents undefined), or None when
    `array`'s work is not threaded or the buffer would exceed MAX_SCRATCH_BYTES (the
    caller then allocates as usual)."""
    if not getattr(_local, "inside", False) and not threaded(array):
        return None
    dtype = numpy.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) * dtype.itemsize > MAX_SCRATCH_BYTES:  # (numpy.prod: 6 us a call)
        return None
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    key = (name, shape, dtype)
    buf = buffers.pop(key, None)
    if buf is None:
        buf = numpy.empty(shape, dtype=dtype)
    buffers[key] = buf  # most recently used last
    while len(buffers) > MAX_SCRATCH:
        del buffers[next(iter(buffers))]
    return buf


def one_blas_thread():
    """A context in which BLAS runs on one thread (a no-op inside a task, where it already
    does, or without threadpoolctl): for the thin GEMMs of a kernel called directly."""
    controller = None if getattr(_local, "inside", False) else _blas_controller()
    return controller.limit(limits=1) if controller is not None else contextlib.nullcontext()


MIN_SPLIT_BYTES = 4 << 20  # below, one call: a task hand-off costs ~40-100 us (measured)


def split_batch(array, n, fn, min_bytes=MIN_SPLIT_BYTES):
    """fn(start, stop) over range(n) in one slice per worker thread where `threaded(array)`
    and `array` holds at least `min_bytes`, else fn(0, n) on the calling thread. For
    kernels whose samples are independent (no sums across the batch), so the result does
    not depend on the split."""
    workers = num_threads() if array.nbytes >= min_bytes and threaded(array) else 1
    workers = max(1, min(workers, n))
    if workers == 1:
        fn(0, n)
        return
    bounds = [n * k // workers for k in range(workers + 1)]
    run_tasks(array, lambda task: fn(*task), list(zip(bounds, bounds[1:])))


@contextlib.contextmanager
def worker_step(array):
    """A context for a whole step (forward, backward, update) of a model whose layers use the
    worker threads: BLAS stays at one thread throughout where `threaded(array)` (else a
    no-op), and `gemm` splits large products over the workers instead. After each
    multithreaded call OpenBLAS's idle threads spin for ~0.1 s (2^28 cycles,
    OPENBLAS_THREAD_TIMEOUT), taking the core a worker needs next (measured on 2 cores:
    mnist_cnn's conv2 backward 35 -> 24 ms and its step 77 -> 55 ms)."""
    if not threaded(array) or getattr(_local, "step", False):
        yield
        return
    _local.step = True
    try:
        with _blas_controller().limit(limits=1):
            yield
    finally:
        _local.step = False


MIN_SPLIT_FLOPS = 2e7  # smaller products: one call (a hand-off costs ~40-100 us)


def split_axis(m, k, n):
    """Which dimension of an (m, k) @ (k, n) product `gemm` halves over the two workers: the
    one whose halves read the least per thread ('m': half of a and all of b; 'n': all of a
    and half of b; 'k': half of each, plus a partial product to write and add). Measured on
    2 workers, mnist_cnn's Dense 9216 -> 128, ms (min of 100): forward (128, 9216, 128) 'm'
    1.30, 'k' 1.17; input gradient (128, 128, 9216) 'm' 1.62, 'n' 1.22; weight gradient
    (9216, 128, 128) 'm' 1.17 (OpenBLAS's two threads: 1.22, 1.09, 0.93)."""
    reads = {"m": m * k / 2 + k * n, "n": m * k + k * n / 2, "k": (m * k + k * n) / 2 + 2 * m * n}
    return min(reads, key=reads.get)


def matmul(a, b, out=None, alpha=1.0, beta=0.0):
    """out = alpha * a @ b + beta * out: MKL's GEMM where it applies (kernels._mkl), cuBLAS's
    with alpha/beta for CuPy arrays where that applies (kernels._cublas), else the arrays' own
    matmul (with the scaling as separate passes)."""
    result = _mkl.gemm(a, b, out, alpha, beta)
    if result is None and (alpha != 1 or beta != 0):  # a plain product: CuPy's matmul
        result = _cublas.gemm(a, b, out, alpha, beta)
    if result is not None:
        return result
    xp = get_array_module(a, b)
    if beta == 0:
        out = xp.matmul(a, b, out=out)
        if alpha != 1:
            out *= alpha
        return out
    product = xp.matmul(a, b)
    if alpha != 1:
        product *= alpha
    if beta != 1:
        out *= beta
    out += product
    return out


def gemm_accumulates(array):
    """Whether `gemm(a, b, out, alpha, beta=1)` adds into `out` inside the product (MKL, or
    cuBLAS for CuPy arrays) for arrays like `array`, instead of a product, a scaling and an
    addition as separate passes: only then is folding an update into a gradient's product
    (Dense) worth it."""
    if type(array) is numpy.ndarray:
        return array.dtype in (numpy.float32, numpy.float64) and _mkl.enabled()
    return _cublas.applies(array)


def gemm(a, b, out=None, alpha=1.0, beta=0.0):
    """alpha * a @ b + beta * out for 2-D arrays (out = a @ b by default). Inside a
    `worker_step` (where BLAS is held at one thread), a product of at least MIN_SPLIT_FLOPS
    runs on as many threads as there are workers: by MKL where it applies, on its own
    threads for this call (mnist_cnn's Dense 9216 -> 128, cache flushed, min of 30 on 2
    cores, ms: forward 1.06 against 1.87 split, input gradient 1.04 / 1.83, weight
    gradient 1.23 / 1.58; PyTorch's 1.06 / 1.03 / 1.28); else (no MKL, or `fit`'s tuner
    chose them: `_GemmHalves`), for a plain product, as two fixed halves on the worker
    threads, split along `split_axis` (rows, columns or the inner dimension, whose two
    partial products are added in a fixed order). Bits: MKL's repeat for a given thread
    count; the halves' do not depend on it. Elsewhere one `matmul` (MKL where installed,
    else NumPy's, with BLAS's own threading)."""
    m, k = a.shape
    n = b.shape[1]
    if (min(m, n, k) < 2 or 2.0 * m * n * k < MIN_SPLIT_FLOPS or not getattr(_local, "step", False)
            or getattr(_local, "inside", False) or not threaded(a)):
        return matmul(a, b, out, alpha, beta)
    result = (None if getattr(_local, "gemm_halves", False)  # `_GemmHalves` chose the halves
              else _mkl.gemm(a, b, out, alpha, beta, threads=num_threads()))
    if result is not None:
        return result
    if alpha != 1 or beta != 0:
        return matmul(a, b, out, alpha, beta)
    out = numpy.empty((m, n), numpy.result_type(a, b)) if out is None else out
    axis = split_axis(m, k, n)
    extent = {"m": m, "n": n, "k": k}[axis]
    half = extent // 2
    partial = numpy.empty_like(out) if axis == "k" else None

    def part(task):
        start, stop = task
        if axis == "m":
            numpy.matmul(a[start:stop], b, out=out[start:stop])
        elif axis == "n":
            numpy.matmul(a, b[:, start:stop], out=out[:, start:stop])
        else:  # the first half's product into out, the second's into partial
            numpy.matmul(a[:, start:stop], b[start:stop], out=out if start == 0 else partial)

    run_tasks(a, part, [(0, half), (half, extent)])
    if partial is not None:
        out += partial
    return out


def _executor(workers):
    key = (os.getpid(), workers)  # a forked child must not reuse its parent's threads
    pool = _pool.get(key)
    if pool is None:
        with _lock:
            pool = _pool.get(key)
            if pool is None:
                pool = _pool[key] = concurrent.futures.ThreadPoolExecutor(
                    workers, thread_name_prefix="accelnet")
    return pool


def _in_worker(fn, task):
    _local.inside = True  # nested chunked work inside a task runs serially
    try:
        return fn(task)
    finally:
        _local.inside = False


def run_tasks(array, fn, tasks):
    """[fn(task) for task in tasks], in task order; where `threaded(array)`, with BLAS at
    one thread and on the worker threads (when there are 2+ tasks). Each worker takes the
    next task until none is left: one hand-off per worker, not per task (16 empty tasks on
    2 workers: 166 against 339 us, median; seed 004's step -0.9 ms, median of 40 alternated
    steps, two runs; mnist_cnn -0.5 ms over four). Every task runs; the first task's error
    (in task order), if any, is raised."""
    if not threaded(array):
        return [fn(task) for task in tasks]
    workers = min(num_threads(), len(tasks))
    with _blas_controller().limit(limits=1):  # small GEMMs: BLAS threads would only spin
        if workers <= 1:
            return [_in_worker(fn, task) for task in tasks]
        results, errors = [None] * len(tasks), [None] * len(tasks)
        order = itertools.count()  # next() is atomic under the GIL

        def take_tasks():
            for i in iter(order.__next__, None):
                if i >= len(tasks):
                    return
                try:
                    results[i] = _in_worker(fn, tasks[i])
                except BaseException as exc:  # as a future keeps it: raised below
                    errors[i] = exc

        pool = _executor(workers)
        futures = [pool.submit(take_tasks) for _ in range(workers)]
        concurrent.futures.wait(futures)  # all done before BLAS gets its threads back
    for exc in errors:
        if exc is not None:
            raise exc
    return results


class AdaptiveBlasThreads:
    """BLAS's own threads or one thread, chosen by timing the steps of a model whose layers
    leave the threading to BLAS (Dense-only models; ConvNets use `worker_step`).

        tuner = adaptive_blas_threads(x)
        try:
            for each step:
                with tuner.step():
                    train_step()
        finally:
            tuner.close()               # BLAS's thread count as it was

    Measured on 2 cores, the MLP's epoch: quiet 1.09 s with OpenBLAS's 2 threads against
    1.53 s at one; with 2 competing processes 4.32 s against 2.32 s (its barrier-synchronised
    threads wait for each other's descheduled halves: under that load its steps took 2.2 or
    6.3 ms, and every few dozen steps 50-135 ms, against 3.5-12 ms at one thread). So after
    WARMUP steps, every PROBE_EVERY steps it times PROBE_STEPS steps each way, alternated,
    and runs one thread until the next probe only where their total time was lower by
    MARGIN (totals, not minima: the stalls are what a busy machine costs); each probe that
    confirms the choice doubles the interval to the next (up to MAX_BACKOFF times: a probe
    at BLAS's threads under load costs stalls, and OpenBLAS's threads then spin for ~0.1 s).
    Steps under MIN_STEP_S never switch (BLAS runs their small GEMMs on one thread anyway).
    Caveat: OpenBLAS's 1- and 2-thread GEMMs can round differently at some shapes (K = 784:
    last bits), so a run that switched can differ in the last bits from one that did not;
    ACCELNET_ADAPTIVE_BLAS=0 keeps BLAS's threads throughout (bit-reproducible runs).
    """
    WARMUP = 5
    PROBE_EVERY = 50
    PROBE_STEPS = 4
    MARGIN = 0.8
    MIN_STEP_S = 5e-4
    MAX_BACKOFF = 16

    def __init__(self, controller, margin=None):
        self._controller = controller  # None: a no-op
        self.margin = self.MARGIN if margin is None else margin
        self._limiter = None
        self.single = False  # the choice between probes
        self._count = 0
        self._next_probe = self.WARMUP
        self._interval = self.PROBE_EVERY
        self._probe = []  # modes still to time in this probe
        self._times = {True: [], False: []}

    def _set(self, single):
        if single and self._limiter is None:
            self._limiter = self._controller.limit(limits=1)
        elif not single and self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None

    def _next_mode(self):
        if not self._probe and self._count >= self._next_probe:
            self._probe = [True, False] * self.PROBE_STEPS
            self._times = {True: [], False: []}
        return self._probe[0] if self._probe else self.single

    @contextlib.contextmanager
    def step(self):
        """A context for one step: BLAS at the mode chosen (or probed) for it."""
        if self._controller is None:
            yield
            return
        mode = self._next_mode()
        self._set(mode)
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self._count += 1
        if not self._probe:
            return
        self._probe.pop(0)
        self._times[mode].append(elapsed)
        if not self._probe:  # probe done: decide until the next one
            one, own = sum(self._times[True]), sum(self._times[False])
            single = own >= self.MIN_STEP_S * self.PROBE_STEPS and one < self.margin * own
            # the same answer again: probe half as often (each probe costs), up to MAX_BACKOFF
            same = single == self.single
            self._interval = min(self._interval * 2, self.PROBE_EVERY * self.MAX_BACKOFF) \
                if same else self.PROBE_EVERY
            self.single = single
            self._next_probe = self._count + self._interval

    def close(self):
        """Give BLAS its thread count back."""
        if self._controller is not None:
            self._set(False)


class _GemmHalves:
    """`AdaptiveBlasThreads`'s controller for the steps of a model on the worker threads: its
    "one thread" runs a step's large products (`gemm`) as halves on the workers instead of
    on MKL's threads. Quiet, MKL's threads were faster (mnist_cnn step min 27.2 against 28.5
    ms, median 28.8 against 30.7); with 2 competing processes on the 2 cores MKL's team waits
    for its descheduled thread (step median 62-67 ms against 48-61 as halves)."""

    def limit(self, limits):
        return _GemmHalvesOn()


class _GemmHalvesOn:
    def __init__(self):
        _local.gemm_halves = True

    def restore_original_limits(self):
        _local.gemm_halves = False


_GEMM_HALVES = _GemmHalves()
GEMM_MARGIN = 0.9  # halves taken when their probe steps' total is 10 % lower (quiet: ~5 % higher)


def adaptive_blas_threads(array, enabled=True, previous=None, workers=False):
    """An `AdaptiveBlasThreads` for steps on `array`: a no-op when not `enabled`, off the
    CPU, with ACCELNET_ADAPTIVE_BLAS=0 or ACCELNET_KERNELS=reference, without threadpoolctl,
    or when BLAS already runs on one thread. `workers`: the model's layers use the worker
    threads (BLAS at one thread throughout); the choice is then between MKL's threads and
    halves on the workers for its large products (`_GemmHalves`; a no-op without MKL or a
    second worker). `previous` (the model's tuner of its last epoch) is returned when it
    applies, so its choice carries over between epochs."""
    margin = None
    if workers:
        controller = _GEMM_HALVES if (enabled and threaded(array) and num_threads() > 1
                                      and _mkl.enabled()) else None
        margin = GEMM_MARGIN
    else:
        controller = _blas_controller() if enabled and _dispatch._device(array) == "cpu" else None
    if (controller is None or os.environ.get("ACCELNET_ADAPTIVE_BLAS", "1").strip() == "0"
            or _dispatch._requested() == "reference"
            or (not workers
                and max((lib.num_threads for lib in controller.lib_controllers), default=1) <= 1)):
        controller = None
    if previous is not None and previous._controller is controller:
        return previous
    return AdaptiveBlasThreads(controller, margin)

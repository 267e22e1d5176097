"""The array-backend seam: NumPy on CPU, CuPy on GPU.

This module (with `accelnet.kernels`) is the only place that knows devices exist.
Layers, losses and optimizers ask for `xp` with `get_array_module(*arrays)` (Chainer's
rule: the arrays decide), so a layer driven by hand works on whatever arrays it is
given, and a model moved to another device needs no flag. New arrays (parameters,
masks, batches) are made by the *active* backend (`get_backend()`), chosen with
`ACCELNET_BACKEND=cpu|gpu|auto` or `accelnet.use(name)`.

CuPy is imported lazily, only when the GPU backend is asked for, so importing accelnet
on a machine without CUDA is quick and silent.
"""
import logging
import math
import os
import platform
import sys

import numpy

from .errors import BackendError

log = logging.getLogger("accelnet")

VALID_NAMES = ("cpu", "gpu", "auto")
FLOAT_DTYPE = numpy.float32

_active = None
_created = {}
_seed = None


class Backend:
    """Portable base: what every backend offers. Subclasses set `name` and `xp`."""

    name = None
    xp = None
    float_dtype = FLOAT_DTYPE

    def __init__(self):
        self.seed(_seed)

    def asarray(self, a, dtype=None):
        """Host (or any) array -> this backend's array, without a copy when possible."""
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a):
        """This backend's array -> NumPy array on the host (a host sync on GPU)."""
        return numpy.asarray(a)

    def parameter(self, value):
        """A new array of this backend holding `value`, for a layer's weights and gradients
        (the CPU backend aligns it for BLAS)."""
        return self.xp.array(value)

    def synchronize(self):
        """Wait until queued device work is done (a no-op on CPU)."""

    def bind_local_rank(self, local_rank):
        """Data-parallel: pick this rank's device (nothing to do on CPU)."""

    def nccl_unique_id(self):
        raise BackendError(f"NCCL needs the GPU backend; the {self.name!r} backend uses MPI.")

    def seed(self, seed):
        """Seed the device generator (None: from the OS); epochs derive theirs from this
        base seed (`begin_epoch`)."""
        self.base_seed = _seed_int(seed)
        self.rng = self.xp.random.default_rng(self.base_seed)
        self._epoch, self._draws = 0, 0  # outside fit; epoch e counts as e + 1

    def dropout_key(self):
        """A fresh uint32 key for one dropout mask (`kernels.dropout_mask`), from (base seed,
        epoch, call number): the same seed, epoch and call give the same mask on every
        device, and a resumed run redraws the masks of an uninterrupted one."""
        self._draws += 1
        seq = numpy.random.SeedSequence([self.base_seed, self._epoch, self._draws])
        return int(seq.generate_state(1)[0])

    def begin_epoch(self, epoch):
        """Re-derive the device generator from (seed, epoch) at the start of each epoch.

        CuPy cannot capture its cuRAND state (`bit_generator.state` is a method there,
        cupy/cupy#5430), so instead of saving a generator we make every epoch's draws a
        function of the seed and the epoch number: a run resumed at epoch e by
        BackupAndRestore draws the same dropout masks as an uninterrupted run, on every
        device."""
        seq = numpy.random.SeedSequence([self.base_seed, int(epoch)])
        self.rng = self.xp.random.default_rng(int(seq.generate_state(1, numpy.uint64)[0] >> 1))
        self._epoch, self._draws = int(epoch) + 1, 0

    def get_rng_state(self):
        """JSON-able state of the device generator: its base seed (see `begin_epoch`)."""
        return {"base_seed": int(self.base_seed)}

    def set_rng_state(self, state):
        """Restore `get_rng_state()`'s result; files from before base seeds existed
        (a NumPy bit-generator dict, or None) leave the generator as it is."""
        if isinstance(state, dict) and "base_seed" in state:
            self.base_seed = int(state["base_seed"])

    def describe(self):
        raise NotImplementedError

    def __repr__(self):
        return f"<accelnet backend {self.name!r}>"


MALLOC_ENV = "ACCELNET_TUNE_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_malloc_tuned = []


def tune_host_malloc():
    """glibc only, once per process: serve arrays up to 32 MiB from the heap and trim it only
    past 256 MiB free, so each training step reuses the pages of the last one's activations
    instead of faulting fresh ones in (measured, 2 cores: seed 004's step 4,500 -> 25 page
    faults, 59.6 -> 50.8 ms; mnist_cnn 1,550 -> 2-67). The process keeps up to 256 MiB of
    freed memory. Off with ACCELNET_TUNE_MALLOC=0, or when any MALLOC_* variable is set.
    Returns whether it tuned."""
    if _malloc_tuned:
        return _malloc_tuned[0]
    tuned = False
    wanted = os.environ.get(MALLOC_ENV, "1").strip() != "0"
    user_set = any(k.startswith("MALLOC_") or k.startswith("GLIBC_TUNABLES") for k in os.environ)
    if wanted and not user_set and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20))
        except (OSError, AttributeError):
            tuned = False
    _malloc_tuned.append(tuned)
    return tuned


ALIGN = 64  # bytes: an AVX-512 register, a cache line


def aligned_empty(shape, dtype, align=ALIGN):
    """An uninitialised C-contiguous NumPy array starting on an `align`-byte boundary.
    NumPy's own start 16 bytes past one; MKL's GEMMs read aligned operands faster (the MLP's
    four large products: 1067 against 1084 us, alternated; its one-call step 1562 against
    1584 us with its buffers and weights aligned), and a step's time then no longer depends
    on where malloc happened to put them."""
    dtype = numpy.dtype(dtype)
    shape = tuple(int(d) for d in shape)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = numpy.empty(nbytes + align, numpy.uint8)
    start = -raw.ctypes.data % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


class CpuBackend(Backend):
    name = "cpu"
    xp = numpy

    def __init__(self):
        super().__init__()
        tune_host_malloc()

    def parameter(self, value):
        """`value` in a 64-byte-aligned NumPy array (`aligned_empty`)."""
        value = numpy.asarray(value)
        out = aligned_empty(value.shape, value.dtype)
        out[...] = value
        return out

    def describe(self):
        import numba
        return (f"cpu: {cpu_model()} ({os.cpu_count()} cores), numpy {numpy.__version__}, "
                f"numba {numba.__version__}, python {platform.python_version()}")


class GpuBackend(Backend):
    name = "gpu"

    def __init__(self):
        self.xp = _import_cupy()
        local_rank = launcher_local_rank()
        if local_rank is not None:  # bind before the first allocation (generator, weights)
            self._use_device(local_rank)
        super().__init__()
        from .kernels import _cuda  # numba-cuda's compilers: probe once, else reference forms
        _cuda.probe_toolchain(self.xp)

    def to_numpy(self, a):
        return self.xp.asnumpy(a)

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()

    # -- data-parallel hooks (used by accelnet.distributed) ---------------------------
    def _use_device(self, local_rank):
        count = self.xp.cuda.runtime.getDeviceCount()
        self.xp.cuda.Device(int(local_rank) % count).use()

    def bind_local_rank(self, local_rank):
        """Use GPU (local rank mod GPU count) in this process, and re-create the device
        generator there (a CuPy generator is bound to the device it was made on)."""
        if self.xp.cuda.Device().id == int(local_rank) % self.xp.cuda.runtime.getDeviceCount():
            return
        self._use_device(local_rank)
        self.rng = self.xp.random.default_rng(self.base_seed)

    def nccl_unique_id(self):
        from cupy.cuda import nccl
        return nccl.get_unique_id()

    def nccl_communicator(self, size, unique_id, rank):
        from cupy.cuda import nccl
        return nccl.NcclCommunicator(size, unique_id, rank)

    def nccl_allreduce_sum(self, communicator, flat):
        """Sum `flat` across ranks in place on the device, on CuPy's current stream."""
        from cupy.cuda import nccl
        dtype = {numpy.dtype("float32"): nccl.NCCL_FLOAT32,
                 numpy.dtype("float64"): nccl.NCCL_FLOAT64}[flat.dtype]
        communicator.allReduce(flat.data.ptr, flat.data.ptr, flat.size, dtype, nccl.NCCL_SUM,
                               self.xp.cuda.get_current_stream().ptr)

    def describe(self):
        cp = self.xp
        dev = cp.cuda.Device()
        props = cp.cuda.runtime.getDeviceProperties(dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        free, total = cp.cuda.runtime.memGetInfo()
        return (f"gpu: {name} ({total / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free), "
                f"cupy {cp.__version__}, CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}, "
                f"driver {cp.cuda.runtime.driverGetVersion()}")


_blas = []


def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries (found once), or None."""
    if not _blas:
        try:  # SciPy's BLAS runs the GEMMs inside Numba kernels (np.dot): limit it too
            import scipy.linalg.cython_blas  # noqa: F401
        except ImportError:
            pass
        from .kernels import _mkl
        _mkl.library()  # MKL where installed (kernels.gemm's products): limit it too
        try:
            from threadpoolctl import ThreadpoolController
            _blas.append(ThreadpoolController().select(user_api="blas") or None)
        except Exception:  # threadpoolctl missing or unable to inspect this process
            _blas.append(None)
    return _blas[0]


LAUNCHER_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK",
                            "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK")


def launcher_local_rank():
    """This process's rank on its node as set by the launcher (Open MPI, MPICH/Hydra,
    MVAPICH, Slurm, torchrun), or None when not launched by one."""
    for var in LAUNCHER_LOCAL_RANK_VARS:
        value = os.environ.get(var, "").strip()
        if value.isdigit():
            return int(value)
    return None


def _import_cupy():
    """Import CuPy and prove a device, cuBLAS and CuPy's kernel compiler work, or raise
    BackendError naming the cause and the fix."""
    fix = ("Install the GPU extra matching your CUDA driver: pip install 'accelnet[gpu-cuda13]' "
           "(driver R580+) or 'accelnet[gpu-cuda12]' (driver R525+), or use ACCELNET_BACKEND=cpu.")
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA library underneath
        raise BackendError(f"GPU backend unavailable: CuPy is not installed or failed to "
                           f"import ({type(exc).__name__}: {exc}). {fix}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        count, why = 0, f"{type(exc).__name__}: {exc}"
    else:
        why = "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and nvidia-smi)"
    if count == 0:
        raise BackendError(f"GPU backend unavailable: {why}. {fix}")
    try:
        driver = cupy.cuda.runtime.driverGetVersion()
        runtime = cupy.cuda.runtime.runtimeGetVersion()
    except Exception:
        driver = runtime = 0
    problem = cuda_version_problem(driver, runtime)
    if problem:
        raise BackendError(f"GPU backend unavailable: {problem} {fix}")
    if driver and runtime and driver < runtime:
        log.warning("The NVIDIA driver supports CUDA %s and CuPy was built for CUDA %s: running "
                    "under CUDA minor-version compatibility.", _version(driver), _version(runtime))
    _probe_cupy(cupy)
    return cupy


def _version(v):
    return f"{v // 1000}.{v % 1000 // 10}"


def cuda_version_problem(driver, runtime):
    """Why this driver cannot run CuPy built for `runtime` (None when it can). CUDA's
    minor-version compatibility runs any 12.x runtime on an R525+ (12.0) driver and any
    13.x on R580+ (13.0): only the major versions must agree (driver >= runtime)."""
    if driver and runtime and driver // 1000 < runtime // 1000:
        return (f"the NVIDIA driver supports CUDA {_version(driver)} but CuPy was built for "
                f"CUDA {_version(runtime)} (a newer major version); upgrade the driver or "
                f"install the CuPy build for CUDA {driver // 1000}.x.")
    return None


def _probe_cupy(cupy):
    """A tiny matmul (cuBLAS) and elementwise op and reduction (NVRTC) on the device."""
    try:
        a = cupy.ones((2, 2), dtype=cupy.float32)
        total = cupy.exp(a @ a).sum()
        float(total)
    except Exception as exc:
        raise BackendError(
            f"GPU backend unavailable: CuPy cannot run a kernel on this machine "
            f"({type(exc).__name__}: {exc}). CuPy needs the CUDA libraries (cuBLAS, NVRTC): "
            f"pip install 'cupy-cuda13x[ctk]' (or 'cupy-cuda12x[ctk]'), or install the CUDA "
            f"toolkit, or use ACCELNET_BACKEND=cpu.") from None


def _create(name):
    if name not in _created:
        _created[name] = CpuBackend() if name == "cpu" else GpuBackend()
    return _created[name]


def resolve(name):
    """Backend object for `name` ('cpu', 'gpu' or 'auto'), creating it on first use."""
    name = str(name).strip().lower()
    if name not in VALID_NAMES:
        raise ValueError(f"Unknown accelnet backend {name!r}; valid names: "
                         f"{', '.join(VALID_NAMES)} (set ACCELNET_BACKEND or call accelnet.use()).")
    if name == "auto":
        try:
            return _create("gpu")
        except BackendError as exc:
            log.warning("ACCELNET_BACKEND=auto: falling back to CPU. %s", exc)
            return _create("cpu")
    return _create(name)


def use(name):
    """Make `name` the active backend (call before building models). Returns it.
    A Backend instance is accepted too (the test suite's strict device backend)."""
    global _active
    _active = name if isinstance(name, Backend) else resolve(name)
    return _active


def get_backend():
    """The active backend; the first call reads ACCELNET_BACKEND (default 'cpu')."""
    if _active is None:
        use(os.environ.get("ACCELNET_BACKEND", "cpu") or "cpu")
    return _active


def _seed_int(seed):
    """A non-negative int seed; None draws one from the OS (recorded, so a backup can
    re-derive the same epochs)."""
    if seed is None:
        return int(numpy.random.SeedSequence().generate_state(1, numpy.uint64)[0] >> 1)
    return int(seed)


def seed(n):
    """Seed every backend's random generator, now and for backends created later."""
    global _seed
    _seed = n
    for backend in _created.values():
        backend.seed(n)


def is_device_array(a):
    """True for a CuPy array (decided by type, without importing CuPy)."""
    return type(a).__module__.split(".", 1)[0] == "cupy"


def get_array_module(*arrays):
    """`cupy` if any argument is a CuPy array, else `numpy` (Chainer's rule)."""
    for a in arrays:
        if type(a).__module__.split(".", 1)[0] == "cupy":
            return sys.modules["cupy"]
    return numpy


def to_numpy(a):
    """Any accelnet array (or scalar) -> NumPy on the host."""
    if is_device_array(a):
        return a.get()
    return numpy.asarray(a)


def cpu_model():
    """CPU model name from /proc/cpuinfo, or platform's guess."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# -- Keras's backend/config utilities (keras.backend.image_data_format, clear_session, ...) --
def image_data_format():
    """'channels_last': accelnet's images are (batch, height, width, channels)."""
    return "channels_last"


def set_image_data_format(data_format):
    """Accept 'channels_last' (a no-op); refuse 'channels_first', which accelnet's layers
    do not implement, rather than silently computing on transposed images."""
    from .errors import InvalidArgumentError
    value = str(data_format).lower()
    if value == "channels_last":
        return
    if value == "channels_first":
        raise InvalidArgumentError(
            "accelnet supports only image_data_format 'channels_last' (batch, height, width, "
            "channels); transpose channels-first arrays with x.transpose(0, 2, 3, 1) instead.")
    raise InvalidArgumentError(f"Unknown image_data_format {data_format!r}; expected "
                               f"'channels_last' or 'channels_first'.")


def floatx():
    """'float32', the dtype accelnet computes in."""
    return numpy.dtype(FLOAT_DTYPE).name


def epsilon():
    """1e-7, the fuzz factor losses clip probabilities with (as Keras)."""
    return 1e-7


def clear_session(free_memory=True):
    """Keras's clear_session: forget the layer-name counters (new layers are named 'dense',
    'dense_1', ... again) and release cached memory (CuPy's pool on the GPU)."""
    import gc
    from .layers import base
    base._name_counts.clear()
    if free_memory:
        gc.collect()
        for created in _created.values():
            pool = getattr(created.xp, "get_default_memory_pool", None)
            if pool is not None:
                pool().free_all_blocks()

"""Data-parallel training over MPI (mpi4py), with NCCL through CuPy on GPUs.

accelnet does not run its own cluster runtime: launch the same script with
`mpiexec -n N python train.py` and `Sequential.fit` becomes data-parallel. Without
mpiexec everything here is a no-op of size 1 and mpi4py is never imported.

What fit does when `size() > 1`:
- broadcasts the weights (and optimizer state) from rank 0 at the start of every fit;
- takes the epoch's permutation from rank 0 and gives each rank a contiguous shard of
  every *global* batch (`batch_size` is the global batch), so each sample is seen once;
- sums each rank's gradients weighted by its shard size in one allreduce over a flat
  buffer and divides by the global batch size, so the step equals the single-process
  step (an uneven last batch included);
- reduces loss and accuracy across ranks once per epoch; only rank 0 prints and writes
  files (models, checkpoints, BackupAndRestore, CSVLogger, plots).
Randomness: weights are drawn on rank 0 and broadcast; dropout masks on rank r come
from a device generator seeded with SeedSequence([seed, r]) (see `device_seed`).
On GPUs each rank binds to GPU (local rank mod GPU count) and gradients move with NCCL
on device buffers (no host copy); without NCCL a host-staged MPI allreduce is used,
with one warning.

This module is the only place that knows about processes and communication.
"""
import os
import sys
import traceback
import warnings

import numpy

from .backend import get_array_module, get_backend, is_device_array, to_numpy
from .errors import AccelnetError

# Environment variables that MPI launchers (MPICH/Hydra, Open MPI, PMIx, Slurm) set.
_LAUNCH_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")

_state = {"comm": None, "rank": 0, "size": 1, "local_rank": 0, "initialized": False,
          "nccl": None, "warned": False}


class DistributedError(AccelnetError, RuntimeError):
    """MPI cannot be used (mpi4py missing, ...)."""


def launched_by_mpi():
    return any(int(os.environ.get(v, "0") or 0) > 1 if v.endswith("SIZE") else v in os.environ
               for v in _LAUNCH_VARS)


def init(force=False):
    """Join the MPI job (idempotent). A no-op of size 1 when not started by mpiexec,
    unless `force=True`. Returns the size."""
    if _state["initialized"]:
        return _state["size"]
    if not (force or launched_by_mpi()):
        _state["initialized"] = True
        return 1
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise DistributedError(
            f"accelnet.distributed needs mpi4py ({exc}); install it with "
            f"pip install 'accelnet[dist]' (mpi4py and the mpich wheel, which provides mpiexec), "
            f"or use a system MPI with pip install mpi4py.") from None
    comm = MPI.COMM_WORLD
    _state.update(comm=comm, rank=comm.Get_rank(), size=comm.Get_size(), initialized=True)
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    _state["local_rank"] = local.Get_rank()
    local.Free()
    if _state["size"] > 1:
        _install_abort_on_error()
        get_backend().bind_local_rank(_state["local_rank"])
    return _state["size"]


def rank():
    init()
    return _state["rank"]


def size():
    init()
    return _state["size"]


def local_rank():
    init()
    return _state["local_rank"]


def is_main():
    return rank() == 0


def active():
    """True when fit/evaluate/predict must communicate (more than one rank)."""
    return size() > 1


def barrier():
    if active():
        _state["comm"].Barrier()


def device_seed(seed):
    """The device generator's seed on this rank: SeedSequence([seed, rank]) when
    distributed, else `seed` (so one process matches plain accelnet)."""
    if not active() or seed is None:
        return seed
    return int(numpy.random.SeedSequence([int(seed), rank()]).generate_state(1)[0])


# -- failure handling -----------------------------------------------------------------
def _install_abort_on_error():
    """An uncaught exception on any rank prints its traceback and aborts the whole job,
    so no rank waits forever in a collective for a rank that died."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        sys.stderr.write(f"accelnet.distributed: rank {rank()} of {size()} failed; "
                         f"aborting all ranks.\n")
        traceback.print_exception(kind, value, tb)
        sys.stderr.flush()
        try:
            _state["comm"].Abort(1)
        finally:
            previous(kind, value, tb)
    sys.excepthook = hook


# -- collectives ----------------------------------------------------------------------
def _host(a):
    return numpy.ascontiguousarray(to_numpy(a))


def broadcast_arrays(arrays):
    """Overwrite every array (host or device) with rank 0's values, in place."""
    if not active():
        return
    comm = _state["comm"]
    for a in arrays:
        if is_device_array(a):
            buf = _host(a)
            comm.Bcast(buf, root=0)
            a[...] = get_array_module(a).asarray(buf)
        else:
            comm.Bcast(a if a.flags.c_contiguous else numpy.ascontiguousarray(a), root=0)


def broadcast_model(model):
    """Rank 0's weights, running statistics and optimizer state on every rank."""
    if not active():
        return
    broadcast_arrays([w for layer in model.layers for w in layer.weights])
    opt = model.optimizer
    if opt is not None:
        opt.iterations = _state["comm"].bcast(opt.iterations, root=0)
        keys = _state["comm"].bcast(sorted(f"{s}/{k}" for s, store in opt.slots.items()
                                           for k in store), root=0)
        params = {k: p for k, p in model.params.items()}
        for name in keys:
            slot, _, key = name.partition("/")
            broadcast_arrays([opt.slot(slot, key, params[key])])


def broadcast_host(array):
    """Rank 0's NumPy array (e.g. the epoch's permutation) on every rank."""
    if not active():
        return array
    array = numpy.ascontiguousarray(array)
    _state["comm"].Bcast(array, root=0)
    return array


def shard_bounds(n):
    """[lo, hi) of this rank's contiguous share of n items (sizes differ by at most 1)."""
    r, s = rank(), size()
    base, extra = divmod(n, s)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def allreduce_sum_host(values):
    """Element-wise sum over ranks of a small list of floats (one call per epoch)."""
    buf = numpy.asarray(values, dtype=numpy.float64)
    if not active():
        return buf
    out = numpy.empty_like(buf)
    from mpi4py import MPI
    _state["comm"].Allreduce(buf, out, op=MPI.SUM)
    return out


class GradientReducer:
    """Averages gradients across ranks: the global-batch mean from per-shard means.

    Each rank's gradient is the mean over its shard; weighting it by the shard size and
    dividing the sum by the global batch gives exactly the global-batch mean. Gradients
    are packed into one flat buffer and summed with one allreduce per step, or, with
    `overlap=True` (`ACCELNET_DIST_OVERLAP=1`), one non-blocking allreduce per layer
    started as soon as backward has produced that layer's gradients."""

    def __init__(self, layers, overlap=None):
        self.segments = {}
        offset, first = 0, None
        for layer in layers:
            entries = []
            for key, g in layer.grads.items():
                entries.append((g, offset, offset + g.size))
                offset += g.size
                first = g if first is None else first
            if entries:
                self.segments[id(layer)] = entries
        xp = get_array_module(first)
        self.flat = xp.zeros(offset, dtype=first.dtype)
        self.device = is_device_array(first)
        self._host = None if not self.device else numpy.empty(offset, first.dtype)
        if overlap is None:
            overlap = os.environ.get("ACCELNET_DIST_OVERLAP", "0") == "1"
        self.overlap = bool(overlap) and not self.device  # NCCL calls are already asynchronous
        self._scale, self._requests, self._sent = 1.0, [], set()

    def begin(self, local_count, global_count):
        """Start a step whose shard holds local_count of global_count samples."""
        self._scale = local_count / global_count
        self._requests, self._sent = [], set()

    def _pack(self, key):
        for g, lo, hi in self.segments[key]:
            self.flat[lo:hi] = g.reshape(-1)
            self.flat[lo:hi] *= self._scale

    def layer_ready(self, layer):
        """Backward has finished `layer`: with overlap, start summing its gradients now."""
        key = id(layer)
        if not self.overlap or key not in self.segments:
            return
        from mpi4py import MPI
        self._pack(key)
        lo, hi = self.segments[key][0][1], self.segments[key][-1][2]
        self._requests.append(_state["comm"].Iallreduce(MPI.IN_PLACE, self.flat[lo:hi], op=MPI.SUM))
        self._sent.add(key)

    def finish(self):
        """Complete the sums and write the averaged gradients back into the layers."""
        from mpi4py import MPI
        if self.overlap:
            # Collectives must start in the same order on every rank: backward's order
            # (last layer first), also on a rank whose shard was empty.
            for key in reversed(list(self.segments)):
                if key not in self._sent:
                    self._sent.add(key)
                    self._pack(key)
                    lo, hi = self.segments[key][0][1], self.segments[key][-1][2]
                    self._requests.append(_state["comm"].Iallreduce(
                        MPI.IN_PLACE, self.flat[lo:hi], op=MPI.SUM))
            MPI.Request.Waitall(self._requests)
        else:
            for key in self.segments:
                self._pack(key)
            self._allreduce_sum()
        for entries in self.segments.values():
            for g, lo, hi in entries:
                g[...] = self.flat[lo:hi].reshape(g.shape)

    def _allreduce_sum(self):
        from mpi4py import MPI
        comm = _state["comm"]
        if not self.device:
            comm.Allreduce(MPI.IN_PLACE, self.flat, op=MPI.SUM)
            return
        nccl = _nccl_comm()
        if nccl is not None:
            get_backend().nccl_allreduce_sum(nccl, self.flat)
            return
        self._host[...] = to_numpy(self.flat)
        comm.Allreduce(MPI.IN_PLACE, self._host, op=MPI.SUM)
        self.flat[...] = get_array_module(self.flat).asarray(self._host)


def _nccl_comm():
    """A NCCL communicator over all ranks (unique id broadcast over MPI), or None with one
    warning when CuPy has no NCCL."""
    if _state["nccl"] is not None:
        return _state["nccl"] or None
    backend = get_backend()
    try:
        uid = backend.nccl_unique_id() if is_main() else None
        uid = _state["comm"].bcast(uid, root=0)
        _state["nccl"] = backend.nccl_communicator(size(), uid, rank())
    except Exception as exc:  # ImportError or an NCCL runtime error
        _state["nccl"] = False
        if not _state["warned"]:
            _state["warned"] = True
            warnings.warn(f"NCCL is not available ({type(exc).__name__}: {exc}); gradients are "
                          f"allreduced through host memory with MPI instead.", RuntimeWarning)
        return None
    return _state["nccl"]


def allgather_rows(local):
    """Concatenate every rank's (n_r, ...) NumPy array in rank order, on every rank."""
    if not active():
        return local
    comm = _state["comm"]
    local = numpy.ascontiguousarray(local)
    counts = comm.allgather(int(local.shape[0]))
    row = int(numpy.prod(local.shape[1:], dtype=numpy.int64))
    out = numpy.empty((sum(counts),) + local.shape[1:], dtype=local.dtype)
    comm.Allgatherv(local, [out, [c * row for c in counts]])
    return out

"""accelnet's bench suite: `python -m bench [--suite kernels|train|all|dist] [--quick] ...`.

Modules, one job each: `machine` (what ran it), `timing` (alternating timers and
spread), `memory` (peak RSS / device bytes), `kernels_bench` (each Numba kernel against
its reference), `workloads` (the MLP and CNN: data and FLOP counts), `train_bench`
(accelnet against its peers, memory checks), `peers_torch` and `peers_numpy` (the peers),
`report` (table, JSON, PNG), `dist_bench` (data-parallel, under MPI). `__main__` parses
the command line and runs them.
"""

"""Data-parallel fit under `mpiexec -n 2` equals one process; faults end the job, never hang."""
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import accelnet as an
from accelnet import distributed

CHILD = os.path.join(os.path.dirname(__file__), "dist_child.py")
MPIEXEC = shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
needs_mpi = pytest.mark.skipif(not (MPIEXEC and HAVE_MPI4PY),
                               reason="needs mpi4py and mpiexec: pip install 'accelnet[dist]'")
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
           NUMBA_NUM_THREADS="1")


def run(args, ranks=2, timeout=120):
    cmd = ([MPIEXEC, "-n", str(ranks)] if ranks else []) + [sys.executable, CHILD, *map(str, args)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV)
    return proc, time.monotonic() - start


def weights(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k.startswith("weights/")}


@needs_mpi
@pytest.mark.parametrize("n,overlap", [(1000, "0"), (1025, "0"), (1025, "1")])
def test_two_ranks_end_with_the_weights_of_one_process(tmp_path, n, overlap, monkeypatch):
    # last batch 104 (52/52 across ranks) and 1 (1/0: one rank has an empty shard);
    # overlap=1: one non-blocking allreduce per layer, started during backward
    monkeypatch.setitem(ENV, "ACCELNET_DIST_OVERLAP", overlap)
    single, _ = run(["train", tmp_path / "one.npz", n], ranks=0)
    assert single.returncode == 0, single.stderr
    double, _ = run(["train", tmp_path / "two.npz", n])
    assert double.returncode == 0, double.stderr
    assert double.stdout.count("loss") == 1  # only rank 0 prints
    one, two = weights(tmp_path / "one.npz"), weights(tmp_path / "two.npz")
    assert one.keys() == two.keys() and len(one) == 4
    for key in one:
        np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-6, err_msg=key)
    loss_one = float(single.stdout.split()[1])
    loss_two = float(double.stdout.split()[1])
    assert loss_two == pytest.approx(loss_one, rel=1e-4)


@needs_mpi
def test_backup_and_restore_under_two_ranks_resumes_exactly(tmp_path):
    reference, _ = run(["train", tmp_path / "ref.npz", 1000])
    assert reference.returncode == 0, reference.stderr
    backup = tmp_path / "backup"
    killed, seconds = run(["train", tmp_path / "out.npz", 1000, backup, 1])
    assert killed.returncode != 0 and seconds < 60
    assert (backup / "backup.npz").exists()
    an.models.load_model(backup / "backup.npz")  # the last checkpoint is loadable
    resumed, _ = run(["train", tmp_path / "out.npz", 1000, backup, -1])
    assert resumed.returncode == 0, resumed.stderr
    ref, out = weights(tmp_path / "ref.npz"), weights(tmp_path / "out.npz")
    for key in ref:
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-6, atol=1e-7, err_msg=key)


@needs_mpi
def test_an_error_on_one_rank_stops_every_rank_naming_it(tmp_path):
    proc, seconds = run(["bad_shard"], timeout=90)
    assert proc.returncode != 0 and seconds < 60
    assert "rank 1 of 2 failed" in proc.stderr
    assert "NaN or inf" in proc.stderr


@needs_mpi
def test_weights_cannot_differ_across_ranks(tmp_path):
    proc, _ = run(["differ"])
    assert proc.returncode == 0, proc.stderr
    assert "start-differs True" in proc.stdout and "after-equal True" in proc.stdout


def test_one_process_is_a_no_op_of_size_one():
    assert distributed.size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.shard_bounds(10) == (0, 10)
    x = np.arange(6.0).reshape(3, 2)
    assert distributed.allgather_rows(x) is x


def test_init_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setattr(distributed, "_state", dict(distributed._state, initialized=False))
    with pytest.raises(distributed.DistributedError, match=r"accelnet\[dist\]"):
        distributed.init()


@needs_mpi
def test_dist_bench_quick_runs_under_two_ranks(tmp_path):
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "bench", "--suite", "dist", "--quick",
           "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV,
                          cwd=os.path.dirname(os.path.dirname(__file__)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("== dist: 2 rank(s)") == 1  # rank 0 reports
    import json
    (report,) = [json.loads(p.read_text()) for p in tmp_path.glob("dist_*.json")]
    assert report["measured"]["mlp"]["params"] == 669_706
    assert report["measured"]["convnet"]["params"] == 1_199_882
    assert all(m["allreduce_s"] > 0 and m["compute_s"] > 0 for m in report["measured"].values())
    assert {r["gpus"] for r in report["scaling"]} == {8, 64, 512}

"""Nothing is lost when a process is killed: saves are atomic, BackupAndRestore resumes exactly."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import accelnet as an

CHILD = os.path.join(os.path.dirname(__file__), "crash_child.py")


def start(*args):
    return subprocess.Popen([sys.executable, CHILD, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_during_save_always_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    rng = random.Random(0)
    for attempt in range(12):
        child = start("save", path)
        assert child.stdout.readline().startswith("saved 1"), child.stderr.read()
        t1 = time.monotonic()
        assert child.stdout.readline().startswith("saved 2"), child.stderr.read()
        interval = time.monotonic() - t1  # one save's duration on this machine
        time.sleep(rng.uniform(0.0, 2 * interval))  # lands inside save 3 or 4, mostly
        child.send_signal(signal.SIGKILL)
        child.wait()
        model = an.models.load_model(path)  # must never raise
        weights = model.get_weights()
        values = {float(w.flat[0]) for w in weights}
        assert len(values) == 1 and all((w == w.flat[0]).all() for w in weights), \
            "a checkpoint mixes two saves"
        assert values.pop() >= 2  # a complete save, never a half-written newer one


def run_training(tmp_path, name, backup, kill_batch):
    out = tmp_path / f"{name}.npz"
    child = start("train", out, backup, kill_batch)
    _, err = child.communicate(timeout=300)
    return child.returncode, out, err


def test_backup_and_restore_resumes_bit_exactly_after_sigkill(tmp_path):
    code, reference, err = run_training(tmp_path, "uninterrupted", "-", -1)
    assert code == 0, err
    backup = tmp_path / "backup"
    code, out, err = run_training(tmp_path, "resumed", backup, 5)
    assert code == -signal.SIGKILL and not out.exists()
    assert (backup / "backup.npz").exists()
    state = an.serialization.read_training_state(backup / "backup.npz")
    assert state["epoch"] == 1  # epochs 0 and 1 finished before the kill in epoch 2
    code, out, err = run_training(tmp_path, "resumed", backup, -1)
    assert code == 0, err
    assert not (backup / "backup.npz").exists()  # deleted after a completed fit
    ref = np.load(reference, allow_pickle=False)
    got = np.load(out, allow_pickle=False)
    weight_keys = [k for k in ref.files if k.startswith("weights/")]
    assert len(weight_keys) == 8  # Dense 2, BatchNorm 4 (with running statistics), Dense 2
    for key in weight_keys:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)

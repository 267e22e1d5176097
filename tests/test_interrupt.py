"""Ctrl-C: SIGINT sent to a training child process at random moments of `fit`.

The interrupted model must hold exactly the weights, BatchNormalization statistics and
optimizer state of a completed step (compared bit for bit with a replay of that many
steps), `save` must work right away, and `BackupAndRestore` must resume to the weights of
an uninterrupted run. This file is also the child: `python test_interrupt.py MODE DIR`.
"""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import accelnet as an

ATTEMPTS = 8


def build():
    an.random.seed(7)
    model = an.Sequential([an.layers.Dense(64, activation="relu", input_shape=(20,), name="d1"),
                           an.layers.BatchNormalization(name="bn"), an.layers.Dropout(0.2, name="drop"),
                           an.layers.Dense(64, activation="relu", name="d2"),
                           an.layers.Dense(4, activation="softmax", name="out")])
    model.compile(optimizer=an.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 20)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)


class Announce(an.callbacks.Callback):
    """Ctrl-C acts only while fit runs: a signal sent too late to an idle child is ignored."""

    def on_train_begin(self, logs=None):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("started", flush=True)

    def on_train_end(self, logs=None):
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class StopAfter(an.callbacks.Callback):
    def __init__(self, steps):
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        if self.model.optimizer.iterations >= self.steps:
            self.model.stop_training = True


def child_steps(out):
    """Per "go": train until SIGINT, save, then replay as many steps without a signal."""
    x, y = data()
    build().fit(x[:32], y[:32], batch_size=16, verbose=0)  # compile the kernels first
    for line in sys.stdin:
        if line.strip() == "quit":
            return
        i = line.split()[1]
        model = build()
        try:
            model.fit(x, y, batch_size=16, epochs=10**6, verbose=0, callbacks=[Announce()])
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        steps = model.optimizer.iterations
        model.save(os.path.join(out, f"interrupted{i}.npz"))  # right after the interrupt
        replay = build()
        if steps:
            replay.fit(x, y, batch_size=16, epochs=10**6, verbose=0, callbacks=[StopAfter(steps)])
        else:
            replay.build()
        replay.save(os.path.join(out, f"replay{i}.npz"))
        print("done", i, steps, flush=True)


def child_backup(out):
    """An uninterrupted reference run, then per "go": fit with BackupAndRestore until done."""
    x, y = data()
    start = time.monotonic()
    reference = build()
    reference.fit(x, y, batch_size=16, epochs=6, verbose=0)
    reference.save(os.path.join(out, "reference.npz"))
    print("reference", time.monotonic() - start, flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            return
        model = build()
        try:
            model.fit(x, y, batch_size=16, epochs=6, verbose=0,
                      callbacks=[an.callbacks.BackupAndRestore(os.path.join(out, "bk")), Announce()])
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            print("interrupted", flush=True)
            continue
        model.save(os.path.join(out, "final.npz"))
        print("completed", flush=True)


# -- the tests ------------------------------------------------------------------------------
def test_deferred_sigint_delivers_after_the_block():
    from accelnet.interrupts import deferred_sigint
    handler, done = signal.getsignal(signal.SIGINT), []
    with pytest.raises(KeyboardInterrupt):
        with deferred_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the signal has been handled (recorded) by now
            done.append("block finished")
    assert done == ["block finished"] and signal.getsignal(signal.SIGINT) is handler


def start(mode, folder):
    return subprocess.Popen([sys.executable, __file__, mode, str(folder)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ask(child, command, want):
    if command:
        child.stdin.write(command + "\n")
        child.stdin.flush()
    line = child.stdout.readline()
    assert line.startswith(want), f"child said {line!r}; stderr: {child.stderr.read()[-3000:]}"
    return line.split()


def assert_same_file(a, b):
    fa, fb = np.load(a, allow_pickle=False), np.load(b, allow_pickle=False)
    keys = sorted(k for k in fa.files if k != "accelnet.json")
    assert keys == sorted(k for k in fb.files if k != "accelnet.json")
    assert any(k.startswith("optimizer/m/") for k in keys) or "optimizer/iterations" in keys
    for key in keys:
        np.testing.assert_array_equal(fa[key], fb[key], err_msg=key)


def test_sigint_leaves_the_weights_of_a_completed_step(tmp_path):
    child = start("steps", tmp_path)
    rng, steps = random.Random(0), []
    try:
        for i in range(ATTEMPTS):
            ask(child, f"go {i}", "started")
            time.sleep(rng.uniform(0.0, 0.2))
            child.send_signal(signal.SIGINT)
            steps.append(int(ask(child, None, f"done {i}")[2]))
        child.stdin.write("quit\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
    assert max(steps) > 0, steps  # the signals landed inside training
    for i in range(ATTEMPTS):
        assert_same_file(tmp_path / f"interrupted{i}.npz", tmp_path / f"replay{i}.npz")
        an.models.load_model(tmp_path / f"interrupted{i}.npz")


def test_backup_and_restore_resumes_exactly_after_sigints(tmp_path):
    child = start("backup", tmp_path)
    rng, interrupted = random.Random(1), 0
    try:
        duration = float(ask(child, None, "reference")[1])
        for _ in range(ATTEMPTS):
            ask(child, "go", "started")
            time.sleep(rng.uniform(0.0, duration / 3))
            child.send_signal(signal.SIGINT)
            if ask(child, None, "")[0] == "completed":
                break
            interrupted += 1
        else:
            ask(child, "go", "started")
            ask(child, None, "completed")
        child.stdin.write("quit\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
    assert interrupted >= 1
    assert_same_file(tmp_path / "final.npz", tmp_path / "reference.npz")
    assert not (tmp_path / "bk" / "backup.npz").exists()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    {"steps": child_steps, "backup": child_backup}[sys.argv[1]](sys.argv[2])

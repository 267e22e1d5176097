"""Two processes checkpointing to the same path (two ranks, two notebooks) while a third
reads it: every read is one complete checkpoint from one writer, never a mix, and no
temporary file is left. Each write goes to its own mkstemp file and is renamed over the
target atomically. This file is also the writer: `python test_concurrent_writers.py ID PATH N`.
"""
import os
import subprocess
import sys
import time

import numpy as np

import accelnet as an

SAVES = 30


def writer(ident, path, saves):
    """Save `saves` checkpoints whose every weight is ident * 1000 + version."""
    model = an.Sequential([an.layers.Dense(256, input_shape=(256,)), an.layers.Dense(16)])
    model.compile(optimizer="adam", loss="mse")
    shapes = [w.shape for w in model.get_weights()]
    checkpoint = an.callbacks.ModelCheckpoint(path, monitor="loss")
    checkpoint.set_model(model)
    print("ready", flush=True)
    sys.stdin.readline()  # both writers start together
    for version in range(1, saves + 1):
        value = ident * 1000 + version
        model.set_weights([np.full(s, value, np.float32) for s in shapes])
        if version % 2:
            model.save(path)
        else:
            checkpoint.on_epoch_end(version - 1, {"loss": 1.0})


def check(path):
    """The value tagging the checkpoint at `path`, after checking it is one complete save."""
    weights = an.models.load_model(path).get_weights()
    values = {float(w.flat[0]) for w in weights}
    assert len(values) == 1 and all((w == w.flat[0]).all() for w in weights), \
        f"{path} mixes checkpoints: {sorted(values)}"
    return values.pop()


def test_two_processes_writing_one_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    writers = [subprocess.Popen([sys.executable, __file__, str(i), str(path), str(SAVES)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    try:
        for w in writers:
            assert w.stdout.readline() == "ready\n", w.stderr.read()
        for w in writers:
            w.stdin.write("go\n")
            w.stdin.flush()
        seen = set()
        deadline = time.monotonic() + 120
        while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
            if path.exists():
                seen.add(check(path))
        for w in writers:
            assert w.wait(timeout=60) == 0, w.stderr.read()
    finally:
        for w in writers:
            w.kill()
    final = check(path)
    assert final in (1000 + SAVES, 2000 + SAVES)  # the last save of one writer, complete
    assert len(seen) >= 2, seen  # the reader did see the file change under it
    assert os.listdir(tmp_path) == ["ckpt.npz"], "a temporary file was left behind"


if __name__ == "__main__":
    writer(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))

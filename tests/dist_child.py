"""Scripts for tests/test_distributed.py, run as `mpiexec -n 2 python dist_child.py MODE ...`
(or without mpiexec for the single-process reference).

    train OUT N [BACKUP KILL_RANK]   fit 3 epochs, global batch 128, on N samples; save the
                                     weights to OUT. With BACKUP: BackupAndRestore, and rank
                                     KILL_RANK SIGKILLs itself in epoch 2 (-1: never).
    bad_shard                        rank 1 gets NaN data: every rank must stop, not hang
    differ                           ranks seed differently; fit must start them equal
"""
import os
import signal
import sys

import numpy as np

import accelnet as an
from accelnet import distributed


def data(n):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 12)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    return x, y


def model():
    m = an.Sequential([an.layers.Dense(16, activation="relu", input_shape=(12,),
                                       kernel_regularizer=an.regularizers.l2(1e-3)),
                       an.layers.Dense(4, activation="softmax")])
    m.compile(optimizer=an.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


def train(out, n, backup=None, kill_rank=-1):
    an.random.seed(7)
    x, y = data(n)
    m = model()
    callbacks = []
    if backup:
        callbacks.append(an.callbacks.BackupAndRestore(backup))

        def maybe_die(batch, logs, state={}):
            if distributed.rank() == kill_rank and m._epoch == 2 and batch == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        callbacks.append(an.callbacks.LambdaCallback(
            on_epoch_begin=lambda e, logs: setattr(m, "_epoch", e), on_batch_end=maybe_die))
    history = m.fit(x, y, batch_size=128, epochs=3, verbose=0, callbacks=callbacks)
    m.save_weights(out)
    if distributed.is_main():
        print("loss", history.history["loss"][-1], "accuracy", history.history["accuracy"][-1])
    probs = m.predict(x[:37])
    assert probs.shape == (37, 4), probs.shape


def bad_shard():
    x, y = data(256)
    if distributed.rank() == 1:
        x[3, 3] = np.nan
    model().fit(x, y, batch_size=32, epochs=2, verbose=0)


def differ():
    an.random.seed(100 + distributed.rank())
    x, y = data(256)
    m = model()
    m.build()
    start = np.concatenate([w.ravel() for w in m.get_weights()])
    m.fit(x, y, batch_size=64, epochs=1, verbose=0)
    after = np.concatenate([w.ravel() for w in m.get_weights()])
    gathered = distributed.allgather_rows(after[None])
    starts = distributed.allgather_rows(start[None])
    if distributed.is_main():
        print("start-differs", not np.array_equal(starts[0], starts[1]))
        print("after-equal", np.array_equal(gathered[0], gathered[1]))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "train":
        extra = sys.argv[4:]
        train(sys.argv[2], int(sys.argv[3]), extra[0] if extra else None,
              int(extra[1]) if len(extra) > 1 else -1)
    else:
        globals()[mode]()

"""Child processes for tests/test_crash_safety.py (run as scripts, killed with SIGKILL).

    python crash_child.py save PATH            save a large model to PATH over and over
    python crash_child.py train OUT BACKUP K   train 4 epochs with BackupAndRestore(BACKUP),
                                               SIGKILL itself at epoch 2 batch K (K=-1: never),
                                               then save the final weights to OUT
"""
import os
import signal
import sys

import numpy as np

import accelnet as an


def save_forever(path):
    an.random.seed(0)
    model = an.Sequential([an.layers.Dense(1000, input_shape=(1000,)), an.layers.Dense(10)])
    model.compile(optimizer="adam", loss="mse")
    version = 1
    while True:
        model.set_weights([np.full(w.shape, version, w.dtype) for w in model.get_weights()])
        model.save(path)
        print("saved", version, flush=True)
        version += 1


def train(out, backup, kill_batch):
    an.random.seed(123)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 20)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
    model = an.Sequential([an.layers.Dense(32, activation="relu", input_shape=(20,)),
                           an.layers.Dropout(0.3),
                           an.layers.BatchNormalization(),
                           an.layers.Dense(4, activation="softmax")])
    model.compile(optimizer=an.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    callbacks = [] if backup == "-" else [an.callbacks.BackupAndRestore(backup)]
    state = {"epoch": 0}

    def on_batch_end(batch, logs):
        if state["epoch"] == 2 and batch == kill_batch:
            os.kill(os.getpid(), signal.SIGKILL)

    callbacks.append(an.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: state.update(epoch=epoch), on_batch_end=on_batch_end))
    model.fit(x, y, batch_size=32, epochs=4, verbose=0, callbacks=callbacks)
    model.save_weights(out)


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save_forever(sys.argv[2])
    else:
        train(sys.argv[2], sys.argv[3], int(sys.argv[4]))

"""Keras-style callbacks: hooks called by `Model.fit` with a `logs` dict of floats.

Per-batch hooks get logs only when a callback overrides them (that costs one host sync
per batch on GPU); otherwise fit synchronises once per epoch.
"""
import contextlib
import csv
import io
import math
import os
import warnings

from . import fileio
from .errors import InvalidArgumentError, SaveError


class Callback:
    """Base class: override the hooks you need. `self.model` is set by fit."""

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): pass
    def on_train_batch_end(self, batch, logs=None): pass


def _overrides(callback, *hooks):
    """True when `callback` (its class or an instance attribute) replaces one of `hooks`."""
    for hook in hooks:
        fn = getattr(callback, hook)
        if getattr(fn, "__func__", fn) is not getattr(Callback, hook):
            return True
    return False


class CallbackList:
    """Calls every callback's hook in order."""

    def __init__(self, callbacks, model):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)
        self.wants_batch_logs = any(
            _overrides(cb, "on_batch_end", "on_train_batch_end") for cb in self.callbacks)
        self.wants_batch_begin = any(
            _overrides(cb, "on_batch_begin", "on_train_batch_begin") for cb in self.callbacks)

    def call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def batch_begin(self, batch, logs):
        self.call("on_train_batch_begin", batch, logs)
        self.call("on_batch_begin", batch, logs)

    def batch_end(self, batch, logs):
        self.call("on_train_batch_end", batch, logs)
        self.call("on_batch_end", batch, logs)


class History(Callback):
    """Records epoch logs: `history.history['loss']` etc., `history.epoch`."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class LambdaCallback(Callback):
    """Callback from plain functions: LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_batch_begin=None,
                 on_batch_end=None, on_train_begin=None, on_train_end=None):
        for hook, fn in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                         ("on_batch_begin", on_batch_begin), ("on_batch_end", on_batch_end),
                         ("on_train_begin", on_train_begin), ("on_train_end", on_train_end)):
            if fn is not None:
                setattr(self, hook, fn)


def _monitor_mode(monitor, mode):
    if mode not in ("auto", "min", "max"):
        raise InvalidArgumentError(f"mode must be 'auto', 'min' or 'max', got {mode!r}.")
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.endswith("auc")) else "min"
    return mode


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs;
    optionally restore the weights of the best epoch (Keras semantics)."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = int(patience)
        self.verbose = verbose
        self.mode = _monitor_mode(monitor, mode)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch

    def _better(self, current, reference):
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._better(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or its weights) after each epoch; `filepath` may hold format fields
    such as '{epoch:02d}' or '{val_loss:.3f}'. Writes are atomic. A failed save (disk full,
    I/O error) raises `SaveError` and stops fit; `on_save_error="warn"` warns and trains on."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", on_save_error="raise"):
        if on_save_error not in ("raise", "warn"):
            raise InvalidArgumentError(f"on_save_error must be 'raise' or 'warn', got {on_save_error!r}.")
        self.on_save_error = on_save_error
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.mode = _monitor_mode(monitor, mode)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                return
            improved = current < self.best if self.mode == "min" else current > self.best
            if not improved:
                return
        if self.verbose:
            print(f"Epoch {epoch + 1}: saving model to {path}")
        try:
            (self.model.save_weights if self.save_weights_only else self.model.save)(path)
        except SaveError as exc:
            if self.on_save_error == "raise":
                raise
            warnings.warn(f"Epoch {epoch + 1}: checkpoint not saved, training goes on: {exc}",
                          RuntimeWarning, stacklevel=2)
            return
        if self.save_best_only:
            self.best = current


class BackupAndRestore(Callback):
    """Survive a killed run (Keras's name): at the end of every epoch, save the model's
    weights, optimizer state, the epoch and the RNG states into one file in `backup_dir`
    (atomically). A fit started again with the same callback restores them and continues
    after the last finished epoch; on CPU the result equals an uninterrupted run bit for
    bit. The backup is deleted when training completes (`delete_checkpoint=True`)."""

    FILENAME = "backup.npz"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        if save_freq != "epoch":
            raise InvalidArgumentError(f"BackupAndRestore supports save_freq='epoch' only, got {save_freq!r}.")
        self.backup_dir = os.fspath(backup_dir)
        self.delete_checkpoint = delete_checkpoint
        self.path = os.path.join(self.backup_dir, self.FILENAME)

    def on_train_begin(self, logs=None):
        if not os.path.exists(self.path):
            return
        from . import random as an_random
        from .backend import get_backend
        from .serialization import restore_backup
        state = restore_backup(self.model, self.path)
        if state.get("host_rng") is not None:
            an_random.set_state(state["host_rng"])
        get_backend().set_rng_state(state.get("device_rng"))
        self.model._resume_epoch = int(state.get("epoch", -1)) + 1

    def on_epoch_end(self, epoch, logs=None):
        from . import random as an_random
        from .backend import get_backend
        state = {"epoch": int(epoch), "host_rng": an_random.get_state(),
                 "device_rng": get_backend().get_rng_state(), "backend": get_backend().name}
        self.model.save(self.path, training_state=state)

    def on_train_end(self, logs=None):
        from . import distributed
        if self.delete_checkpoint and distributed.is_main():
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or inf. The model checks the loss of each
    step *before* applying it, so the weights from before the bad step are kept. This costs
    one host read per batch (on a GPU, a sync per batch), which is why it is opt-in."""

    check_loss_before_update = True


class CSVLogger(Callback):
    """Write epoch logs to a CSV file (rewritten atomically after every epoch)."""

    def __init__(self, filename, separator=",", append=False):
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append

    def on_train_begin(self, logs=None):
        self.rows = []
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                self.rows = list(csv.reader(f, delimiter=self.separator))

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        keys = sorted(logs)
        if not self.rows:
            self.rows.append(["epoch"] + keys)
        self.rows.append([str(epoch)] + [repr(float(logs[k])) for k in keys])
        from . import distributed
        if not distributed.is_main():
            return
        out = io.StringIO()
        csv.writer(out, delimiter=self.separator, lineterminator="\n").writerows(self.rows)
        fileio.write_text(self.filename, out.getvalue())

"""Keras 3's callbacks: hooks called by fit/evaluate/predict with a `logs` dict of floats.

Per-batch logs are read from the device only when a callback overrides a batch hook
(one host sync per batch on GPU); otherwise fit synchronises once per epoch. The
progress bar (`ProgbarLogger`) reads them lazily, a few times a second.

`on_batch_begin`/`on_batch_end` are Keras's aliases: the default `on_train_batch_*`
calls them, so a callback overriding both gets one call, as in Keras.
"""
import collections.abc
import contextlib
import csv
import io
import math
import numbers
import os
import time
import warnings

from . import fileio
from .errors import InvalidArgumentError, SaveError

_HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
          "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
          "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
          "on_predict_batch_begin", "on_predict_batch_end", "on_train_batch_loss")


class Callback:
    """Base class: override the hooks you need. fit sets `self.model` and `self.params`
    (`verbose`, `epochs`, `steps`)."""

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass

    def on_train_batch_loss(self, batch, logs=None):
        """accelnet's hook, before the step's update: `logs['loss']` is this batch's loss.
        Setting `self.model.stop_training = True` here skips the update."""


def _overrides(callback, *hooks):
    """True when `callback` (its class or an instance attribute) replaces one of `hooks`."""
    for hook in hooks:
        fn = getattr(callback, hook, None)
        if fn is not None and getattr(fn, "__func__", fn) is not getattr(Callback, hook):
            return True
    return False


class _LazyLogs(collections.abc.Mapping):
    """Batch logs read from the device on first access (for the progress bar)."""

    def __init__(self, read):
        self._read, self._logs = read, None

    def _get(self):
        if self._logs is None:
            self._logs = self._read()
        return self._logs

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())

    def copy(self):
        return dict(self._get())


class CallbackList:
    """Calls every callback's hook in order; adds History and the progress bar as
    Keras's CallbackList does. Batch hooks take a function that reads the logs, called
    only when some callback wants them."""

    def __init__(self, callbacks=None, model=None, add_history=False, add_progbar=False,
                 **params):
        self.callbacks = list(callbacks or [])
        self.history = None
        if add_history:
            self.history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
            if self.history is None:
                self.history = History()
                self.callbacks.append(self.history)
        if add_progbar and not any(isinstance(cb, ProgbarLogger) for cb in self.callbacks):
            self.callbacks.append(ProgbarLogger())
        for cb in self.callbacks:
            cb.set_model(model)
            cb.set_params(dict(params))
        self._wants = {kind: [cb for cb in self.callbacks if _overrides(cb, *hooks)] for kind, hooks in {
            "train_begin": ("on_train_batch_begin", "on_batch_begin"),
            "train_end": ("on_train_batch_end", "on_batch_end"),
            "test_begin": ("on_test_batch_begin",), "test_end": ("on_test_batch_end",),
            "predict_begin": ("on_predict_batch_begin",), "predict_end": ("on_predict_batch_end",),
            "loss": ("on_train_batch_loss",)}.items()}

    def wants(self, kind):
        return bool(self._wants[kind])

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def __getattr__(self, hook):
        if hook in _HOOKS:
            return lambda *args: self._call(hook, *args)
        raise AttributeError(hook)

    def batch(self, kind, hook, batch, read_logs):
        """Call `hook` on the callbacks that override it; logs are read once, eagerly
        unless every such callback reads them lazily."""
        targets = self._wants[kind]
        if not targets:
            return
        if all(getattr(cb, "_reads_logs_lazily", False) for cb in targets):
            logs = _LazyLogs(read_logs)
        else:
            logs = read_logs()
        for cb in targets:
            getattr(cb, hook)(batch, logs)


class History(Callback):
    """Records epoch logs: `history.history['loss']` etc., `history.epoch`, `params`."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        self.model.history = self


class ProgbarLogger(Callback):
    """Progress output of fit: verbose=1 a bar per epoch (tqdm), then a line per epoch
    ("Epoch 3/10 - 1.2s - loss: ... - val_loss: ..."); verbose=2 the lines only."""

    _reads_logs_lazily = True

    def on_train_begin(self, logs=None):
        self.verbose = self.params.get("verbose", 1)
        self.epochs = self.params.get("epochs", 1)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._refresh = self._start
        self._bar = None
        if self.verbose == 1:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.params.get("steps"), desc=f"Epoch {epoch + 1}/{self.epochs}",
                             unit="batch", leave=True)

    def on_train_batch_end(self, batch, logs=None):
        if self._bar is None:
            return
        self._bar.update(1)
        now = time.perf_counter()
        if now - self._refresh > 0.5 or batch + 1 == self.params.get("steps"):
            shown = {k: v for k, v in (logs or {}).items() if k != "acc" or "accuracy" not in logs}
            self._bar.set_postfix(shown, refresh=False)
            self._refresh = now

    def on_epoch_end(self, epoch, logs=None):
        if self._bar is not None:
            self._bar.close()
        if self.verbose in (1, 2):
            print(f"Epoch {epoch + 1}/{self.epochs} - {time.perf_counter() - self._start:.1f}s - "
                  + " - ".join(f"{k}: {v:.4f}" for k, v in (logs or {}).items()))


class LambdaCallback(Callback):
    """Callback from plain functions, with Keras 3's hook names:
    LambdaCallback(on_epoch_end=lambda epoch, logs: ..., on_train_batch_end=...)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 on_batch_begin=None, on_batch_end=None, **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin or on_batch_begin,
                     on_train_batch_end=on_train_batch_end or on_batch_end)
        for name, fn in kwargs.items():
            if name not in _HOOKS:
                raise InvalidArgumentError(f"LambdaCallback: unknown hook {name!r}; hooks are "
                                           f"{', '.join(_HOOKS)}.")
            hooks[name] = fn
        for hook, fn in hooks.items():
            if fn is not None:
                setattr(self, hook, fn)


# -- monitoring a logged quantity ----------------------------------------------------
class MonitorCallback(Callback):
    """Base of EarlyStopping, ModelCheckpoint and ReduceLROnPlateau: the monitored key,
    the direction (`mode`), `min_delta` and the improvement test, as Keras 3's."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode {mode!r} is unknown, fallback to auto mode.",
                          stacklevel=3)
            mode = "auto"
        self.monitor, self.mode = monitor, mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self._minimize = None

    def _direction(self):
        """True to minimise. 'auto': losses and errors down, accuracies up, else the
        metric object's `_direction`, else down unless the name says acc/auc."""
        if self.mode != "auto":
            return self.mode == "min"
        name = self.monitor.removeprefix("val_")
        if name == "loss" or name.endswith("loss"):
            return True
        for metric in getattr(self.model, "metrics", None) or []:
            if getattr(metric, "name", None) == name and hasattr(metric, "_direction"):
                return metric._direction != "up"
        return not ("acc" in name or name.endswith("auc"))

    def _is_improvement(self, current, reference):
        if self._minimize is None:
            self._minimize = self._direction()
        if reference is None:
            return True
        if self._minimize:
            return current + self.min_delta < reference
        return current - self.min_delta > reference


class EarlyStopping(MonitorCallback):
    """Stop when `monitor` has not improved by `min_delta` for `patience` epochs;
    optionally restore the weights of the best epoch (Keras 3 semantics)."""

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = int(patience)
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Early stopping conditioned on metric {self.monitor!r} which is not "
                          f"available. Available metrics are: {','.join(logs or {})}", stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
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


class ModelCheckpoint(MonitorCallback):
    """Save the model (or its weights) after each epoch, or every `save_freq` batches;
    `filepath` may hold format fields such as '{epoch:02d}', '{batch}' or
    '{val_loss:.3f}'. With `save_best_only`, only improvements over the best value so far
    (starting from `initial_value_threshold`) are saved; when the monitored value is not
    in the logs, Keras 3 warns and saves. Writes are atomic. A failed save (disk full, I/O
    error) raises `SaveError` and stops fit; `on_save_error="warn"` warns and trains on."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None, on_save_error="raise"):
        super().__init__(monitor, mode, initial_value_threshold)
        if on_save_error not in ("raise", "warn"):
            raise InvalidArgumentError(f"on_save_error must be 'raise' or 'warn', got {on_save_error!r}.")
        self.on_save_error = on_save_error
        self.filepath = os.fspath(filepath)
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq <= 0):
            raise InvalidArgumentError(f"ModelCheckpoint: save_freq must be 'epoch' or a positive "
                                       f"number of batches, got {save_freq!r}.")
        self.save_freq = save_freq
        self._batches_since_save = 0
        self._last_batch = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        added = batch + 1 if self._last_batch is None or batch <= self._last_batch else \
            batch - self._last_batch
        self._last_batch = batch
        self._batches_since_save += added
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._epoch, batch, dict(logs or {}))

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _path(self, epoch, batch, logs):
        fields = dict(logs)
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(epoch=epoch + 1, **fields)
        except KeyError as exc:
            raise InvalidArgumentError(f"ModelCheckpoint: filepath {self.filepath!r} names "
                                       f"{exc.args[0]!r}, which is not in the logs "
                                       f"({', '.join(logs)}).") from None

    def _should_save(self, epoch, logs, path):
        if not self.save_best_only:
            if self.verbose:
                print(f"Epoch {epoch + 1}: saving model to {path}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose:
                print(f"Epoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, "
                      f"saving model to {path}")
            self.best = current
            return True
        if self.verbose:
            print(f"Epoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _save(self, epoch, batch, logs):
        path = self._path(epoch, batch, logs)
        best_before = self.best
        if not self._should_save(epoch, logs, path):
            return
        try:
            (self.model.save_weights if self.save_weights_only else self.model.save)(path)
        except SaveError as exc:
            self.best = best_before  # the improvement was not saved
            if self.on_save_error == "raise":
                raise
            warnings.warn(f"Epoch {epoch + 1}: checkpoint not saved, training goes on: {exc}",
                          RuntimeWarning, stacklevel=2)


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by `factor` when `monitor` has not improved by
    `min_delta` for `patience` epochs; wait `cooldown` epochs after a reduction; never go
    below `min_lr`. Adds `learning_rate` to the epoch logs, as Keras 3."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise InvalidArgumentError(f"ReduceLROnPlateau does not support a factor >= 1.0, got "
                                       f"factor={factor}.")
        self.factor, self.patience, self.verbose = float(factor), int(patience), verbose
        self.cooldown, self.min_lr = int(cooldown), float(min_lr)
        self.cooldown_counter = self.wait = 0

    def on_train_begin(self, logs=None):
        self.best = None
        self.cooldown_counter = self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        logs["learning_rate"] = float(optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric {self.monitor!r} "
                          f"which is not available. Available metrics are: {','.join(logs)}.",
                          stacklevel=2)
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif self.cooldown_counter <= 0:
            self.wait += 1
            if self.wait >= self.patience:
                old = float(optimizer.learning_rate)
                if old > self.min_lr:
                    new = max(old * self.factor, self.min_lr)
                    optimizer.learning_rate = new
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch to `schedule(epoch, lr)` (or
    `schedule(epoch)`), and log it as `learning_rate`, as Keras 3."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:  # a one-argument schedule
            lr = self.schedule(epoch)
        if not isinstance(lr, numbers.Real) or not math.isfinite(float(lr)):
            raise InvalidArgumentError(f"LearningRateScheduler: the schedule must return a finite "
                                       f"number, got {lr!r} at epoch {epoch}.")
        optimizer.learning_rate = float(lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


# -- resuming and logging -------------------------------------------------------------
class BackupAndRestore(Callback):
    """Survive a killed run (Keras's name): at the end of every epoch, save the model's
    weights, optimizer state, the epoch and the RNG states into one file in `backup_dir`
    (atomically). A fit started again with the same callback restores them and continues
    after the last finished epoch; on CPU the result equals an uninterrupted run bit for
    bit. Weights and optimizer slots are restored by position, so a model rebuilt in the
    same process (new layer names) resumes too. The backup is deleted when training
    completes (`delete_checkpoint=True`)."""

    FILENAME = "backup.npz"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
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
    """Stop training when a batch's loss is NaN or inf. It looks at the loss *before* the
    step is applied (accelnet's `on_train_batch_loss` hook), so the weights from before
    the bad step are kept, where Keras keeps the NaN weights. This costs one host read
    per batch (on a GPU, a sync per batch), which is why it is opt-in."""

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_loss(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            print(f"Epoch {getattr(self, '_epoch', 0) + 1}, batch {batch}: invalid loss {loss}, "
                  f"terminating training; the weights from before this step are kept.")
            self.model.stop_training = True


class CSVLogger(Callback):
    """Write epoch logs to a CSV file (rewritten atomically after every epoch). Without
    validation data the `val_*` columns are written as NA, as Keras 3 does."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.filename = os.fspath(filename)
        self.separator = separator
        self.append = append

    def on_train_begin(self, logs=None):
        self.rows, self.keys = [], None
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                self.rows = list(csv.reader(f, delimiter=self.separator))
            if self.rows:
                self.keys = self.rows[0][1:]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if not any(k.startswith("val_") for k in self.keys):
                self.keys += [f"val_{k}" for k in self.keys]
        if not self.rows:
            self.rows.append(["epoch"] + self.keys)
        self.rows.append([str(epoch)] + [repr(float(logs[k])) if k in logs else "NA"
                                         for k in self.keys])
        from . import distributed
        if not distributed.is_main():
            return
        out = io.StringIO()
        csv.writer(out, delimiter=self.separator, lineterminator="\n").writerows(self.rows)
        fileio.write_text(self.filename, out.getvalue())

"""Callbacks in Keras 3's shape: hook names and order, the monitor base shared by
EarlyStopping/ModelCheckpoint/ReduceLROnPlateau, ModelCheckpoint(save_freq=N,
initial_value_threshold=), LambdaCallback, CSVLogger's NA columns, BackupAndRestore by
structure, TerminateOnNaN as a callback, and the data-parallel hooks of the step."""
import csv
import os
import warnings

import numpy as np
import pytest

import accelnet as an
from accelnet import callbacks as C
from accelnet import layers as L


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def model(seed=0, lr=0.05):
    an.random.seed(seed)
    m = an.Sequential([L.Dense(8, activation="relu", input_shape=(4,)),
                       L.Dense(2, activation="softmax")])
    m.compile(optimizer=an.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    return m


class Recorder(C.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_") and name != "on_train_batch_loss":
            calls = object.__getattribute__(self, "calls")
            return lambda *args: calls.append(name)
        return object.__getattribute__(self, name)


def test_hooks_are_called_in_keras_order():
    x, y = data(n=20)
    rec = Recorder()
    m = model()
    m.fit(x, y, batch_size=10, epochs=1, verbose=0, validation_data=(x[:10], y[:10]), callbacks=[rec])
    assert rec.calls == ["on_train_begin", "on_epoch_begin",
                         "on_train_batch_begin", "on_train_batch_end",
                         "on_train_batch_begin", "on_train_batch_end",
                         "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end",
                         "on_epoch_end", "on_train_end"]
    rec.calls.clear()
    m.evaluate(x, y, batch_size=20, verbose=0, callbacks=[rec])
    assert rec.calls == ["on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end"]
    rec.calls.clear()
    m.predict(x, batch_size=20, callbacks=[rec])
    assert rec.calls == ["on_predict_begin", "on_predict_batch_begin", "on_predict_batch_end",
                         "on_predict_end"]


def test_overriding_both_batch_end_hooks_gives_one_call_per_batch():
    class Both(C.Callback):
        def __init__(self):
            super().__init__()
            self.train, self.alias = [], []

        def on_train_batch_end(self, batch, logs=None):
            self.train.append(batch)

        def on_batch_end(self, batch, logs=None):
            self.alias.append(batch)

    x, y = data()
    both = Both()
    seen = []
    lam = C.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.append((batch, logs["loss"])))
    model().fit(x, y, batch_size=10, epochs=1, verbose=0, callbacks=[both, lam])
    assert both.train == [0, 1, 2, 3] and both.alias == []
    assert [b for b, _ in seen] == [0, 1, 2, 3] and all(isinstance(v, float) for _, v in seen)


def test_validation_still_runs_in_the_epoch_that_stops_training():
    x, y = data()
    stop = C.LambdaCallback(on_train_batch_end=lambda batch, logs: setattr(m, "stop_training", True))
    m = model()
    history = m.fit(x, y, batch_size=10, epochs=5, verbose=0, validation_split=0.25, callbacks=[stop])
    assert history.epoch == [0] and len(history.history["val_loss"]) == 1


def test_monitor_callbacks_share_one_base_and_direction():
    for cb in (C.EarlyStopping(), C.ModelCheckpoint("m.npz"), C.ReduceLROnPlateau()):
        assert isinstance(cb, C.MonitorCallback)
    m = model()
    acc = C.EarlyStopping(monitor="val_accuracy", min_delta=0.1)
    acc.set_model(m)
    assert acc._is_improvement(0.5, None)
    assert acc._is_improvement(0.71, 0.6) and not acc._is_improvement(0.69, 0.6)  # max, delta 0.1
    loss = C.ModelCheckpoint("m.npz", monitor="val_loss", mode="auto")
    loss.set_model(m)
    assert loss._is_improvement(0.4, 0.5) and not loss._is_improvement(0.6, 0.5)
    mae = C.EarlyStopping(monitor="val_mae")
    mae.set_model(m)
    assert mae._is_improvement(0.1, 0.2)  # errors go down


def test_early_stopping_min_delta_and_patience():
    m = model()
    stop = C.EarlyStopping(monitor="loss", min_delta=0.05, patience=2)
    stop.set_model(m)
    stop.on_train_begin()
    for epoch, loss in enumerate([1.0, 0.97, 0.96, 0.9]):  # 0.97, 0.96: within min_delta
        stop.on_epoch_end(epoch, {"loss": loss})
        if m.stop_training:
            break
    assert m.stop_training and stop.stopped_epoch == 2 and stop.best == 1.0


def test_checkpoint_save_best_only_without_the_monitored_value_warns_and_saves(tmp_path):
    x, y = data()
    path = tmp_path / "best.npz"
    cb = C.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    with pytest.warns(UserWarning, match="Can save best model only with val_loss available"):
        model().fit(x, y, epochs=1, verbose=0, callbacks=[cb])
    assert path.exists()


def test_checkpoint_every_n_batches_and_initial_threshold(tmp_path):
    x, y = data()  # 40 samples, batch 10: 4 batches per epoch
    pattern = str(tmp_path / "e{epoch}-b{batch}.npz")
    model().fit(x, y, batch_size=10, epochs=3, verbose=0,
                callbacks=[C.ModelCheckpoint(pattern, save_freq=3, save_weights_only=True)])
    # batches seen 3, 6, 9, 12 -> epoch 1 batch 3, epoch 2 batch 2, epoch 3 batches 1 and 4
    assert sorted(os.listdir(tmp_path)) == ["e1-b3.npz", "e2-b2.npz", "e3-b1.npz", "e3-b4.npz"]
    never = tmp_path / "never.npz"
    model().fit(x, y, epochs=2, verbose=0, callbacks=[
        C.ModelCheckpoint(never, monitor="loss", save_best_only=True, initial_value_threshold=0.0)])
    assert not never.exists()
    with pytest.raises(an.errors.InvalidArgumentError, match="save_freq"):
        C.ModelCheckpoint(pattern, save_freq="batch")


def test_reduce_lr_on_plateau_by_hand():
    m = model(lr=0.4)
    cb = C.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, cooldown=1, min_lr=0.1)
    cb.set_model(m)
    cb.on_train_begin()
    rates, logged = [], []
    for epoch in range(7):
        logs = {"val_loss": 1.0}
        cb.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
        rates.append(m.optimizer.learning_rate)
    # wait 1, 2 -> halve (cooldown 1); cooldown, wait 1, 2 -> halve to min_lr 0.1; then stays
    assert rates == [0.4, 0.4, 0.2, 0.2, 0.1, 0.1, 0.1]
    assert logged == [0.4, 0.4, 0.4, 0.2, 0.2, 0.1, 0.1]
    x, y = data()
    history = model().fit(x, y, epochs=2, verbose=0, callbacks=[C.ReduceLROnPlateau(monitor="loss")])
    assert history.history["learning_rate"] == [0.05, 0.05]
    with pytest.raises(an.errors.InvalidArgumentError, match="factor"):
        C.ReduceLROnPlateau(factor=1.5)


def test_csv_logger_writes_na_for_missing_validation(tmp_path):
    x, y = data()
    path = tmp_path / "log.csv"
    model().fit(x, y, epochs=2, verbose=0, callbacks=[C.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1"] and all(r[3:] == ["NA", "NA"] for r in rows[1:])


def test_backup_restores_optimizer_slots_by_structure_in_a_rebuilt_model(tmp_path):
    x, y = data()
    first = model(seed=1)
    first.fit(x, y, epochs=1, verbose=0,
              callbacks=[C.BackupAndRestore(tmp_path, delete_checkpoint=False)])
    rebuilt = model(seed=2)  # same architecture, new layer names (dense_2, dense_3, ...)
    assert list(rebuilt.trainable_params) != list(first.trainable_params)
    rebuilt.fit(x, y, epochs=1, verbose=0, callbacks=[C.BackupAndRestore(tmp_path)])  # nothing left to run
    assert rebuilt.optimizer.iterations == first.optimizer.iterations == 2
    for old_key, new_key in zip(first.trainable_params, rebuilt.trainable_params):
        for slot in ("m", "v"):
            np.testing.assert_array_equal(an.backend.to_numpy(rebuilt.optimizer.slots[slot][new_key]),
                                          an.backend.to_numpy(first.optimizer.slots[slot][old_key]))
    for a, b in zip(first.get_weights(), rebuilt.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_terminate_on_nan_is_a_callback_and_progress_is_one_too(capsys):
    assert issubclass(C.TerminateOnNaN, C.Callback) and issubclass(C.ProgbarLogger, C.Callback)
    x, y = data()
    m = model()
    m.fit(x, y, batch_size=10, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2 - " in out and "Epoch 2/2 - " in out and "accuracy: " in out
    m.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_the_step_reaches_ranks_only_through_the_data_parallel_hooks(monkeypatch):
    from accelnet import trainer

    class Recording(trainer.LocalTraining):
        def __init__(self):
            self.calls = []

        def __getattribute__(self, name):
            attr = object.__getattribute__(self, name)
            if name in ("start", "order", "shard", "begin_step", "layer_done", "finish_step"):
                calls = object.__getattribute__(self, "calls")

                def record(*args):
                    calls.append(name)
                    return attr(*args)
                return record
            return attr

    rec = Recording()
    monkeypatch.setattr(trainer, "_parallel", lambda: rec)
    x, y = data(n=20)
    model().fit(x, y, batch_size=10, epochs=1, verbose=0, shuffle=False)
    step = ["shard", "begin_step", "layer_done", "layer_done", "finish_step"]
    assert rec.calls == ["start", "order"] + step + step


def test_lambda_callback_accepts_every_keras_3_hook():
    calls = []
    cb = C.LambdaCallback(on_test_end=lambda logs: calls.append(("test_end", sorted(logs))),
                          on_predict_batch_end=lambda b, logs: calls.append(("pred", b)))
    x, y = data(n=10)
    m = model()
    m.evaluate(x, y, verbose=0, callbacks=[cb])
    m.predict(x, callbacks=[cb])
    assert calls == [("test_end", ["accuracy", "loss"]), ("pred", 0)]
    with pytest.raises(an.errors.InvalidArgumentError, match="unknown hook"):
        C.LambdaCallback(on_epoch_ending=print)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        C.EarlyStopping(monitor="loss")  # no warning at construction


def test_learning_rate_scheduler_sets_and_logs_the_rate():
    x, y = data()
    m = model(lr=0.1)
    history = m.fit(x, y, epochs=3, verbose=0, callbacks=[
        C.LearningRateScheduler(lambda epoch, lr: lr if epoch == 0 else lr * 0.5)])
    assert history.history["learning_rate"] == [0.1, 0.05, 0.025]
    history = m.fit(x, y, epochs=2, verbose=0,
                    callbacks=[C.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))])
    assert history.history["learning_rate"] == [0.01, 0.02]
    with pytest.raises(an.errors.InvalidArgumentError, match="finite number"):
        m.fit(x, y, epochs=1, verbose=0, callbacks=[C.LearningRateScheduler(lambda e, lr: None)])

"""Disk full and I/O errors during saves: injected at every write, flush, fsync, rename and
temporary-file creation of the file layer (and, where the machine allows a mount, on a
real 64 KiB filesystem). The previous file stays loadable and unchanged, no temporary file
is left, the error is a `SaveError` naming the file and the cause, and
`ModelCheckpoint(on_save_error="warn")` trains on."""
import collections
import errno
import os
import shutil
import subprocess
import tempfile
import warnings

import numpy as np
import pytest

import accelnet as an
from accelnet import fileio
from accelnet.errors import SaveError

OPS = ("mkstemp", "write", "flush", "fsync", "replace")
X = np.random.default_rng(0).standard_normal((16, 5)).astype(np.float32)
Y = np.arange(16) % 3


class Faults:
    """Counts the file layer's operations; fails the `nth` call of `op` with `err`."""

    def __init__(self, monkeypatch):
        self.calls = collections.Counter()
        self.op = self.nth = self.err = None
        real_fdopen, real_fsync, real_replace = os.fdopen, os.fsync, os.replace
        real_mkstemp = tempfile.mkstemp
        faults = self

        class File:
            def __init__(self, f):
                self._f = f

            def __getattr__(self, name):
                return getattr(self._f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self._f.__exit__(*exc)

            def write(self, data):
                faults.hit("write")
                return self._f.write(data)

            def flush(self):
                faults.hit("flush")
                return self._f.flush()

        monkeypatch.setattr(fileio.os, "fdopen", lambda fd, mode="r": File(real_fdopen(fd, mode)))
        monkeypatch.setattr(fileio.os, "fsync", lambda fd: (self.hit("fsync"), real_fsync(fd))[1])
        monkeypatch.setattr(fileio.os, "replace", lambda a, b: (self.hit("replace"), real_replace(a, b))[1])
        monkeypatch.setattr(fileio.tempfile, "mkstemp",
                            lambda *a, **k: (self.hit("mkstemp"), real_mkstemp(*a, **k))[1])

    def arm(self, op, nth, err):
        self.calls.clear()
        self.op, self.nth, self.err = op, nth, err

    def disarm(self):
        self.op = None

    def hit(self, op):
        self.calls[op] += 1
        if op == self.op and self.calls[op] == self.nth:
            self.op = None  # one fault; later saves succeed (the disk was cleaned up)
            raise OSError(self.err, os.strerror(self.err))


@pytest.fixture
def faults(monkeypatch):
    return Faults(monkeypatch)


def model(seed=0):
    an.random.seed(seed)
    m = an.Sequential([an.layers.Dense(4, activation="relu", input_shape=(5,)),
                       an.layers.BatchNormalization(), an.layers.Dense(3, activation="softmax")])
    m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def counts(faults, action):
    """How often each operation runs in one fault-free `action()`."""
    faults.arm(None, None, None)
    action()
    return dict(faults.calls)


def every_fault(faults, action, sample=False):
    """(op, n, errno) for every call of every operation `action` makes, ENOSPC and EIO in turn
    (`sample`: the first, middle and last call of each). The last fsync is the folder's,
    after the rename, and is left out: the new file is already in place by then."""
    positions = []
    for op, n in counts(faults, action).items():
        n -= op == "fsync"
        calls = sorted({1, (n + 1) // 2, n}) if sample else range(1, n + 1)
        positions += [(op, i, (errno.ENOSPC, errno.EIO)[i % 2]) for i in calls if i > 0]
    return positions


def assert_failed_cleanly(exc_info, path, err):
    exc = exc_info.value
    assert isinstance(exc, SaveError) and isinstance(exc, OSError) and exc.errno == err
    assert str(path) in str(exc) and os.strerror(err) in str(exc)


def only_files(folder, *names):
    assert sorted(os.listdir(folder)) == sorted(names), "a temporary file was left behind"


@pytest.mark.parametrize("what", ["save", "save_weights"])
def test_fault_at_every_step_of_a_save_keeps_the_previous_file(tmp_path, faults, what):
    path = tmp_path / "m.npz"
    m = model()
    getattr(m, what)(path)
    old_bytes, old_weights = path.read_bytes(), m.get_weights()
    m.set_weights([w + 1 for w in old_weights])
    tried = 0
    positions = list(every_fault(faults, lambda: getattr(m, what)(tmp_path / "probe.npz")))
    os.remove(tmp_path / "probe.npz")
    for op, n, err in positions:
        faults.arm(op, n, err)
        with pytest.raises(SaveError) as info:
            getattr(m, what)(path)
        assert_failed_cleanly(info, path, err)
        assert path.read_bytes() == old_bytes
        only_files(tmp_path, "m.npz")
        tried += 1
    assert tried >= 10
    loaded = an.models.load_model(path) if what == "save" else model(1)
    if what == "save_weights":
        loaded.load_weights(path)
    for a, b in zip(loaded.get_weights(), old_weights):
        np.testing.assert_array_equal(a, b)
    faults.arm("fsync", 2, errno.EIO)  # the folder's fsync fails after the rename: the new
    getattr(m, what)(path)              # file is complete and in place, so the save succeeds
    assert path.read_bytes() != old_bytes
    only_files(tmp_path, "m.npz")


class Recorder(an.callbacks.Callback):
    """Arms the fault at the start of epoch `arm_at` and keeps each epoch's weights."""

    def __init__(self, faults, fault, arm_at=1):
        self.faults, self.fault, self.arm_at, self.weights = faults, fault, arm_at, []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.arm_at:
            self.faults.arm(*self.fault)

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def probe_faults(faults, tmp_path, make_callback, sample=True):
    """Every fault position of one epoch-end save of `make_callback`'s callback."""
    probe = tmp_path / "probe"
    probe.mkdir()
    m = model()
    cb = make_callback(probe)
    cb.set_model(m)
    m.fit(X, Y, epochs=1, verbose=0)
    cb.on_train_begin({})
    faults_list = every_fault(faults, lambda: cb.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5}),
                              sample=sample)
    shutil.rmtree(probe)
    return faults_list


def test_model_checkpoint_fault_stops_fit_and_keeps_last_checkpoint(tmp_path, faults):
    folder = tmp_path / "ck"
    make = lambda d: an.callbacks.ModelCheckpoint(str(d / "ckpt.npz"), monitor="loss")
    for fault in probe_faults(faults, tmp_path, make):
        shutil.rmtree(folder, ignore_errors=True)
        m, rec = model(), Recorder(faults, fault)
        with pytest.raises(SaveError) as info:
            m.fit(X, Y, epochs=3, verbose=0, callbacks=[rec, make(folder)])
        assert_failed_cleanly(info, folder / "ckpt.npz", fault[2])
        assert len(rec.weights) == 2  # fit stopped at the failed save of epoch 2
        only_files(folder, "ckpt.npz")
        for a, b in zip(an.models.load_model(folder / "ckpt.npz").get_weights(), rec.weights[0]):
            np.testing.assert_array_equal(a, b)


def test_model_checkpoint_can_warn_and_train_on(tmp_path, faults):
    path = tmp_path / "ckpt.npz"
    m, rec = model(), Recorder(faults, ("fsync", 1, errno.ENOSPC))
    cb = an.callbacks.ModelCheckpoint(str(path), monitor="loss", save_best_only=True,
                                      on_save_error="warn")
    with pytest.warns(RuntimeWarning, match="checkpoint not saved.*No space left on device"):
        history = m.fit(X, Y, epochs=3, verbose=0, callbacks=[rec, cb])
    assert len(history.epoch) == 3
    for a, b in zip(an.models.load_model(path).get_weights(), rec.weights[2]):
        np.testing.assert_array_equal(a, b)  # epoch 3 saved again once the disk had room
    only_files(tmp_path, "ckpt.npz")
    with pytest.raises(an.errors.InvalidArgumentError, match="on_save_error"):
        an.callbacks.ModelCheckpoint(str(path), on_save_error="ignore")


def test_backup_fault_keeps_previous_backup_and_resumes(tmp_path, faults):
    folder = tmp_path / "bk"
    make = lambda d: an.callbacks.BackupAndRestore(str(d))
    for fault in probe_faults(faults, tmp_path, make):
        shutil.rmtree(folder, ignore_errors=True)
        m, rec = model(), Recorder(faults, fault)
        with pytest.raises(SaveError) as info:
            m.fit(X, Y, epochs=3, verbose=0, callbacks=[rec, make(folder)])
        assert_failed_cleanly(info, folder / "backup.npz", fault[2])
        only_files(folder, "backup.npz")
        assert an.serialization.read_training_state(folder / "backup.npz")["epoch"] == 0
    resumed = model()
    history = resumed.fit(X, Y, epochs=3, verbose=0, callbacks=[make(folder)])
    assert history.epoch == [1, 2] and not os.listdir(folder)


def test_csv_logger_fault_keeps_previous_log(tmp_path, faults):
    path = tmp_path / "log" / "train.csv"
    make = lambda d: an.callbacks.CSVLogger(str(d / "train.csv"))
    for fault in probe_faults(faults, tmp_path, make, sample=False):
        shutil.rmtree(path.parent, ignore_errors=True)
        m, rec = model(), Recorder(faults, fault)
        with pytest.raises(SaveError) as info:
            m.fit(X, Y, epochs=3, verbose=0, callbacks=[rec, make(path.parent)])
        assert_failed_cleanly(info, path, fault[2])
        only_files(path.parent, "train.csv")
        lines = path.read_text().splitlines()
        # Keras 3 writes the val_* columns (as NA) even without validation data
        assert lines[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(lines) == 2 \
            and lines[1].startswith("0,")


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 64 KiB tmpfs (root and mount permission needed; skipped otherwise)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tiny tmpfs here (needs root and mount permission)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_real_full_disk_keeps_previous_checkpoint(tiny_fs):
    small = an.Sequential([an.layers.Dense(4, input_shape=(1000,))])  # ~16 KB on disk
    big = an.Sequential([an.layers.Dense(16, input_shape=(1000,))])   # ~64 KB: no room
    small.save(tiny_fs / "m.npz")
    before = (tiny_fs / "m.npz").read_bytes()
    with pytest.raises(SaveError) as info:
        big.save(tiny_fs / "m.npz")
    assert_failed_cleanly(info, tiny_fs / "m.npz", errno.ENOSPC)
    assert (tiny_fs / "m.npz").read_bytes() == before
    only_files(tiny_fs, "m.npz")
    assert an.models.load_model(tiny_fs / "m.npz").count_params() == small.count_params()

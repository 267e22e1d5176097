"""Crash-safe file writing: every file accelnet writes goes through `atomic_write`.

The data go to a temporary file in the target's directory, are flushed and fsynced,
then renamed over the target (atomic on POSIX), and the directory is fsynced. A process
killed at any moment leaves either the old file or the new one, never half of one.
"""
import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Context manager yielding a file object; on clean exit it replaces `path` atomically."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory):
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path, data):
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path, text):
    with atomic_write(path, "w") as f:
        f.write(text)

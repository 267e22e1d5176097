"""Crash-safe file writing (`atomic_write`) and bounded reading of `.npz` archives (`NpzArchive`).

The data go to a temporary file in the target's directory, are flushed and fsynced,
then renamed over the target (atomic on POSIX), and the directory is fsynced. A process
killed at any moment leaves either the old file or the new one, never half of one.
"""
import contextlib
import lzma
import math
import os
import struct
import tempfile
import tokenize
import zipfile
import zlib

import numpy

from .errors import SaveError


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Context manager yielding a file object; on clean exit it replaces `path` atomically.

    Any OSError on the way (disk full, I/O error, read-only folder) becomes a `SaveError`
    naming `path` and the cause; the temporary file is removed and `path` is untouched.
    The temporary name is unique (mkstemp), so concurrent writers never share one.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                                   dir=directory)
        try:
            f = os.fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, SaveError):
            raise save_error(path, exc) from exc
        raise
    _fsync_dir(directory)


def save_error(path, exc):
    """SaveError for a failed write of `path`, with the OSError's errno and reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    error = SaveError(exc.errno, f"Cannot write {path!r}: {reason}. The previous version of the "
                                 f"file (if any) is unchanged and no partial file was left.")
    error.filename = path
    return error


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


# -- bounded reading of .npz archives ----------------------------------------------------
# Unpacked size an archive may claim, as a multiple of its size on disk: generous for
# np.savez_compressed (MNIST's is 5x), far below what a zip bomb or a forged size needs.
NPZ_EXPANSION = 64
NPZ_MIN_LIMIT = 1 << 20
# What a corrupt zip or .npy stream can raise from zipfile, zlib, bz2/lzma and numpy's
# header parser; caught only around reading untrusted bytes, and reported with the path.
_CORRUPT = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, ValueError,
            NotImplementedError, RuntimeError, struct.error, KeyError, IndexError, TypeError,
            OverflowError, SyntaxError, tokenize.TokenError, lzma.LZMAError)


class NpzArchive:
    """A `.npz` file opened for reading with every size checked before it is allocated.

    Unlike `numpy.load`, it never unpickles, never hands back raw bytes for a member that
    is not a `.npy` array, and refuses an archive whose members claim more bytes than
    `NPZ_EXPANSION` times the file's size, or a member whose `.npy` header declares a
    shape that its stored bytes do not hold. Every failure is a `DataFileError` naming
    `path` and the member. `kind` words the messages ("model file", ".npz file").
    """

    def __init__(self, path, kind=".npz file"):
        from .errors import DataFileError
        self.path, self.kind = os.fspath(path), kind
        try:
            self._zip = zipfile.ZipFile(self.path)
            infos = self._zip.infolist()
        except _CORRUPT as exc:
            raise DataFileError(f"{self.path!r} is not a readable {kind} (truncated, corrupt or "
                                f"another format): {type(exc).__name__}: {exc}") from None
        limit = max(NPZ_EXPANSION * os.path.getsize(self.path), NPZ_MIN_LIMIT)
        claimed = sum(i.file_size for i in infos)
        if claimed > limit:
            self._zip.close()
            big = max(infos, key=lambda i: i.file_size)
            raise DataFileError(f"{self.path!r}: its entries claim {claimed} bytes unpacked (entry "
                                f"{big.filename!r}: {big.file_size}), far more than the file's "
                                f"{os.path.getsize(self.path)} bytes can hold; refusing to load it.")
        self._infos = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy")}
        self.files = list(self._infos)

    def __contains__(self, key):
        return key in self._infos

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._zip.close()

    def read(self, key):
        """The array stored as `key` (a fresh, writable ndarray)."""
        from .errors import DataFileError
        info = self._infos.get(key)
        if info is None:
            raise DataFileError(f"{self.path!r} has no entry {key!r}; the {self.kind} is incomplete.")
        where = f"{self.path!r}: entry {key!r}"
        try:
            with self._zip.open(info) as f:
                version = numpy.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = numpy.lib.format.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = numpy.lib.format.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                if dtype.hasobject:
                    raise DataFileError(f"{where} holds pickled (object) data, which accelnet "
                                        f"refuses to load for safety.")
                count = math.prod(shape)
                nbytes = count * dtype.itemsize
                stored = info.file_size - f.tell()
                if nbytes != stored:
                    raise DataFileError(f"{where} declares shape {shape} of {dtype} ({nbytes} "
                                        f"bytes) but stores {stored} bytes; the file is corrupt.")
                arr = numpy.empty(count, dtype)
                view, got = memoryview(arr).cast("B"), 0
                while got < nbytes:
                    n = f.readinto(view[got:])
                    if not n:
                        raise EOFError(f"data ends after {got} of {nbytes} bytes")
                    got += n
        except DataFileError:
            raise
        except _CORRUPT as exc:
            raise DataFileError(f"{where} is corrupt or truncated: {type(exc).__name__}: "
                                f"{exc}") from None
        return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)

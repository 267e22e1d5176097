"""accelnet's exception hierarchy.

Every error accelnet raises on purpose derives from `AccelnetError`, and each subclass
also derives from the matching builtin so that generic handlers (`except ValueError`)
still catch it. Messages name the layer/argument/file and the expected vs actual value.
"""
import difflib


class AccelnetError(Exception):
    """Base class of every error accelnet raises on purpose."""


class BackendError(AccelnetError, RuntimeError):
    """The requested array backend (e.g. the GPU) cannot be used here."""


class ShapeError(AccelnetError, ValueError):
    """An array's shape does not match what a layer, loss or model expects."""


class InvalidArgumentError(AccelnetError, ValueError):
    """An argument value is out of range or otherwise invalid."""


class InvalidDTypeError(AccelnetError, TypeError):
    """An array has a dtype accelnet cannot compute with (object, string, ...)."""


class UnknownNameError(AccelnetError, ValueError):
    """A string names no known layer, activation, loss, optimizer or initializer."""


class NotCompiledError(AccelnetError, RuntimeError):
    """A model was trained or evaluated before `compile()`."""


class DataFileError(AccelnetError, ValueError):
    """A data or model file is truncated, corrupt, hostile or of an unknown format."""


class DataNotFoundError(AccelnetError, FileNotFoundError):
    """A data set's files are not on disk and cannot be downloaded."""


class SaveError(AccelnetError, OSError):
    """Writing a file failed (disk full, I/O error, ...); the previous version is unchanged.
    `errno` and `filename` are the OSError's, so `except OSError` handlers still work."""

    def __str__(self):  # the message already names the file
        return self.strerror if self.errno is None else f"[Errno {self.errno}] {self.strerror}"


class OutOfMemoryError(AccelnetError, MemoryError):
    """A layer could not allocate an array (host RAM, or GPU memory through CuPy); the
    message names the layer, the input shape, the bytes asked for and what to change."""


class TrainingError(AccelnetError, RuntimeError):
    """Training cannot go on (e.g. the loss became NaN)."""


def unknown_name(kind, name, valid):
    """Build an UnknownNameError listing the valid names and the closest match."""
    valid = sorted(valid)
    # difflib finds the candidates; the fewest typos (a swap counts as one) picks among them,
    # so 'adma' suggests 'adam', not the longer 'adamax'.
    close = difflib.get_close_matches(str(name), valid, n=3)
    close.sort(key=lambda c: _typos(str(name), c))
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownNameError(
        f"Unknown {kind} {name!r}.{hint} Valid {kind} names: {', '.join(valid)}.")


def _typos(a, b):
    """Edit distance counting an insertion, deletion, substitution or swap of neighbours as one."""
    prev2, prev = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]

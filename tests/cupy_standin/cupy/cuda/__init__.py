"""cupy.cuda of the stand-in: devices, streams, the memory pool, the runtime versions."""
from . import memory, runtime

_current = [0]


class Device:
    """A CUDA device id; `use()` makes it current (as CuPy, per thread: here per process)."""

    def __init__(self, device=None):
        self.id = _current[0] if device is None else int(device)

    def use(self):
        if not 0 <= self.id < runtime.getDeviceCount():
            raise runtime.CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
        _current[0] = self.id

    def synchronize(self):
        pass

    def __enter__(self):
        self._previous = _current[0]
        self.use()
        return self

    def __exit__(self, *exc):
        _current[0] = self._previous

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def _reset_current():
    _current[0] = 0


class Stream:
    """A stream: a pointer, a context manager that makes it current, a no-op synchronize."""

    _next_ptr = [0x1000]

    def __init__(self, null=False, non_blocking=False, ptds=False):
        if null:
            self.ptr = 0
        else:
            Stream._next_ptr[0] += 16
            self.ptr = Stream._next_ptr[0]
        self._previous = []

    def synchronize(self):
        pass

    def use(self):
        _stream[0] = self
        return self

    def __enter__(self):
        self._previous.append(_stream[0])
        _stream[0] = self
        return self

    def __exit__(self, *exc):
        _stream[0] = self._previous.pop()


_stream = [Stream(null=True)]


def get_current_stream():
    return _stream[0]


def is_available():
    return runtime.getDeviceCount() > 0



"""Ctrl-C between training steps, never inside one.

`deferred_sigint()` holds SIGINT while a block runs and delivers it right after, through
the handler that was installed (normally Python's, raising KeyboardInterrupt). Training
wraps each step (forward with its BatchNormalization statistics, backward, and the
optimizer's update of every parameter and slot) in it, so an interrupted `fit` leaves the
model exactly at the end of a completed step and `model.save` works at once. A step that
hangs cannot be stopped with Ctrl-C; SIGQUIT (Ctrl-\\) or SIGTERM still can.
"""
import os
import signal
import threading

try:  # the C functions behind `signal`: no enum conversion (~5 us per call there)
    import _signal as _raw
except ImportError:  # pragma: no cover - other Pythons
    _raw = signal

_active = threading.local()


class deferred_sigint:
    """Run the block with SIGINT held; a SIGINT that arrived meanwhile is delivered after it.

    A no-op outside the main thread (signals are delivered there only), inside another
    deferred block, and when the SIGINT handler was not installed from Python.
    """

    __slots__ = ("_previous", "_received")

    def __enter__(self):
        previous = _raw.getsignal(signal.SIGINT)
        if (previous is None or getattr(_active, "on", False)
                or threading.current_thread() is not threading.main_thread()):
            self._previous = None
            return self
        self._previous = previous
        self._received = received = []
        _raw.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
        _active.on = True
        return self

    def __exit__(self, *exc_info):
        previous = self._previous
        if previous is not None:
            _active.on = False
            _raw.signal(signal.SIGINT, previous)
            if self._received:
                _deliver(previous, self._received[-1])
        return False


def _deliver(handler, frame):
    if isinstance(handler, int):  # the raw SIG_DFL / SIG_IGN
        handler = signal.Handlers(handler)
    if handler is signal.SIG_IGN:
        return
    if handler is signal.SIG_DFL:  # the default action: terminate by SIGINT
        os.kill(os.getpid(), signal.SIGINT)
        return
    handler(signal.SIGINT, frame)  # Python's default raises KeyboardInterrupt here

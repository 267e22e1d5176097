"""Ctrl-C between training steps, never inside one.

`deferred_sigint()` holds SIGINT while a block runs and delivers it right after, through
the handler that was installed (normally Python's, raising KeyboardInterrupt). Training
wraps each step (forward with its BatchNormalization statistics, backward, and the
optimizer's update of every parameter and slot) in it, so an interrupted `fit` leaves the
model exactly at the end of a completed step and `model.save` works at once. A step that
hangs cannot be stopped with Ctrl-C; SIGQUIT (Ctrl-\\) or SIGTERM still can.
"""
import contextlib
import os
import signal
import threading

_active = threading.local()


@contextlib.contextmanager
def deferred_sigint():
    """Run the block with SIGINT held; a SIGINT that arrived meanwhile is delivered after it.

    A no-op outside the main thread (signals are delivered there only), inside another
    deferred block, and when the SIGINT handler was not installed from Python.
    """
    previous = signal.getsignal(signal.SIGINT)
    if (getattr(_active, "on", False) or previous is None
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    _active.on = True
    try:
        yield
    finally:
        _active.on = False
        signal.signal(signal.SIGINT, previous)
        if received:
            _deliver(previous, received[-1])


def _deliver(handler, frame):
    if handler is signal.SIG_IGN:
        return
    if handler is signal.SIG_DFL:  # the default action: terminate by SIGINT
        os.kill(os.getpid(), signal.SIGINT)
        return
    handler(signal.SIGINT, frame)  # Python's default raises KeyboardInterrupt here

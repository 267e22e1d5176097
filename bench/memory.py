"""Peak memory of a block: host RSS sampled by a thread every ~5 ms (plus the kernel's
high-water mark where Linux lets us reset it), and optionally device bytes.

Before each measurement `settle()` collects garbage and asks glibc to hand freed heap
back to the OS (malloc_trim), so one contender's freed buffers do not hide the next
one's growth. The allocator's policy is left alone, so timings are unaffected.
"""
import ctypes
import gc
import threading

import psutil

MIB = 2 ** 20
_process = psutil.Process()


def rss():
    """Resident set size of this process, bytes."""
    return _process.memory_info().rss


def settle():
    """Collect garbage and return free heap pages to the OS (glibc only)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_high_water_mark():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _high_water_mark():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakSampler:
    """`with PeakSampler(device_bytes) as p: ...` -> p.host_peak / p.device_peak: bytes
    above the level at entry (device_bytes: a callable giving device bytes in use)."""

    def __init__(self, device_bytes=None, interval=0.005):
        self.device_bytes = device_bytes
        self.interval = interval
        self.host_peak = 0
        self.device_peak = None

    def _sample(self):
        self._host_max = max(self._host_max, rss())
        if self.device_bytes is not None:
            self._dev_max = max(self._dev_max, self.device_bytes())

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        settle()
        self._host_base = self._host_max = rss()
        self._dev_base = self._dev_max = self.device_bytes() if self.device_bytes else 0
        self._hwm = _reset_high_water_mark()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        if self._hwm:
            self._host_max = max(self._host_max, _high_water_mark())
        self.host_peak = self._host_max - self._host_base
        if self.device_bytes is not None:
            self.device_peak = self._dev_max - self._dev_base
        return False

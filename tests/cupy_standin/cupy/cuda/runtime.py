"""cupy.cuda.runtime of the stand-in: device count and versions set by environment variables."""
import os


class CUDARuntimeError(RuntimeError):
    pass


def getDeviceCount():
    return int(os.environ.get("STANDIN_CUPY_DEVICES", "1"))


def driverGetVersion():
    return int(os.environ.get("STANDIN_CUPY_DRIVER", "13000"))


def runtimeGetVersion():
    return int(os.environ.get("STANDIN_CUPY_RUNTIME", "13000"))


def getDeviceProperties(device_id):
    return {"name": b"CuPy stand-in (NumPy)", "totalGlobalMem": 2 ** 34, "major": 9, "minor": 0}


def memGetInfo():
    return 2 ** 33, 2 ** 34

"""The direct numba-cuda launch (kernels/_cuda_launch.py, on unless ACCELNET_CUDA_FAST_LAUNCH=0): the
parameter list follows numba-cuda's kernel ABI, the first launch of a signature goes through
numba and later ones through the remembered overload, and anything it cannot launch stays with
numba. On a real GPU (marker `gpu`) every numba-cuda parity test also passes with it on."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from accelnet.kernels import _cuda_launch

numba_types = pytest.importorskip("numba.core.types")
ROOT = Path(__file__).resolve().parents[1]


class DeviceArray:
    """What the fast path reads from a CuPy array: dtype, shape, strides (bytes), size, flags,
    data.ptr, and its type's module (a CuPy array's is cupy's)."""

    def __init__(self, host, ptr=0x7F0000001000):
        self.host = host
        self.dtype, self.shape, self.strides = host.dtype, host.shape, host.strides
        self.size, self.ndim, self.flags = host.size, host.ndim, host.flags
        self.data = type("Pointer", (), {"ptr": ptr})()


DeviceArray.__module__ = "cupy._fake"  # what is_device_array reads, as for the stand-in


def test_array_parameters_follow_numba_cudas_abi():
    a = DeviceArray(np.zeros((3, 5), np.float32)[:, 1:4])
    assert _cuda_launch.array_params(a) == [0, 0, 9, 4, 0x7F0000001000, 3, 3, 20, 4]


@pytest.mark.parametrize("ty,value,ctype", [("int64", 7, "c_int64"), ("int32", -3, "c_int32"),
                                            ("uint8", 255, "c_uint8"), ("float64", 0.5, "c_double"),
                                            ("float32", 0.25, "c_float")])
def test_scalar_parameters_are_ctypes_of_their_numba_type(ty, value, ctype):
    import ctypes
    param = _cuda_launch.scalar_param(getattr(numba_types, ty), value)
    assert type(param) is getattr(ctypes, ctype) and param.value == value


def test_booleans_pass_as_they_are_and_other_types_are_refused():
    assert _cuda_launch.scalar_param(numba_types.boolean, True) is True
    assert _cuda_launch.params([numba_types.complex64], [1j]) is None


def test_signature_key_tells_layouts_dtypes_and_scalar_types_apart():
    c = DeviceArray(np.zeros((4, 4), np.float32))
    f = DeviceArray(np.zeros((4, 4), np.float32, order="F"))
    a = DeviceArray(np.zeros((4, 4), np.float32)[:, ::2])
    d = DeviceArray(np.zeros((4, 4), np.float64))
    keys = {_cuda_launch.signature_key([x, 1]) for x in (c, f, a, d)}
    assert len(keys) == 4
    assert _cuda_launch.signature_key([c, 1]) != _cuda_launch.signature_key([c, 1.0])
    assert _cuda_launch.signature_key([c, np.float32(1)]) != _cuda_launch.signature_key([c, 1.0])


class FakeKernel:
    debug = cooperative = False
    extensions = []
    argument_types = (numba_types.Array(numba_types.float32, 1, "C"), numba_types.int64)

    class _codelibrary:
        @staticmethod
        def get_cufunc():
            return type("CuFunc", (), {"kernel": "the cuda.core kernel"})()


class FakeDispatcher:
    def __init__(self, kernel):
        self.overloads = {FakeKernel.argument_types: kernel}

    def typeof_pyval(self, value):
        return FakeKernel.argument_types[0] if hasattr(value, "dtype") else numba_types.int64


def test_first_launch_is_numbas_then_the_remembered_overload_launches(monkeypatch):
    from numba.cuda import dispatcher as numba_dispatcher
    calls = []
    monkeypatch.setattr(numba_dispatcher, "launch", lambda *a: calls.append(a))
    monkeypatch.setattr(_cuda_launch, "core_stream", lambda stream: stream)
    monkeypatch.setattr(_cuda_launch, "_entries", {})
    dispatcher, x = FakeDispatcher(FakeKernel()), DeviceArray(np.zeros(6, np.float32))
    key = _cuda_launch.signature_key([x, 6])
    assert not _cuda_launch.try_launch(dispatcher, key, 2, 32, "stream", [x, 6])  # not seen yet
    _cuda_launch.remember(dispatcher, key, [x, 6])
    assert _cuda_launch.try_launch(dispatcher, key, 2, 32, "stream", [x, 6])
    (stream, config, kernel, *values), = calls
    assert stream == "stream" and kernel == "the cuda.core kernel"
    assert values[:7] == [0, 0, 6, 4, x.data.ptr, 6, 4] and values[7].value == 6


@pytest.mark.parametrize("flag", ["debug", "cooperative", "launch_config_sensitive"])
def test_debug_cooperative_or_launch_config_kernels_keep_numbas_launch(monkeypatch, flag):
    monkeypatch.setattr(_cuda_launch, "_entries", {})
    kernel = FakeKernel()
    setattr(kernel, flag, True)
    dispatcher, x = FakeDispatcher(kernel), DeviceArray(np.zeros(6, np.float32))
    key = _cuda_launch.signature_key([x, 6])
    _cuda_launch.remember(dispatcher, key, [x, 6])
    assert _cuda_launch.known(dispatcher, key)
    assert not _cuda_launch.try_launch(dispatcher, key, 2, 32, "stream", [x, 6])


def test_fast_launch_is_on_unless_turned_off_or_its_check_failed(monkeypatch):
    monkeypatch.setattr(_cuda_launch, "_check", {})
    monkeypatch.delenv(_cuda_launch.ENV_VAR, raising=False)
    assert _cuda_launch.enabled()
    monkeypatch.setenv(_cuda_launch.ENV_VAR, "0")
    assert not _cuda_launch.enabled()
    monkeypatch.setenv(_cuda_launch.ENV_VAR, "1")
    assert _cuda_launch.enabled()
    _cuda_launch.record_check("the direct launch gave a wrong result")
    assert not _cuda_launch.enabled() and _cuda_launch.check_problem()
    _cuda_launch.record_check(None)
    assert _cuda_launch.enabled()


def test_a_failed_start_up_check_turns_the_direct_launch_off_with_a_warning(monkeypatch):
    from accelnet.kernels import _cuda
    monkeypatch.setattr(_cuda_launch, "_check", {})
    monkeypatch.delenv(_cuda_launch.ENV_VAR, raising=False)

    def internals_changed():
        raise AttributeError("'_Kernel' object has no attribute '_codelibrary'")

    monkeypatch.setattr(_cuda._probe_params_kernel, "dispatcher", internals_changed)
    with pytest.warns(RuntimeWarning, match="start-up check failed .*_codelibrary"):
        problem = _cuda.check_fast_launch(np)
    assert problem.startswith("AttributeError") and not _cuda_launch.enabled()


@pytest.mark.gpu
def test_the_start_up_check_passes_on_this_gpu():
    """The GPU backend's start ran check_fast_launch; on a tested numba-cuda it passes."""
    import cupy

    from accelnet.kernels import _cuda
    assert _cuda.check_fast_launch(cupy) is None
    assert _cuda_launch.enabled() or os.environ.get(_cuda_launch.ENV_VAR) == "0"


@pytest.mark.gpu
def test_numba_cuda_parity_holds_with_the_fast_launch():
    """Every numba-cuda parity test and the real-GPU training comparison, in a process with
    the fast launch on; the parity modules run twice (--keep-duplicates), so every kernel
    signature is launched again through the fast path after numba's first launch."""
    env = dict(os.environ, ACCELNET_CUDA_FAST_LAUNCH="1")
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    modules = ["tests/test_kernel_parity.py", "tests/test_kernels_batch_norm.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m",
                           "gpu", "--keep-duplicates", "-k", "numba-cuda or real_gpu",
                           *modules, *modules, "tests/test_cross_device.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout

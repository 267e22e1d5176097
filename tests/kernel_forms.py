"""Every form a kernel can run in, for one parametrized test body per property (Thinc's
ALL_OPS, Chainer's check_*(gpu)).

- `reference-numpy`, `numba-cpu`: NumPy arrays, in the main test process;
- `reference-standin`: the CuPy reference forms on the CuPy stand-in (main process);
- `numba-cuda-sim`: the numba-cuda forms on stand-in arrays under Numba's CUDA simulator,
  run by tests/test_cuda_simulator.py in a subprocess with NUMBA_ENABLE_CUDASIM=1;
- `reference-cupy`, `numba-cuda`: real CuPy on a GPU (marker `gpu`, skipped otherwise).

Each form runs the public, dispatching kernel functions under `kernels.implementation`,
so the dispatcher is exercised too; `device(host_array)` moves inputs to the form's device
and `host(result)` brings results back explicitly.
"""
import contextlib
import os

import numpy as np
import pytest

from accelnet import kernels

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


class Form:
    def __init__(self, name, family, arrays, expected):
        self.name, self.family, self.arrays, self.expected = name, family, arrays, expected

    def xp(self):
        if self.arrays == "numpy":
            return np
        if self.arrays == "standin":
            from gpu_standin import install
            return install()
        import cupy
        return cupy

    def device(self, a):
        return a if self.arrays == "numpy" else self.xp().asarray(a)

    def host(self, a):
        return a if isinstance(a, np.ndarray) else self.xp().asnumpy(a)

    def is_device_array(self, a):
        return isinstance(a, self.xp().ndarray)

    @contextlib.contextmanager
    def running(self):
        with kernels.implementation(self.family):
            yield

    def __repr__(self):
        return self.name


_MAIN = pytest.mark.skipif(SIM, reason="runs in the main test process")
_SIM_ONLY = pytest.mark.skipif(not SIM, reason="runs under the CUDA simulator "
                                               "(tests/test_cuda_simulator.py's subprocess)")
ALL_FORMS = [
    pytest.param(Form("reference-numpy", "reference", "numpy", "reference"), marks=_MAIN,
                 id="reference-numpy"),
    pytest.param(Form("numba-cpu", "numba", "numpy", "numba-cpu"), marks=_MAIN, id="numba-cpu"),
    pytest.param(Form("reference-standin", "reference", "standin", "reference"), marks=_MAIN,
                 id="reference-standin"),
    pytest.param(Form("numba-cuda-sim", "numba", "standin", "numba-cuda"), marks=_SIM_ONLY,
                 id="numba-cuda-sim"),
    pytest.param(Form("reference-cupy", "reference", "cupy", "reference"),
                 marks=[pytest.mark.gpu, _MAIN], id="reference-cupy"),
    pytest.param(Form("numba-cuda", "numba", "cupy", "numba-cuda"),
                 marks=[pytest.mark.gpu, _MAIN], id="numba-cuda"),
]

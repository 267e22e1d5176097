"""The real GpuBackend on the CuPy stand-in: the defects of issue 11 §1, each reproduced.

Every test here failed before its fix (see the issue): a backup on the GPU, the CUDA
version rule, missing compiler libraries, binding a rank's device, the errors table."""
import warnings

import numpy as np
import pytest

import accelnet as an
from accelnet import backend as an_backend
from accelnet import kernels
from accelnet.errors import BackendError
from accelnet.kernels import _cuda

from conftest import real_gpu_available
from gpu_standin import environment, gpu_backend, install

pytestmark = pytest.mark.filterwarnings("ignore:accelnet. numba-cuda cannot")


def _mlp():
    # explicit names: optimizer slots are keyed by layer name (issue 12 restores by structure)
    return an.Sequential([an.layers.Dense(16, activation="relu", input_shape=(6,), name="d1"),
                          an.layers.Dropout(0.3, name="drop"),
                          an.layers.Dense(3, activation="softmax", name="d2")])


def _data(n=96):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def _train(epochs, backup_dir=None, initial_model=None):
    an.random.seed(7)
    model = _mlp()
    model.compile(an.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    x, y = _data()
    callbacks = [an.callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False)] \
        if backup_dir else []
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=callbacks)
    return [np.array(w) for w in model.get_weights()]


@pytest.mark.parametrize("device", ["cpu", "standin-gpu"])
def test_backup_and_restore_resumes_exactly(device, tmp_path):
    """GPU: the backup no longer stores CuPy's `bit_generator.state` method (it crashed the
    JSON header); on every device a resumed run equals an uninterrupted one bit for bit."""
    def run():
        full = _train(4)
        _train(2, tmp_path)                  # killed after epoch 2 (its backup stays)
        resumed = _train(4, tmp_path)        # a new model in the same process: resumes
        return full, resumed
    if device == "cpu":
        full, resumed = run()
    else:
        with gpu_backend():
            full, resumed = run()
    for a, b in zip(full, resumed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("driver,runtime,ok", [
    (13000, 13020, True),    # minor-version compatibility: 13.2 runtime on a 13.0 driver
    (12020, 12080, True),
    (13000, 12080, True),    # newer driver
    (12080, 13000, False),   # CUDA 13 wheel on a CUDA 12 driver
])
def test_cuda_version_rule_compares_major_versions(driver, runtime, ok):
    assert (an_backend.cuda_version_problem(driver, runtime) is None) == ok
    env = dict(STANDIN_CUPY_DRIVER=driver, STANDIN_CUPY_RUNTIME=runtime)
    if ok:
        with gpu_backend(**env) as backend:
            assert backend.name == "gpu"
    else:
        with pytest.raises(BackendError, match=r"CUDA 12\.8 but CuPy was built for CUDA 13\.0"):
            with gpu_backend(**env):
                pass


@pytest.mark.parametrize("library", ["cublas", "nvrtc"])
def test_cupy_without_its_libraries_is_a_backend_error(library):
    with pytest.raises(BackendError, match=r"cupy-cuda13x\[ctk\].*ACCELNET_BACKEND=cpu"):
        with gpu_backend(STANDIN_CUPY_BROKEN=library):
            pass


def test_numba_cuda_without_compilers_warns_once_and_runs_reference_forms(monkeypatch):
    """No CUDA driver/NVVM here (outside the simulator): the probe at backend start fails,
    names the extra to install, and every kernel runs its CuPy reference form."""
    if _cuda.simulator():
        pytest.skip("under the simulator numba-cuda compiles")
    monkeypatch.setattr(_cuda, "_toolchain", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gpu_backend() as backend:
            x = backend.asarray(np.ones((4, 3), np.float32))
            with kernels.implementation("numba"):
                assert kernels.current_implementation("relu_backward", x) == "reference"
                loss, grad = kernels.softmax_cross_entropy(x, backend.asarray(np.arange(4) % 3))
            assert float(loss) == pytest.approx(np.log(3), rel=1e-6)
    messages = [str(w.message) for w in caught if "numba-cuda" in str(w.message)]
    assert len(messages) == 1 and "numba-cuda[cu13]" in messages[0]


def test_rank_binds_its_device_before_the_first_allocation():
    """Launched as local rank 1 of 2: the backend binds GPU 1 before drawing, so the first
    Dropout on rank 1 works (it raised 'allocated in a different device')."""
    cupy = install()
    with gpu_backend(STANDIN_CUPY_DEVICES=2, OMPI_COMM_WORLD_LOCAL_RANK=1) as backend:
        assert cupy.cuda.Device().id == 1
        layer = an.layers.Dropout(0.5)
        layer.forward(backend.asarray(np.ones((2, 3), np.float32)), training=True)
        backend.rng.random((2,))


def test_bind_local_rank_recreates_the_generator_on_the_new_device():
    cupy = install()
    with environment(OMPI_COMM_WORLD_LOCAL_RANK=""):
        with gpu_backend(STANDIN_CUPY_DEVICES=2) as backend:
            assert cupy.cuda.Device().id == 0
            backend.bind_local_rank(1)
            assert cupy.cuda.Device().id == 1
            backend.rng.random((2,))  # a generator made on device 0 would raise here


def test_launcher_local_rank_variables():
    with environment(OMPI_COMM_WORLD_LOCAL_RANK="", MPI_LOCALRANKID="3"):
        assert an_backend.launcher_local_rank() == 3


def test_gpu_without_cuda_row_is_skipped_on_a_real_gpu():
    """The errors table's 'gpu without CUDA' row asks the stand-in for zero devices; on a
    machine with a real GPU it is skipped instead of failing."""
    if real_gpu_available():
        pytest.skip("a real GPU is present")
    with pytest.raises(BackendError, match="no CUDA device is visible"):
        with gpu_backend(STANDIN_CUPY_DEVICES=0):
            pass


def test_numba_cuda_imports_on_a_numpy_without_row_stack():
    """NumPy 2.5 removed np.row_stack and numba-cuda 0.30 overloads it at import: on the first
    GPU check (H100, NumPy 2.5.2) `from numba import cuda` failed and every kernel fell back to
    its reference. `cuda_module()` restores that alias (to np.vstack) first."""
    pytest.importorskip("numba_cuda")
    code = ("import numpy as np\n"
            "np.__dict__.pop('row_stack', None)\n"
            "from accelnet.kernels import _cuda\n"
            "cuda = _cuda.cuda_module()\n"
            "import numba.cuda.np.arrayobj\n"
            "assert np.row_stack is np.vstack\n"
            "print('imported', cuda.__name__)\n")
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "imported numba.cuda" in done.stdout, done.stderr[-2000:]

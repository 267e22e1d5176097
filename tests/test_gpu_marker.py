"""The `gpu` marker on a machine with a real CuPy: the first GPU check found every `gpu` test
skipped on an H100, because a test module had already imported the CuPy stand-in as `cupy`
when the marker asked `cupy.is_available()`. A fake "real" CuPy (a package named cupy that is
not the stand-in and reports a device) replays that machine in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pytest(tmp_path, *args):
    fake = tmp_path / "cupy"
    fake.mkdir()
    (fake / "__init__.py").write_text("def is_available():\n    return True\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT / "tests")]))
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_gpu_tests_are_not_skipped_when_a_stand_in_module_is_collected_first(tmp_path):
    """test_strict_backend.py installs the stand-in at import; collected before the parity
    tests, it must not make the real device look absent."""
    rc, out = _pytest(tmp_path, "-m", "gpu", "--setup-only", "tests/test_strict_backend.py",
                      "tests/test_kernel_parity.py", "-k", "relu_backward")
    assert "needs a CUDA GPU" not in out, out[-3000:]
    assert "form[numba-cuda]" in out and rc == 0, out[-3000:]


def test_stand_in_tests_skip_with_the_reason_where_a_real_cupy_is_installed(tmp_path):
    rc, out = _pytest(tmp_path, "tests/test_strict_backend.py", "tests/test_layers_keras3.py",
                      "-k", "strict")
    assert rc == 0, out[-3000:]
    assert "the CuPy stand-in cannot share the process" in out and " passed" not in out, out[-3000:]

"""The CPU backend's glibc malloc tuning (accelnet.backend.tune_host_malloc): on by default
on glibc Linux, off with ACCELNET_TUNE_MALLOC=0 or when the user set any MALLOC_* variable.
Each case runs in a fresh process (the tuning happens once per process)."""
import os
import platform
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import accelnet as an, accelnet.backend as b; an.get_backend(); "
         "print(b._malloc_tuned)")
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def tuned(**env):
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MALLOC_") and k not in ("ACCELNET_TUNE_MALLOC", "GLIBC_TUNABLES")}
    clean.update(env, ACCELNET_BACKEND="cpu")
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=clean, text=True,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_on_by_default_on_glibc():
    assert tuned() == "[True]"


@pytest.mark.parametrize("env", [{"ACCELNET_TUNE_MALLOC": "0"},
                                 {"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}])
def test_off_when_asked_or_when_the_user_tunes_malloc(env):
    assert tuned(**env) == "[False]"

"""accelnet imports (with `accelnet.kernels`) in the three ways people get it (issue 11 §3):
from the source tree with no install, after `pip install .` while the checkout shadows it,
and after `pip install -e .` (CI's own mode), from the repository root and from elsewhere."""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = ("import accelnet, accelnet.kernels as k; "
         "print(accelnet.__file__); print(k.__file__); print(k.relu_backward.__name__)")


def _run(args, cwd, pythonpath=None):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    proc = subprocess.run([sys.executable, *args, "-c", PROBE], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def _copy_tree(dst):
    for name in ("accelnet", "kernels"):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(dst, name),
                        ignore=shutil.ignore_patterns("__pycache__"))
    return str(dst)


@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_source_tree_without_install(tmp_path, where):
    """`python -S` skips site-packages' .pth files, so no installed accelnet can help."""
    tree = _copy_tree(tmp_path / "checkout")
    site = sysconfig.get_paths()["purelib"]
    cwd = tree if where == "root" else str(tmp_path)
    init, kernels, name = _run(["-S"], cwd, [tree, site])
    assert init == os.path.join(tree, "accelnet", "__init__.py")
    assert kernels == os.path.join(tree, "kernels", "__init__.py")
    assert name == "relu_backward"


def test_second_checkout_uses_its_own_kernels(tmp_path):
    """With this environment's (editable) install active, another checkout on the path — a
    git worktree — imports its own kernels, not those the editable install maps to."""
    tree = _copy_tree(tmp_path / "worktree")
    init, kernels, _ = _run([], tree, [tree])
    assert init == os.path.join(tree, "accelnet", "__init__.py")
    assert kernels == os.path.join(tree, "kernels", "__init__.py")


def test_pip_install_shadowed_by_checkout(tmp_path):
    """`pip install .` into a target, then import from the repository root (the checkout
    shadows the install) and from another directory (the install is used)."""
    target = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--target", str(target), ROOT],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"pip could not build the wheel here: {proc.stderr[-500:]}")
    site = sysconfig.get_paths()["purelib"]  # -S: no installed (editable) accelnet helps
    init, kernels, _ = _run(["-S"], ROOT, [str(target), site])
    assert init == os.path.join(ROOT, "accelnet", "__init__.py")
    assert kernels == os.path.join(ROOT, "kernels", "__init__.py")
    init, kernels, _ = _run(["-S"], str(tmp_path), [str(target), site])
    assert init == os.path.join(str(target), "accelnet", "__init__.py")
    assert kernels == os.path.join(str(target), "accelnet", "kernels", "__init__.py")


@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_current_install(tmp_path, where):
    """The environment the suite runs in (CI: `pip install -e .`)."""
    init, kernels, name = _run([], ROOT if where == "root" else str(tmp_path))
    assert os.path.basename(os.path.dirname(kernels)) == "kernels"
    assert name == "relu_backward"

"""Make `accelnet.kernels` importable from a source checkout.

The repository keeps the kernels at the top level (`kernels/`), and the installed
package maps them to `accelnet.kernels` (pyproject's `package-dir`). When `accelnet` is
imported straight from a checkout (repository root on `sys.path`, `PYTHONPATH=.`), or the
checkout shadows an installed copy, `accelnet/kernels` does not exist; this loads the
sibling `kernels/` package under the name `accelnet.kernels` instead — also when an
editable install elsewhere maps `accelnet.kernels` to *its* tree (a second checkout or a
git worktree must test its own kernels). An installed package has `accelnet/kernels/`
and this does nothing.
"""
import importlib.util
import os
import sys


def ensure_kernels_importable(package_name, package_dir):
    """Register `<package_name>.kernels` from `<package_dir>/../kernels` in a source tree."""
    name = package_name + ".kernels"
    if name in sys.modules or os.path.isdir(os.path.join(package_dir, "kernels")):
        return
    source = os.path.join(os.path.dirname(package_dir), "kernels")
    init = os.path.join(source, "__init__.py")
    if not os.path.isfile(init):
        try:
            if importlib.util.find_spec(name) is not None:
                return  # an editable install's mapping
        except (ImportError, ValueError):
            pass
        raise ImportError(f"accelnet's kernels package is missing: neither {package_dir}/kernels "
                          f"nor {source} exists (reinstall accelnet).")
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[source])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise

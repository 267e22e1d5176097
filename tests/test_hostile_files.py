"""Model files are data, never code: hostile files are refused before anything runs or allocates."""
import json
import os

import numpy as np
import pytest

import accelnet as an
from accelnet.errors import DataFileError

MARKER_ENV = "ACCELNET_HOSTILE_MARKER"


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def header(layers, shape=(4,), **extra):
    return {"format": "accelnet", "format_version": 1, "kind": "model",
            "model": {"class_name": "Sequential",
                      "config": {"name": "m", "layers": layers, "build_input_shape": list(shape)}},
            **extra}


def write(path, head, **arrays):
    np.savez(path, **{"accelnet.json": np.array(json.dumps(head))}, **arrays)
    return path


def test_pickled_object_array_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    model = an.Sequential([an.layers.Dense(2, input_shape=(4,))])
    model.save(tmp_path / "good.npz")
    good = np.load(tmp_path / "good.npz", allow_pickle=False)
    arrays = {k: good[k] for k in good.files}
    arrays["weights/0/kernel"] = np.array([_Payload(str(marker))], dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(DataFileError, match="evil.npz"):
        an.models.load_model(tmp_path / "evil.npz")
    assert not marker.exists()


def test_pickled_header_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "evil.npz", **{"accelnet.json": np.array([_Payload(str(marker))], dtype=object)})
    with pytest.raises(DataFileError):
        an.models.load_model(tmp_path / "evil.npz")
    assert not marker.exists()


@pytest.mark.parametrize("spec,pattern", [
    ({"class_name": "os.system", "config": {}}, "unknown class 'os.system'"),
    ({"class_name": "Lambda", "config": {"function": "print"}}, "unknown class 'Lambda'"),
    ({"class_name": "Dense", "config": {"units": 2, "__class__": "x"}}, "unknown arguments"),
    ({"class_name": "Dense", "config": {"units": 2, "activation": {"class_name": "subprocess.Popen",
                                                                   "config": {"args": "ls"}}}}, "activation"),
    ({"class_name": "Dense", "config": {"units": "2"}}, "units must be a positive integer"),
])
def test_unknown_classes_and_arguments_are_refused(tmp_path, spec, pattern):
    path = write(tmp_path / "m.npz", header([spec]))
    with pytest.raises(DataFileError, match=pattern):
        an.models.load_model(path)


def test_absurd_shapes_are_refused_before_allocating(tmp_path):
    # 10^6 x 10^6 float32 kernel = 4 TB: must be refused from the header alone.
    spec = {"class_name": "Dense", "config": {"units": 1_000_000}}
    path = write(tmp_path / "huge.npz", header([spec], shape=(1_000_000,)))
    with pytest.raises(DataFileError, match="refusing to allocate"):
        an.models.load_model(path)


def test_oversized_member_is_refused(tmp_path):
    model = an.Sequential([an.layers.Dense(2, input_shape=(4,))])
    model.save(tmp_path / "m.npz")
    good = np.load(tmp_path / "m.npz", allow_pickle=False)
    arrays = {k: good[k] for k in good.files}
    arrays["weights/0/kernel"] = np.zeros((4, 2), np.float32)
    arrays["padding"] = np.zeros(64 * 2**20, np.uint8)  # compresses to almost nothing
    np.savez_compressed(tmp_path / "bomb.npz", **arrays)
    with pytest.raises(DataFileError, match="refusing"):
        an.models.load_model(tmp_path / "bomb.npz")


def test_header_cannot_name_another_path(tmp_path):
    head = header([{"class_name": "Dense", "config": {"units": 2}}])
    head["weights_file"] = "/etc/passwd"
    path = write(tmp_path / "m.npz", head)
    with pytest.raises(DataFileError, match="no weights for layer"):
        an.models.load_model(path)

"""Saving and loading without pickle.

A model file is one uncompressed `.npz`: the entry `accelnet.json` holds a JSON header
(format name and version, the architecture as layer configs, the compile settings, and
the list of weights), the other entries are plain numeric arrays (`weights/...`,
`optimizer/...`). Loading uses `allow_pickle=False`, validates the architecture against
the known layer classes and their argument names *before* building anything, and refuses
shapes whose parameters would not fit in the file before allocating them.
"""
import inspect
import json
import math
import os
import zipfile

import numpy

from . import fileio
from .backend import get_backend, to_numpy
from .errors import DataFileError, ShapeError

FORMAT = "accelnet"
FORMAT_VERSION = 1
HEADER = "accelnet.json"
MAX_LAYERS = 10_000


# -- weights in memory ---------------------------------------------------------------
def assign_weights(model, weights):
    """Copy host arrays into the model's weights, checking count and every shape first."""
    if not model.built:
        model.build()
    slots = [(l, name, arr) for l in model.layers for name, arr in zip(l.weight_names, l.weights)]
    if len(weights) != len(slots):
        raise ShapeError(f"Model {model.name!r} has {len(slots)} weight arrays, but "
                         f"{len(weights)} were given.")
    for (layer, name, arr), w in zip(slots, weights):
        if tuple(numpy.shape(w)) != tuple(arr.shape):
            raise ShapeError(f"Weight {name!r} of layer {layer.name!r} has shape {tuple(arr.shape)}, "
                             f"but the value given has shape {tuple(numpy.shape(w))}.")
    backend = get_backend()
    for (layer, name, arr), w in zip(slots, weights):
        arr[...] = backend.asarray(numpy.asarray(w, dtype=arr.dtype))


# -- files ---------------------------------------------------------------------------
def _header(model, kind, include_optimizer=False):
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind,
              "model": {"class_name": model.file_class_name, "config": model.get_config()},
              "weights": [[l.name, n, list(w.shape)] for l in model.layers
                          for n, w in zip(l.weight_names, l.weights)]}
    if model.built:
        header["model"]["config"]["build_input_shape"] = list(model.input_shape)
    if kind == "model" and model.loss is not None:
        from . import losses, optimizers
        header["compile"] = {"loss": losses.serialize(model.loss), "metrics": model._metrics_config(),
                             "optimizer": optimizers.serialize(model.optimizer)
                             if include_optimizer else None}
    return header


def _write(path, header, arrays):
    from . import distributed
    if not distributed.is_main():  # data-parallel: rank 0 writes, the others hold the same values
        return
    arrays = {HEADER: numpy.array(json.dumps(header))} | arrays
    with fileio.atomic_write(path) as f:
        numpy.savez(f, **arrays)


def _weight_arrays(model):
    return {f"weights/{i}/{n}": to_numpy(w) for i, l in enumerate(model.layers)
            for n, w in zip(l.weight_names, l.weights)}


def save_weights(model, path):
    if not model.built:
        model.build()
    _write(path, _header(model, "weights"), _weight_arrays(model))


def save_model(model, path, include_optimizer=True, training_state=None):
    """Architecture, weights, compile settings and optimizer state in one atomic write.
    `training_state` (JSON-able: epoch, RNG states) is what BackupAndRestore adds."""
    if not model.built:
        model.build()
    arrays = _weight_arrays(model)
    if include_optimizer and model.optimizer is not None:
        arrays |= {f"optimizer/{k}": to_numpy(v) for k, v in model.optimizer_state().items()}
    header = _header(model, "model", include_optimizer)
    if training_state is not None:
        header["training_state"] = training_state
    _write(path, header, arrays)


def read_training_state(path):
    """The `training_state` a backup file carries (None when it has none)."""
    header, npz = _open(path)
    npz.close()
    return header.get("training_state")


def _open(path):
    """(header dict, NpzFile) for an accelnet file, or DataFileError naming what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataFileError(f"Model file {path!r} does not exist.")
    try:
        npz = numpy.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataFileError(f"{path!r} is not a readable accelnet model file (truncated, corrupt "
                            f"or another format): {exc}") from None
    if not isinstance(npz, numpy.lib.npyio.NpzFile) or HEADER not in npz.files:
        raise DataFileError(f"{path!r} is not an accelnet model file (no {HEADER!r} entry).")
    _check_sizes(path, npz)
    try:
        header = json.loads(str(npz[HEADER]))
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataFileError(f"{path!r}: the accelnet header is unreadable: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataFileError(f"{path!r} is not an accelnet model file (format {header.get('format')!r}).")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataFileError(f"{path!r} was written in accelnet file format version {version!r}, but "
                            f"this accelnet reads versions up to {FORMAT_VERSION}; upgrade accelnet.")
    return header, npz


def _check_sizes(path, npz):
    """Refuse members whose unpacked size is absurd for the file (zip bombs, fake shapes)."""
    limit = max(64 * os.path.getsize(path), 2**20)
    for info in npz.zip.infolist():
        if info.file_size > limit:
            raise DataFileError(f"{path!r}: entry {info.filename!r} claims {info.file_size} bytes, "
                                f"far more than the file holds; refusing to load it.")


def _read(npz, key, path):
    try:
        arr = npz[key]
    except KeyError:
        raise DataFileError(f"{path!r} has no entry {key!r}; the file is incomplete.") from None
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataFileError(f"{path!r}: entry {key!r} is corrupt or truncated: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise DataFileError(f"{path!r}: entry {key!r} has dtype {arr.dtype}, not a numeric array.")
    return arr


def _load_weights_into(model, header, npz, path, missing=ShapeError):
    keys = [f"weights/{i}/{n}" for i, l in enumerate(model.layers) for n in l.weight_names]
    for i, layer in enumerate(model.layers):
        for name, arr in zip(layer.weight_names, layer.weights):
            key = f"weights/{i}/{name}"
            if key not in npz.files:
                raise missing(f"{path!r} has no weights for layer {layer.name!r} ({name}); it was "
                                 f"saved from a different architecture.")
            value = _read(npz, key, path)
            if value.shape != tuple(arr.shape):
                raise ShapeError(f"Cannot load {path!r} into layer {layer.name!r}: weight {name!r} has "
                                 f"shape {value.shape} in the file but {tuple(arr.shape)} in the model.")
    assign_weights(model, [_read(npz, k, path) for k in keys])


def load_weights(model, path):
    path = os.fspath(path)
    header, npz = _open(path)
    with npz:
        if not model.built:
            shape = header["model"]["config"].get("build_input_shape")
            model.build(shape)
        _load_weights_into(model, header, npz, path)


# -- architecture ---------------------------------------------------------------------
_JSON_SCALARS = (str, int, float, bool, type(None))


def _check_value(value, where, depth=0):
    if depth > 4:
        raise DataFileError(f"{where}: nesting too deep.")
    if isinstance(value, _JSON_SCALARS):
        return
    if isinstance(value, list) and len(value) <= 8:
        for v in value:
            _check_value(v, where, depth + 1)
        return
    if isinstance(value, dict) and set(value) <= {"class_name", "config"}:
        if not isinstance(value.get("class_name"), str):
            raise DataFileError(f"{where}: a nested object needs a string class_name.")
        for k, v in (value.get("config") or {}).items():
            _check_value(v, f"{where}.{k}", depth + 1)
        return
    raise DataFileError(f"{where}: value {value!r:.80} is not allowed in a layer config.")


MODEL_CLASSES = {}  # filled by accelnet.models: serialization does not import it
MAX_DEPTH = 8       # models inside models inside ...


def register_model_class(name, cls):
    """Make a model class loadable under `name` (its `from_config` rebuilds it)."""
    MODEL_CLASSES[name] = cls


def layer_spec(layer):
    """{"class_name", "config"} of a layer or of a model used as a layer."""
    return {"class_name": getattr(layer, "file_class_name", type(layer).__name__),
            "config": layer.get_config()}


def layers_from_specs(specs, path="<config>", depth=0):
    """Layers from their specs after validating each against the known layer classes and
    their constructor arguments; models used as layers through their class's from_config.
    Nothing is imported or called by name."""
    from .layers import LAYERS
    if len(specs) > MAX_LAYERS:
        raise DataFileError(f"{path!r}: {len(specs)} layers is more than accelnet accepts.")
    if depth > MAX_DEPTH:
        raise DataFileError(f"{path!r}: models nested more than {MAX_DEPTH} deep.")
    layers = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise DataFileError(f"{path!r}: layer {i} is not an object.")
        model_cls = MODEL_CLASSES.get(spec.get("class_name"))
        if model_cls is not None:
            layers.append(model_cls.from_config(spec.get("config"), path, depth + 1))
            continue
        cls = LAYERS.get(spec.get("class_name"))
        if cls is None:
            raise DataFileError(f"{path!r}: layer {i} has unknown class {spec.get('class_name')!r}; "
                                f"known layers: {', '.join(sorted(LAYERS))}.")
        kwargs = spec.get("config") or {}
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = set(kwargs) - allowed
        if unknown:
            raise DataFileError(f"{path!r}: layer {i} ({cls.__name__}) has unknown arguments "
                                f"{sorted(unknown)}.")
        for k, v in kwargs.items():
            _check_value(v, f"{path!r}: layer {i} ({cls.__name__}).{k}")
        try:
            layers.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise DataFileError(f"{path!r}: layer {i} ({cls.__name__}) has invalid arguments: {exc}") from None
    return layers


def model_from_config(config, path="<config>", max_params=None):
    """Build a model from its config: a functional model when it lists nodes (built, after
    checking it needs at most `max_params` weights), else an (unbuilt) Sequential."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise DataFileError(f"{path!r}: the architecture has no layer list.")
    if "nodes" in config:
        return MODEL_CLASSES["Functional"].from_config(config, path, max_params=max_params)
    return MODEL_CLASSES["Sequential"].from_config(config, path)


def check_planned_size(planned, max_params, path):
    if max_params is not None and planned > max_params:
        raise DataFileError(f"{path!r}: the architecture needs {planned} parameters, more "
                            f"than the file holds; refusing to allocate them.")


def _planned_parameters(model, input_shape):
    """Number of weight values `build(input_shape)` would allocate, computed without allocating."""
    total, shape = 0, tuple(input_shape)
    for layer in model.layers:
        total += sum(math.prod(s) for s in layer.weight_shapes(shape).values())
        shape = layer.compute_output_shape(shape)
    return total


def load_model(path, compile=True):
    """Rebuild a model saved with `model.save(path)`: architecture, weights, compile settings
    and optimizer state (so training resumes exactly)."""
    from . import losses, optimizers
    path = os.fspath(path)
    header, npz = _open(path)
    with npz:
        if header.get("kind") != "model":
            raise DataFileError(f"{path!r} holds weights only; build the model and call "
                                f"model.load_weights({path!r}).")
        config = header.get("model", {}).get("config")
        budget = max(os.path.getsize(path) * 2, 2**20) // 4
        model = model_from_config(config, path, max_params=budget)
        shape = config.get("build_input_shape")
        if shape is not None and not model.built:
            if not (isinstance(shape, list) and all(isinstance(d, int) and 0 < d < 2**31 for d in shape)):
                raise DataFileError(f"{path!r}: invalid input shape {shape!r}.")
            try:
                planned = _planned_parameters(model, shape)
            except (ValueError, TypeError, IndexError) as exc:
                raise DataFileError(f"{path!r}: the architecture does not fit its input shape: {exc}") from None
            check_planned_size(planned, budget, path)
            model.build(shape)
        if model.built:
            _load_weights_into(model, header, npz, path, missing=DataFileError)
        comp = header.get("compile")
        if compile and comp:
            optimizer = optimizers.get(comp["optimizer"]) if comp.get("optimizer") else "rmsprop"
            model.compile(optimizer=optimizer, loss=losses.get(comp["loss"]),
                          metrics=comp.get("metrics") or [])
            state = {k[len("optimizer/"):]: _read(npz, k, path) for k in npz.files
                     if k.startswith("optimizer/")}
            if state and comp.get("optimizer"):
                model.set_optimizer_state(state)
    return model


def restore_backup(model, path):
    """Load weights and optimizer state from a `save_model` file into a built, compiled
    `model` in place; return the file's training_state."""
    path = os.fspath(path)
    header, npz = _open(path)
    with npz:
        if not model.built:
            model.build(header["model"]["config"].get("build_input_shape"))
        _load_weights_into(model, header, npz, path)
        state = {k[len("optimizer/"):]: _read(npz, k, path) for k in npz.files
                 if k.startswith("optimizer/")}
        if state and model.optimizer is not None:
            model.set_optimizer_state(state)
    return header.get("training_state") or {}

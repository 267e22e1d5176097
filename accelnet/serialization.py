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

import numpy

from . import fileio
from .backend import get_backend, to_numpy
from .errors import AccelnetError, DataFileError, ShapeError

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
    """(header dict, NpzArchive) for an accelnet file, or DataFileError naming what is wrong."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataFileError(f"Model file {path!r} does not exist.")
    npz = fileio.NpzArchive(path, "accelnet model file")
    try:
        return _read_header(npz, path), npz
    except BaseException:
        npz.close()
        raise


def _read_header(npz, path):
    """The JSON header, checked for the structure the loaders rely on."""
    if HEADER not in npz:
        raise DataFileError(f"{path!r} is not an accelnet model file (no {HEADER!r} entry).")
    arr = npz.read(HEADER)
    if arr.shape != () or arr.dtype.kind not in "US":
        raise DataFileError(f"{path!r}: the accelnet header is not a text (dtype {arr.dtype}, "
                            f"shape {arr.shape}).")
    if arr.dtype.kind == "U":  # NumPy builds broken str objects from invalid code points
        codes = numpy.frombuffer(arr.astype(arr.dtype.newbyteorder("=")).tobytes(), numpy.uint32)
        if ((codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))).any():
            raise DataFileError(f"{path!r}: the accelnet header holds invalid Unicode code points.")
    try:
        text = arr.item().decode("utf-8") if arr.dtype.kind == "S" else str(arr.item())
        header = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise DataFileError(f"{path!r}: the accelnet header is unreadable: "
                            f"{type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise DataFileError(f"{path!r} is not an accelnet model file (format {found!r}).")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataFileError(f"{path!r} was written in accelnet file format version {version!r}, but "
                            f"this accelnet reads versions up to {FORMAT_VERSION}; upgrade accelnet.")
    model = header.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("config"), dict):
        raise DataFileError(f"{path!r}: the header has no architecture (model.config).")
    for key in ("compile", "training_state"):
        if not isinstance(header.get(key), (dict, type(None))):
            raise DataFileError(f"{path!r}: the header's {key!r} is not an object.")
    return header


def _read(npz, key, path):
    arr = npz.read(key)
    if arr.dtype.kind not in "biuf":
        raise DataFileError(f"{path!r}: entry {key!r} has dtype {arr.dtype}, not a numeric array.")
    return arr


def _input_shape(header, path):
    """The input shape the file was built for (None if it was saved unbuilt), checked."""
    shape = header["model"]["config"].get("build_input_shape")
    if shape is not None and not (isinstance(shape, list) and 0 < len(shape) <= 8 and all(
            type(d) is int and 0 < d < 2**31 for d in shape)):
        raise DataFileError(f"{path!r}: invalid input shape {shape!r:.100}.")
    return shape


def _build_checked(model, shape, path):
    """Build `model` for `shape` unless its parameters would need more memory than the file holds."""
    try:
        planned = _planned_parameters(model, shape)
    except (AccelnetError, ValueError, TypeError, IndexError, OverflowError) as exc:
        raise DataFileError(f"{path!r}: the architecture does not fit its input shape: {exc}") from None
    if planned * 4 > max(os.path.getsize(path) * 2, 2**20):
        raise DataFileError(f"{path!r}: the architecture needs {planned} parameters, more "
                            f"than the file holds; refusing to allocate them.")
    try:
        model.build(shape)
    except (AccelnetError, ValueError, TypeError, IndexError, OverflowError) as exc:
        raise DataFileError(f"{path!r}: the architecture cannot be built: {exc}") from None


def _file_layer_names(header, model):
    """{layer name in the file: layer name in `model`}, matched by position: the same
    architecture built in another session (or twice in one) has other automatic names."""
    layers = header["model"]["config"].get("layers")
    names = [(spec.get("config") or {}).get("name") if isinstance(spec, dict) and
             isinstance(spec.get("config"), (dict, type(None))) else None
             for spec in (layers if isinstance(layers, list) else ())]
    if len(names) != len(model.layers):
        return {l.name: l.name for l in model.layers}
    return {old: new.name for old, new in zip(names, model.layers) if isinstance(old, str)}


def _restore_optimizer(model, header, npz, path):
    """Set the optimizer's step count and slots from the file, each checked against the model."""
    if model.optimizer is None:
        return
    rename = _file_layer_names(header, model)
    positions = list(model.trainable_params)
    state = {}
    for k in npz.files:
        if not k.startswith("optimizer/"):
            continue
        name = k[len("optimizer/"):]
        slot, _, key = name.partition("/")
        if key.startswith("@"):  # slots saved by parameter position (this version's files)
            index = key[1:]
            if not (index.isdigit() and int(index) < len(positions)):
                raise DataFileError(f"{path!r}: optimizer entry {k!r} refers to parameter "
                                    f"{index!r}; the model has {len(positions)} trainable arrays.")
            key = positions[int(index)]
        else:  # older files: slots by layer name, matched to this model's layers by position
            layer, _, weight = key.partition("/")
            key = f"{rename.get(layer, layer)}/{weight}"
        if name != "iterations":
            name = f"{slot}/{key}"
        arr = state[name] = _read(npz, k, path)
        want = () if name == "iterations" else getattr(model.params.get(key), "shape", None)
        if slot not in model.optimizer.slots and name != "iterations" or want is None \
                or tuple(arr.shape) != tuple(want):
            raise DataFileError(f"{path!r}: optimizer entry {k!r} of shape {arr.shape} matches no "
                                f"state of {type(model.optimizer).__name__} for this model.")
    if state:
        model.optimizer.set_state(state)


def _load_weights_into(model, header, npz, path, missing=ShapeError):
    values = []
    for i, layer in enumerate(model.layers):
        for name, arr in zip(layer.weight_names, layer.weights):
            key = f"weights/{i}/{name}"
            if key not in npz:
                raise missing(f"{path!r} has no weights for layer {layer.name!r} ({name}); it was "
                              f"saved from a different architecture.")
            value = _read(npz, key, path)
            if value.shape != tuple(arr.shape):
                raise ShapeError(f"Cannot load {path!r} into layer {layer.name!r}: weight {name!r} has "
                                 f"shape {value.shape} in the file but {tuple(arr.shape)} in the model.")
            values.append(value)
    assign_weights(model, values)


def load_weights(model, path):
    path = os.fspath(path)
    header, npz = _open(path)
    with npz:
        if not model.built:
            _build_checked(model, _input_shape(header, path), path)
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
        if not isinstance(value.get("config"), (dict, type(None))):
            raise DataFileError(f"{where}: a nested object's config must be an object.")
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
        name = spec.get("class_name")
        model_cls = MODEL_CLASSES.get(name) if isinstance(name, str) else None
        if model_cls is not None:
            layers.append(model_cls.from_config(spec.get("config"), path, depth + 1))
            continue
        cls = LAYERS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise DataFileError(f"{path!r}: layer {i} has unknown class {name!r:.80}; "
                                f"known layers: {', '.join(sorted(LAYERS))}.")
        kwargs = spec.get("config") or {}
        if not isinstance(kwargs, dict):
            raise DataFileError(f"{path!r}: layer {i} ({cls.__name__}) has a config that is not an object.")
        allowed = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = set(kwargs) - allowed
        if unknown:
            raise DataFileError(f"{path!r}: layer {i} ({cls.__name__}) has unknown arguments "
                                f"{sorted(unknown)}.")
        for k, v in kwargs.items():
            _check_value(v, f"{path!r}: layer {i} ({cls.__name__}).{k}")
        try:
            layers.append(cls(**kwargs))
        except (AccelnetError, TypeError, ValueError, OverflowError) as exc:
            raise DataFileError(f"{path!r}: layer {i} ({cls.__name__}) has invalid arguments: {exc}") from None
    return layers


def model_from_config(config, path="<config>", max_params=None):
    """Build a model from its config: a functional model when it lists nodes (built, after
    checking it needs at most `max_params` weights), else an (unbuilt) Sequential."""
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise DataFileError(f"{path!r}: the architecture has no layer list.")
    try:
        if "nodes" in config:
            return MODEL_CLASSES["Functional"].from_config(config, path, max_params=max_params)
        return MODEL_CLASSES["Sequential"].from_config(config, path)
    except DataFileError:
        raise
    except AccelnetError as exc:  # e.g. two layers with the same name
        raise DataFileError(f"{path!r}: invalid architecture: {exc}") from None


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
        config = header["model"]["config"]
        budget = max(os.path.getsize(path) * 2, 2**20) // 4
        model = model_from_config(config, path, max_params=budget)
        shape = _input_shape(header, path)
        if shape is not None and not model.built:
            _build_checked(model, shape, path)
        if model.built:
            _load_weights_into(model, header, npz, path, missing=DataFileError)
        comp = header.get("compile")
        if compile and comp:
            try:
                optimizer = optimizers.get(comp["optimizer"]) if comp.get("optimizer") else "rmsprop"
                model.compile(optimizer=optimizer, loss=losses.get(comp.get("loss")),
                              metrics=comp.get("metrics") or [])
            except (AccelnetError, TypeError, ValueError) as exc:
                raise DataFileError(f"{path!r}: invalid compile settings: {exc}") from None
            if comp.get("optimizer") and model.built:
                _restore_optimizer(model, header, npz, path)
    return model


def restore_backup(model, path):
    """Load weights and optimizer state from a `save_model` file into a built, compiled
    `model` in place; return the file's training_state."""
    path = os.fspath(path)
    header, npz = _open(path)
    with npz:
        if not model.built:
            _build_checked(model, _input_shape(header, path), path)
        _load_weights_into(model, header, npz, path)
        _restore_optimizer(model, header, npz, path)
    return header.get("training_state") or {}

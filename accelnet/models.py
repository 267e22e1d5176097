"""Models: the functional `Model(inputs, outputs)` and `Sequential`, a Model whose graph
is its list of layers. Both train through one loop (`accelnet.trainer.Trainer`) and are
Layers themselves, so a model can be used as a layer of another model.

The graph runs node by node in topological order. A layer called at several places of
one graph (a shared layer) keeps, per call, what its backward needs (`Layer.snapshot`),
and its weight gradients are summed over the calls (the regularization gradient once).
"""
import collections
import json

from . import fusion, serialization
from .backend import to_numpy
from .errors import DataFileError, InvalidArgumentError, ShapeError
from .graph import SymbolicTensor, as_symbolic, topological_order
from .layers import Input, Layer
from .layers.base import unique_name
from .trainer import Trainer


def _single(value, what):
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InvalidArgumentError(f"Model {what}: accelnet models have one input and one "
                                       f"output, got {len(value)}.")
        value = value[0]
    if isinstance(value, dict):
        raise InvalidArgumentError(f"Model {what}: dicts of tensors are not supported; pass one tensor.")
    tensor = as_symbolic(value)
    if tensor is None:
        raise InvalidArgumentError(f"Model {what} must be a symbolic tensor from "
                                   f"accelnet.Input(shape=...) and layer calls, got "
                                   f"{type(value).__name__}.")
    return tensor


class Model(Trainer, Layer):
    """Keras's functional model: `Model(inputs=Input(shape=...), outputs=...)`.

    compile/fit/evaluate/predict/save/summary as Sequential; usable as a layer."""

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True):
        if (inputs is None) != (outputs is None) or (inputs is None and type(self) is Model):
            raise InvalidArgumentError("Model(inputs, outputs) needs both: the Input tensor and "
                                       "the output of the layers called on it.")
        self.layers = []
        self._init_layer(name or unique_name(self._default_name), trainable)
        self._init_trainer()
        if inputs is not None:
            self._set_graph(_single(inputs, "inputs"), _single(outputs, "outputs"))

    _default_name = "functional"

    def _init_layer(self, name, trainable):
        """The Layer attributes a model needs (params/grads/state are views of its layers)."""
        self.name = name
        self.input_shape = None
        self.built = False
        self.needs_input_grad = True
        self._trainable = bool(trainable)
        self._graph = None

    # -- the graph ----------------------------------------------------------------------
    def _set_graph(self, input_tensor, output_tensor):
        if input_tensor.node.inputs or not isinstance(input_tensor.node.layer, Input):
            raise InvalidArgumentError("Model inputs must come from accelnet.Input(shape=...).")
        order = topological_order(input_tensor, output_tensor)
        layers = []
        for node in order:
            if node.layer is self:
                raise InvalidArgumentError(f"Model {self.name!r} cannot contain itself.")
            if all(node.layer is not l for l in layers):
                layers.append(node.layer)
        self._check_names(layers)
        counts = collections.Counter(id(node.layer) for node in order)
        self._graph = {"input": input_tensor, "output": output_tensor, "nodes": order[1:],
                       "input_node": order[0],
                       "shared": {key for key, c in counts.items() if c > 1}}
        if not isinstance(self, Sequential):
            self.layers = layers
        self.input_shape = input_tensor.dims
        first_output = {}
        for node in order:
            first_output.setdefault(id(node.layer), node.output.dims)
        self.layer_shapes = [first_output[id(l)] for l in self.layers]
        self._snapshots, self._fused_pairs = {}, {}
        self.built = True

    def _check_names(self, layers):
        seen = set()
        for layer in layers:
            if layer.name in seen:
                raise InvalidArgumentError(f"The name {layer.name!r} is used 2 times in model "
                                           f"{self.name!r}; layer names must be unique.")
            seen.add(layer.name)

    @property
    def inputs(self):
        return [self._graph["input"]] if self._graph else None

    @property
    def input(self):
        return self._graph["input"] if self._graph else None

    @property
    def outputs(self):
        return [self._graph["output"]] if self._graph else None

    @property
    def output(self):
        return self._graph["output"] if self._graph else None

    @property
    def output_shape(self):
        if self._graph is None and self.input_shape is not None:
            self.build()
        return self._graph["output"].dims if self._graph else None

    def compute_output_shape(self, input_shape):
        if not self.built:
            self.build(input_shape)
        if tuple(input_shape) != tuple(self.input_shape):
            raise ShapeError(f"Model {self.name!r} takes inputs of shape {(None,) + self.input_shape}, "
                             f"got {(None,) + tuple(input_shape)}.")
        return self.output_shape

    def build(self, input_shape=None):
        if not self.built:
            raise InvalidArgumentError(f"Model {self.name!r} has no graph to build.")

    def _input_layer_name(self):
        return self._graph["input_node"].layer.name

    def _output_layer_name(self):
        return self._graph["output"].node.layer.name

    @property
    def uses_worker_threads(self):
        """Whether any layer (nested models included) runs on accelnet's worker threads."""
        return any(layer.uses_worker_threads for layer in self.layers)

    def _output_activation(self):
        layer = self._graph["output"].node.layer
        if isinstance(layer, Model):
            return layer._output_activation()
        return getattr(getattr(layer, "activation", None), "name", None)

    # -- weights as a layer: views of the layers' dicts ------------------------------------
    @property
    def trainable(self):
        return self._trainable

    @trainable.setter
    def trainable(self, value):
        """Freezing a model freezes every layer in it (and unfreezing unfreezes), as Keras."""
        self._trainable = bool(value)
        for layer in self.layers:
            layer.trainable = value

    def _flat(self, attr):
        return {f"{l.name}/{k}": v for l in self.layers for k, v in getattr(l, attr).items()}

    @property
    def params(self):
        return self._flat("params")

    @property
    def grads(self):
        return self._flat("grads")

    @property
    def state(self):
        return self._flat("state")

    @property
    def trainable_params(self):
        return self._flat("trainable_params") if self.trainable else {}

    @property
    def trainable_grads(self):
        return self._flat("trainable_grads") if self.trainable else {}

    @property
    def regularizers(self):
        return self._flat("regularizers")

    @property
    def weights(self):
        """Every layer's weights, layer after layer (Keras's get_weights order)."""
        return [w for l in self.layers for w in l.weights]

    @property
    def weight_names(self):
        return [f"{l.name}/{n}" for l in self.layers for n in l.weight_names]

    @property
    def trainable_weights(self):
        return [w for l in self.layers for w in l.trainable_weights] if self.trainable else []

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return [w for l in self.layers for w in l.non_trainable_weights]

    def count_params(self):
        if not self.built:
            self.build()
        return sum(l.count_params() for l in self.layers)

    def regularization_penalty(self):
        total = None
        for layer in self.layers:
            p = layer.regularization_penalty()
            if p is not None:
                total = p if total is None else total + p
        return total

    def regularization_grads(self):
        return {f"{l.name}/{k}": g for l in self.layers for k, g in l.regularization_grads().items()}

    def snapshot(self):
        return {"model": dict(self.__dict__), "layers": [l.snapshot() for l in self.layers]}

    def restore(self, snapshot):
        self.__dict__.update(snapshot["model"])
        for layer, snap in zip(self.layers, snapshot["layers"]):
            layer.restore(snap)

    def _connections(self):
        return _connections_of(self)

    def get_layer(self, name=None, index=None):
        """A layer by name or by index in `layers` (Keras's get_layer)."""
        if index is not None and name is not None:
            raise InvalidArgumentError("get_layer: give name or index, not both.")
        if index is not None:
            if not -len(self.layers) <= index < len(self.layers):
                raise InvalidArgumentError(f"get_layer: index {index} is out of range; model "
                                           f"{self.name!r} has {len(self.layers)} layers.")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise InvalidArgumentError(f"No such layer: {name!r}. Existing layers are: "
                                   f"{[l.name for l in self.layers]}.")

    # -- running the graph ------------------------------------------------------------------
    def forward(self, x, training=True, logits=False):
        """The output for a device batch; the output layer yields logits when `logits`."""
        g = self._graph
        if g is None:
            self.build(x.shape[1:])
            g = self._graph
        values = {id(g["input"]): g["input_node"].layer.forward(x, training=training)}
        shared, snapshots = g["shared"], {}
        out_node = g["output"].node
        fusable = fusion.pairs(g) if training and fusion.enabled() else {}
        fused = {}  # id(second node) -> the node whose layer ran it (accelnet.fusion)
        ran = set()  # nodes run inside another node's forward (chained)
        self._chained_forward_layers = []
        for node in g["nodes"]:
            if id(node.output) in values or id(node) in ran:  # run by a node before it
                continue
            args = [values[id(t)] for t in node.inputs]
            arg = args if node.multi else args[0]
            mode = training if node.training is None else node.training
            nxt = fusable.get(id(node))
            if nxt is not None and not (mode and (nxt.training is None or nxt.training)):
                nxt = None
            if nxt is not None and node.layer.fuses_with(nxt.layer, arg):
                values[id(nxt.output)] = node.layer.forward_fused(arg, nxt.layer)
                fused[id(nxt)] = node
                continue
            if (nxt is not None and not (logits and nxt is out_node)
                    and node.layer.chains_forward(nxt.layer, arg)):
                pool = fusable.get(id(nxt))  # the consumer's own fused pool, if any
                if pool is not None and not ((pool.training is None or pool.training)
                                             and nxt.layer.fuses_with(pool.layer, arg)):
                    pool = None
                values[id(node.output)], out = node.layer.forward_chained(
                    arg, nxt.layer, None if pool is None else pool.layer)
                values[id((nxt if pool is None else pool).output)] = out
                if pool is not None:
                    fused[id(pool)] = nxt
                ran.add(id(nxt))
                self._chained_forward_layers.append(nxt.layer)
                continue
            if logits and node is out_node:
                out = node.layer.forward(arg, training=mode, logits=True)
            else:
                out = node.layer.forward(arg, training=mode)
            if id(node.layer) in shared:
                snapshots[id(node)] = node.layer.snapshot()
            values[id(node.output)] = out
        self._snapshots, self._fused_pairs = snapshots, fused
        return values[id(g["output"])]

    def _plan(self):
        """Per node: (run its backward, compute its input gradient). A node runs when its
        layer trains or something before it does; the input gradient only in the latter."""
        g = self._graph
        wants = {id(g["input_node"]): self.needs_input_grad}
        plan = {}
        for node in g["nodes"]:
            upstream = any(wants[id(p)] for p in node.parents)
            wants[id(node)] = upstream or bool(node.layer.trainable_params)
            plan[id(node)] = (wants[id(node)], upstream)
        return plan

    def _chained_producer(self, node, plan, fused):
        """The node whose backward may run inside `node`'s (`Layer.chains_backward`), or
        None: it made node's only input (itself or through the layer fused after it), node
        alone consumes that (`fusion.pairs`), it trains, needs no input gradient and is not
        shared."""
        g = self._graph
        if not plan[id(node)][1] or node.multi or len(node.inputs) != 1 \
                or id(node.layer) in g["shared"] or not fusion.enabled():
            return None
        made = node.inputs[0].node
        if fusion.pairs(g).get(id(made)) is not node:
            return None
        producer = fused.get(id(made), made)
        run, needs_input = plan.get(id(producer), (False, True))
        if (not run or needs_input or id(producer.layer) in g["shared"]
                or producer is g["input_node"]):
            return None
        producer.layer.needs_input_grad = False  # what its own backward would be told
        return producer if node.layer.chains_backward(producer.layer) else None

    def backward(self, grad, on_layer_done=None):
        """Gradients of every node's layer from the output gradient; returns the input
        gradient (None when nothing needs it). `on_layer_done(layer)` is called once a
        layer's weight gradients are final (data-parallel training starts its allreduce)."""
        g = self._graph
        plan = self._plan()
        grads = {id(g["output"]): grad}
        sums, runs = {}, collections.Counter()
        fused = getattr(self, "_fused_pairs", {})
        self._chained_layers = []  # producers whose backward ran inside their consumer's
        for node in reversed(g["nodes"]):
            dy = grads.pop(id(node.output), None)
            first = fused.get(id(node))
            if first is not None:  # node ran inside first's forward_fused: one backward
                node = first
            run, needs_input = plan[id(node)]
            if dy is None or not run:
                continue
            layer = node.layer
            shared = id(layer) in g["shared"]
            if shared:
                layer.restore(self._snapshots[id(node)])
            layer.needs_input_grad = needs_input
            producer = self._chained_producer(node, plan, fused)
            if producer is not None:  # producer's backward runs inside this one's (fusion)
                layer.backward_chained(dy, producer.layer)
                self._chained_layers.append(producer.layer)
                if on_layer_done is not None:
                    on_layer_done(layer)
                    on_layer_done(producer.layer)
                continue  # nothing flows further back: the producer needs no input gradient
            dx = layer.backward(dy) if first is None else layer.backward_fused(dy)
            if shared:
                runs[id(layer)] += 1
                if id(layer) not in sums:
                    sums[id(layer)] = (layer, {k: v.copy() for k, v in layer.grads.items()})
                else:
                    for k, v in layer.grads.items():
                        sums[id(layer)][1][k] += v
            elif on_layer_done is not None:
                on_layer_done(layer)
            if not needs_input or dx is None:
                continue
            for t, d in zip(node.inputs, dx if node.multi else [dx]):
                if d is not None:
                    prev = grads.get(id(t))
                    grads[id(t)] = d if prev is None else prev + d
        for key, (layer, total) in sums.items():
            extra = runs[key] - 1  # backward added the penalty's gradient once per call
            if extra:
                for k, r in layer.regularization_grads().items():
                    total[k] -= extra * r
            for k, v in total.items():
                layer.grads[k][...] = v
            if on_layer_done is not None:
                on_layer_done(layer)
        return grads.get(id(g["input"])) if self.needs_input_grad else None

    def __call__(self, inputs, training=None):
        """On symbolic tensors: use this model as a layer of a bigger graph. On arrays: the
        forward pass on backend arrays (no conversion), for hand-written loops."""
        return Layer.__call__(self, inputs, training=training)

    # -- weights ---------------------------------------------------------------------------
    def get_weights(self):
        """Every layer's weights as host NumPy arrays, in layer order."""
        if not self.built:
            self.build()
        return [to_numpy(w).copy() for w in self.weights]

    def set_weights(self, weights):
        serialization.assign_weights(self, list(weights))

    def save_weights(self, path):
        serialization.save_weights(self, path)

    def load_weights(self, path):
        serialization.load_weights(self, path)

    def save(self, path, include_optimizer=True, training_state=None):
        """Architecture, weights, compile settings and optimizer state in one .npz (atomic)."""
        serialization.save_model(self, path, include_optimizer, training_state)

    # -- config ----------------------------------------------------------------------------
    file_class_name = "Functional"

    def get_config(self):
        """Layers and nodes: node i = (layer index, indices of the nodes it reads, called
        on a list, training fixed to True/False or None); node 0 is the input."""
        g = self._graph
        order = [g["input_node"]] + g["nodes"]
        index = {id(n): i for i, n in enumerate(order)}
        layer_index = {id(l): i for i, l in enumerate(self.layers)}
        return {"name": self.name,
                "layers": [serialization.layer_spec(l) for l in self.layers],
                "nodes": [[layer_index[id(n.layer)], [index[id(p)] for p in n.parents], n.multi,
                           n.training] for n in order],
                "output": index[id(g["output"].node)]}

    @classmethod
    def from_config(cls, config, path="<config>", depth=0, max_params=None):
        """Rebuild from get_config() after validating every layer (see serialization) and,
        before allocating anything, the number of weights against `max_params`."""
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list) or \
                not isinstance(config.get("nodes"), list) or not config["nodes"]:
            raise DataFileError(f"{path!r}: a functional model needs 'layers' and 'nodes' lists.")
        layers = serialization.layers_from_specs(config["layers"], path, depth)
        for i, spec in enumerate(config["nodes"]):
            ok = (isinstance(spec, list) and len(spec) in (3, 4) and isinstance(spec[0], int)
                  and (len(spec) == 3 or spec[3] in (None, True, False))
                  and 0 <= spec[0] < len(layers) and isinstance(spec[1], list)
                  and all(isinstance(j, int) and 0 <= j < i for j in spec[1]))
            if not ok or (i == 0) != (not spec[1]) or (i == 0 and not isinstance(layers[spec[0]], Input)):
                raise DataFileError(f"{path!r}: node {i} of the functional model is malformed.")
        serialization.check_planned_size(_planned(layers, config["nodes"], path), max_params, path)
        tensors = []
        for i, spec in enumerate(config["nodes"]):
            layer, inputs = layers[spec[0]], [tensors[j] for j in spec[1]]
            if i == 0:
                tensors.append(layer.output)
                continue
            try:
                tensors.append(layer(inputs if spec[2] else inputs[0],
                                     training=spec[3] if len(spec) == 4 else None))
            except (ShapeError, InvalidArgumentError, ValueError, TypeError) as exc:
                raise DataFileError(f"{path!r}: node {i} ({layer.name!r}) does not fit the graph: "
                                    f"{exc}") from None
        out = config.get("output")
        if not isinstance(out, int) or not 0 <= out < len(tensors):
            raise DataFileError(f"{path!r}: the functional model's output is malformed.")
        name = config.get("name") if isinstance(config.get("name"), str) else None
        return cls(tensors[0], tensors[out], name=name)

    def to_json(self):
        return json.dumps({"class_name": self.file_class_name, "config": self.get_config()})

    # -- summary ---------------------------------------------------------------------------
    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None):
        """Keras-like table of layers, output shapes and parameter counts; trainable and
        non-trainable parameters counted as Keras does (frozen weights and
        BatchNormalization's moving statistics are non-trainable)."""
        if not self.built:
            self.build()
        print_fn = print_fn or print
        headers = ["Layer (type)", "Output Shape", "Param #"]
        rows = [[f"{l.name} ({getattr(l, 'file_class_name', type(l).__name__)})",
                 str((None,) + tuple(s)), f"{l.count_params():,}"]
                for l, s in zip(self.layers, self.layer_shapes)]
        connected = self._connections()
        if connected is not None:  # a graph that is not a plain chain: Keras's 4th column
            headers.append("Connected to")
            for row, text in zip(rows, connected):
                row.append(text)
        if show_trainable:
            headers.append("Trainable")
            for row, layer in zip(rows, self.layers):
                row.append("Y" if layer.trainable else "N")
        natural = [max(len(h), *(len(r[i]) for r in rows)) + 2 for i, h in enumerate(headers)]
        if line_length is None and positions is None:
            widths = natural
        else:
            line_length = line_length or sum(natural)
            positions = positions or {3: [0.45, 0.85, 1.0], 4: [0.3, 0.6, 0.7, 1.0]}.get(
                len(headers), [0.3, 0.5, 0.6, 0.9, 1.0])
            if all(p <= 1 for p in positions):
                positions = [int(line_length * p) for p in positions]
            widths = [b - a for a, b in zip([0] + list(positions[:-1]), positions)]
        total_width = sum(widths)

        def line(cells):
            return "".join(str(c)[:w - 1].ljust(w) if len(str(c)) >= w else str(c).ljust(w)
                           for c, w in zip(cells, widths))
        total = self.count_params()
        trainable = sum(int(w.size) for w in self.trainable_weights)
        text = [f'Model: "{self.name}"', "_" * total_width, line(headers), "=" * total_width]
        text += [line(r) for r in rows]
        text += ["=" * total_width, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                 f"Non-trainable params: {total - trainable:,}", "_" * total_width]
        print_fn("\n".join(text))


def _planned(layers, nodes, path):
    """Weights the graph's layers would allocate, from shapes alone (nothing built)."""
    import math
    shapes, total, counted = [], 0, set()
    for i, (index, inputs, multi, *_) in enumerate(nodes):
        layer = layers[index]
        if i == 0:
            shapes.append(tuple(layer.input_shape))
            continue
        arg = [shapes[j] for j in inputs] if multi else shapes[inputs[0]]
        try:
            if id(layer) not in counted and not layer.built:
                total += sum(math.prod(s) for s in layer.weight_shapes(arg).values())
            counted.add(id(layer))
            shapes.append(tuple(layer.compute_output_shape(arg)))
        except (ShapeError, InvalidArgumentError, ValueError, TypeError, IndexError) as exc:
            raise DataFileError(f"{path!r}: node {i} ({layer.name!r}) does not fit the graph: "
                                f"{exc}") from None
    return total


def _connections_of(model):
    """Per layer, Keras's "Connected to" text ('dense[0][0], add[0][0]'), or None for a
    plain chain (no merges, no shared layers)."""
    g = model._graph
    order = [g["input_node"]] + g["nodes"]
    if isinstance(model, Sequential) or (not g["shared"] and all(len(n.inputs) <= 1 for n in order)):
        return None
    index, per_layer = {}, collections.defaultdict(list)
    for node in order:
        index[id(node)] = len(per_layer[id(node.layer)])
        per_layer[id(node.layer)].append(node)
    return [", ".join(f"{p.layer.name}[{index[id(p)]}][0]" for n in per_layer[id(l)] for p in n.parents)
            or "-" for l in model.layers]


class Sequential(Model):
    """A linear stack of layers (a Model whose graph is built from `layers` once the
    input shape is known: from `Input(shape=...)` first, a first layer's `input_shape`,
    or the data)."""

    _default_name = "sequential"
    file_class_name = "Sequential"

    def __init__(self, layers=None, name=None, trainable=True):
        self.layers = []
        self._init_layer(name or unique_name(self._default_name), trainable)
        self._init_trainer()
        for layer in layers or ():
            self.add(layer)

    # -- structure --------------------------------------------------------------------------
    def add(self, layer):
        if isinstance(layer, SymbolicTensor) and isinstance(layer.node.layer, Input):
            layer = layer.node.layer  # Sequential([Input(shape=...), ...]) as in Keras
        if not isinstance(layer, Layer):
            raise InvalidArgumentError(f"Sequential.add expects a Layer, got {type(layer).__name__}.")
        if isinstance(layer, Input) and self.layers:
            raise InvalidArgumentError(f"Model {self.name!r}: an Input can only be the first layer.")
        if any(l.name == layer.name for l in self.layers):
            raise InvalidArgumentError(f"Model {self.name!r} already has a layer named {layer.name!r}.")
        if layer is self:
            raise InvalidArgumentError(f"Model {self.name!r} cannot contain itself.")
        self.layers.append(layer)
        self.built = False
        self._graph = None

    def pop(self):
        layer = self.layers.pop()
        self.built, self._graph = False, None
        return layer

    @property
    def input_shape(self):
        if self._built_shape is not None:
            return self._built_shape
        first = self.layers[0] if self.layers else None
        shape = first.input_shape if first is not None else None
        return tuple(shape) if shape is not None else None

    @input_shape.setter
    def input_shape(self, shape):
        self._built_shape = tuple(shape) if shape is not None else None

    def build(self, input_shape=None):
        """Build every layer, inferring shapes from the first layer's input_shape."""
        if not self.layers:
            raise InvalidArgumentError(f"Model {self.name!r} has no layers.")
        shape = tuple(input_shape) if input_shape is not None else self.input_shape
        if shape and shape[0] is None:  # Keras's build((None, 784)) names the batch axis
            shape = shape[1:]
        if shape is None:
            raise ShapeError(f"Model {self.name!r}: give the first layer an input_shape, or call "
                             f"fit/predict/build so the shape can be inferred from the data.")
        layers = self.layers
        if isinstance(layers[0], Input):
            start, layers = layers[0].output, layers[1:]
        else:
            start = Input(shape=shape, name=f"{self.name}_input").output
        tensor = start
        for layer in layers:
            tensor = layer(tensor)
        self._set_graph(start, tensor)

    def compute_output_shape(self, input_shape):
        if not self.built:
            self.build(input_shape)
        return super().compute_output_shape(input_shape)

    def _input_layer_name(self):
        return self.layers[0].name

    def weight_shapes(self, input_shape):
        """{name: shape} of the weights build(input_shape) would allocate (none allocated)."""
        shapes, shape = {}, tuple(input_shape)
        for layer in self.layers:
            shapes.update({f"{layer.name}/{k}": s for k, s in layer.weight_shapes(shape).items()})
            shape = layer.compute_output_shape(shape)
        return shapes

    def get_config(self):
        return {"name": self.name, "layers": [serialization.layer_spec(l) for l in self.layers]}

    @classmethod
    def from_config(cls, config, path="<config>", depth=0):
        if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
            raise DataFileError(f"{path!r}: the architecture has no layer list.")
        layers = serialization.layers_from_specs(config["layers"], path, depth)
        name = config.get("name") if isinstance(config.get("name"), str) else None
        return cls(layers, name=name)


Sequential._built_shape = None
serialization.register_model_class("Sequential", Sequential)
serialization.register_model_class("Functional", Model)
serialization.register_model_class("Model", Model)

from .serialization import load_model, model_from_config  # noqa: E402  (an.models.load_model)

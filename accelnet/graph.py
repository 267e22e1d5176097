"""The functional API's bookkeeping: symbolic tensors and the nodes that connect them.

Calling a layer on a `SymbolicTensor` (or on an `Input`) builds the layer for that shape
and returns a new symbolic tensor that remembers the call (a `Node`: layer + inputs).
A model walks these nodes from its output back to its input once, in `topological_order`.
Nodes are held only by the tensors, never by the layers, so a layer can be called in any
number of graphs (shared layers) without keeping old graphs alive.
"""
from .errors import InvalidArgumentError, ShapeError


class SymbolicTensor:
    """A placeholder for a batch: `shape` has None for the batch axis, as in Keras."""

    def __init__(self, dims, node):
        self.dims = tuple(int(d) for d in dims)
        self.node = node

    @property
    def shape(self):
        return (None,) + self.dims

    @property
    def ndim(self):
        return len(self.dims) + 1

    dtype = "float32"

    def __repr__(self):
        return f"<SymbolicTensor shape={self.shape} from {self.node.layer.name!r}>"


class Node:
    """One call of `layer` on `inputs` (a list; `multi` when the layer got a list);
    `training` True/False fixes the call's mode, None follows fit/predict."""

    def __init__(self, layer, inputs, multi, training=None):
        self.layer, self.inputs, self.multi = layer, list(inputs), multi
        self.training = training
        self.output = None

    @property
    def parents(self):
        return [t.node for t in self.inputs]


def as_symbolic(x):
    """The SymbolicTensor behind x (an Input layer stands for its output), else None."""
    if isinstance(x, SymbolicTensor):
        return x
    out = getattr(x, "output", None)
    return out if isinstance(out, SymbolicTensor) else None


def is_symbolic(inputs):
    if isinstance(inputs, (list, tuple)):
        return bool(inputs) and any(as_symbolic(x) is not None for x in inputs)
    return as_symbolic(inputs) is not None


def _same_shape(built, given):
    if isinstance(given, list):
        return isinstance(built, (list, tuple)) and len(built) == len(given) and all(
            tuple(b) == tuple(g) for b, g in zip(built, given))
    return built is not None and tuple(built) == tuple(given)


def call_symbolic(layer, inputs, training=None):
    """Record `layer(inputs)` in the graph: build the layer for the inputs' shapes (or
    check them when it is built) and return its symbolic output."""
    multi = isinstance(inputs, (list, tuple))
    items = list(inputs) if multi else [inputs]
    tensors = [as_symbolic(x) for x in items]
    if any(t is None for t in tensors):
        raise InvalidArgumentError(f"Layer {layer.name!r} was called on a mix of symbolic tensors "
                                   f"and arrays; call it on keras-style Input tensors only.")
    shapes = [t.dims for t in tensors] if multi else tensors[0].dims
    if not layer.built:
        layer.build(shapes)
    elif not _same_shape(layer.input_shape, shapes):
        raise ShapeError(f"Layer {layer.name!r} was built for input shape {layer.input_shape} but "
                         f"receives {shapes}.")
    node = Node(layer, tensors, multi, None if training is None else bool(training))
    node.output = SymbolicTensor(layer.compute_output_shape(shapes), node)
    return node.output


def post_order(root, parents):
    """Every node reachable from `root` through `parents(node)`, each after its parents
    (iterative depth-first search: no recursion limit). Also the autodiff tape's order
    (`ops.gradient`)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((p, False) for p in parents(node) if id(p) not in seen)
    return order


def topological_order(input_tensor, output_tensor):
    """The nodes between input and output, each after the nodes it reads (the input node
    first). Raises when the output depends on an Input that is not the model's input."""
    def parents(node):
        if not node.inputs and node is not input_tensor.node:
            raise InvalidArgumentError(
                f"Graph disconnected: the output depends on input {node.layer.name!r}, which is not "
                f"the model's input {input_tensor.node.layer.name!r}.")
        return reversed(node.parents)

    order = post_order(output_tensor.node, parents)
    if input_tensor.node not in order:
        raise InvalidArgumentError("The model's output does not depend on its input.")
    return order

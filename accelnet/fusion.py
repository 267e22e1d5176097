"""Consecutive layers that a model's training step runs as one.

A layer may offer to run the layer after it inside its own forward and backward, one batch
slice at a time, so the activation between the two stays in cache instead of being written
to memory whole and read back (Conv2D + MaxPooling2D: `Conv2D.forward_fused`). The layer
says when it can (`Layer.fuses_with(next_layer, x)`, checked at every step: the CPU's
worker threads, a ReLU to take the mask from); the model decides where it may (`pairs`):
the second layer is the first's only consumer and takes nothing else, neither layer is
shared, and the first's output is not the model's output. Only training steps fuse
(inference keeps the plain per-layer forward), and a fused pair gives the same bits as the
two layers run in a row, but for one choice: a fused Winograd Conv2D with 'same' padding
takes its input gradient from the transform of dz its weight gradient uses
(`kernels.winograd_pool_grads`, faster there), the unfused layer by a second convolution:
equal to rounding.

Forward chains: a Conv2D with bias + ReLU whose output only the next Conv2D consumes runs
that one's forward (and its fused pool) inside its own, per slice of the second's
(`Layer.chains_forward`, `Conv2D.forward_chained`): the slice of the first's output is written
whole (the backward needs it) and convolved again while in cache. Same bits.

Backward chains: where such a pair's first layer trains but needs no input gradient (the
model's first Conv2D), the second may run the first's backward inside its own, slice by
slice (`Layer.chains_backward`, `Conv2D.backward_chained`): each slice's input gradient
goes straight from a per-thread scratch buffer into the first layer's weight and bias
gradients. mnist_cnn: conv2 -> conv1; seed 004: conv2 -> (conv1 + pool1). The first
layer's per-slice sums are then grouped by the second layer's slices: equal to the
unchained gradients to rounding (not bit for bit), and the same bits for every thread count.
ACCELNET_FUSE=0 turns fusion and chains off (read at every step).
"""
import collections
import os


def enabled():
    """Whether models may fuse layer pairs (ACCELNET_FUSE, default on)."""
    return os.environ.get("ACCELNET_FUSE", "1").strip() != "0"


def pairs(graph):
    """{id(node): next node} for the model graph's node pairs that may run fused (cached
    in the graph)."""
    cached = graph.get("fusable")
    if cached is not None:
        return cached
    consumers = collections.defaultdict(list)
    for node in graph["nodes"]:
        for tensor in node.inputs:
            consumers[id(tensor)].append(node)
    shared, out = graph["shared"], id(graph["output"])
    found = {}
    for node in graph["nodes"]:
        users = consumers.get(id(node.output), [])
        if len(users) != 1 or id(node.output) == out or id(node.layer) in shared:
            continue
        nxt = users[0]
        if len(nxt.inputs) == 1 and not nxt.multi and id(nxt.layer) not in shared:
            found[id(node)] = nxt
    graph["fusable"] = found
    return found

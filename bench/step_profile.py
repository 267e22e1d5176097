"""Per-layer step profile: where one training step's time goes, for accelnet and PyTorch.

One batch of 128, the workload's model; each round runs one step of every contender in
turn (alternated, so a busy phase of the machine hits both), and records each layer's
forward and backward time, the loss (forward + gradient) and the optimizer update, plus
the whole step. The minimum over rounds is kept per entry (the least disturbed run);
`step_ms` is the minimum whole-step time, not the sum of the minima. Where the model
fuses a layer pair (accelnet.fusion: Conv2D + MaxPooling2D), the pair's time is its first
layer's and the second shows 0; where a Conv2D's backward runs the one before it inside
(`backward_chained`), both backwards count as the later layer's, the earlier's backward shows 0;
a forward chain (`forward_chained`) counts as the earlier layer's forward, the later's shows 0.

accelnet: each layer's `forward`/`backward`, the model's loss and the optimizer's
`apply` are wrapped with timers on the instance. A model whose `fit` runs its whole step as
one kernel call (the MLP: `accelnet.dense_stack`) is profiled through its layers
(ACCELNET_DENSE_STEP=0), where the parts can be told apart; `one_call_step_ms` then gives the
one-call step's minimum too. On the GPU backend (`--device gpu`, PyTorch
on CUDA) every timed part is bracketed by a device sync, so it counts its kernels' run time,
not only their launch; the whole step is timed with no syncs inside. PyTorch: forward pre/post
hooks per module; the backward of module i is the time between the gradient reaching its output
(full backward pre-hooks) and reaching the previous module's output.
"""
import contextlib
import os
import time
import warnings

from . import workloads
from .train_bench import AccelnetTrainer
from .workloads import BATCH, Unavailable


def _no_sync():
    pass


@contextlib.contextmanager
def _dense_step(on):
    """ACCELNET_DENSE_STEP set for the block (accelnet.dense_stack), then restored."""
    from accelnet import dense_stack
    before = os.environ.get(dense_stack.ENV_VAR)
    os.environ[dense_stack.ENV_VAR] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ[dense_stack.ENV_VAR]
        else:
            os.environ[dense_stack.ENV_VAR] = before


def _timed(fn, record, key, sync=_no_sync):
    def wrapper(*args, **kwargs):
        if record.get("_syncing"):
            sync()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        if record.get("_syncing"):
            sync()
        record[key] = record.get(key, 0.0) + time.perf_counter() - start
        return out
    return wrapper


class AccelnetSteps:
    """accelnet `train_on_batch` with a timer around each layer, the loss and the optimizer."""
    name = "accelnet"

    def __init__(self, workload, x, y, device=None):
        trainer = AccelnetTrainer(workload, x, y, device)
        batch = len(x)
        self.model, self.x, self.y = trainer.model, trainer.x[:batch], trainer.y[:batch]
        self.sync = sync = trainer.sync
        self.syncing = trainer.device == "gpu"
        self.model.fit(self.x, self.y, batch_size=batch, epochs=1, verbose=0)  # build, compile
        self.record = {}
        self.names = []
        for i, layer in enumerate(self.model.layers):
            name = f"{i}:{type(layer).__name__}"
            self.names.append(name)
            layer.forward = _timed(layer.forward, self.record, (name, "forward"), sync)
            layer.backward = _timed(layer.backward, self.record, (name, "backward"), sync)
            if hasattr(layer, "forward_chained"):  # a forward chain counts as its first layer
                layer.forward_chained = _timed(layer.forward_chained, self.record,
                                               (name, "forward"), sync)
            if hasattr(layer, "backward_chained"):  # a chain counts as its later layer
                layer.backward_chained = _timed(layer.backward_chained, self.record,
                                                (name, "backward"), sync)
            if hasattr(layer, "forward_fused"):  # a fused pair counts as its first layer
                layer.forward_fused = _timed(layer.forward_fused, self.record, (name, "forward"),
                                             sync)
                layer.backward_fused = _timed(layer.backward_fused, self.record,
                                              (name, "backward"), sync)
        self.model._compute_loss = _timed(self.model._compute_loss, self.record, ("loss",), sync)
        self.model.optimizer.apply = _timed(self.model.optimizer.apply, self.record,
                                            ("optimizer",), sync)

    def step(self):
        """One step with synced parts, then one unsynced for the whole-step time."""
        self.record.clear()
        self.record["_syncing"] = self.syncing
        self.sync()
        with _dense_step(False):
            start = time.perf_counter()
            self.model.train_on_batch(self.x, self.y)
            self.sync()
            total = time.perf_counter() - start
            if self.syncing:
                self.record["_syncing"] = False
                start = time.perf_counter()
                self.model.train_on_batch(self.x, self.y)
                self.sync()
                total = time.perf_counter() - start
        del self.record["_syncing"]
        if self.model._dense_step is not None:
            with _dense_step(True):
                start = time.perf_counter()
                self.model.train_on_batch(self.x, self.y)
                self.sync()
                self.record["one_call_step"] = time.perf_counter() - start
        index = {id(layer): name for layer, name in zip(self.model.layers, self.names)}
        for second in self.model._fused_pairs:  # ran inside the layer before it: 0 ms
            node = next(n for n in self.model._graph["nodes"] if id(n) == second)
            for kind in ("forward", "backward"):
                self.record[(index[id(node.layer)], kind)] = 0.0
        for layer in getattr(self.model, "_chained_layers", ()):  # ran inside the next one's
            self.record[(index[id(layer)], "backward")] = 0.0
        for layer in getattr(self.model, "_chained_forward_layers", ()):  # in the one before
            self.record[(index[id(layer)], "forward")] = 0.0
        return dict(self.record, step=total)


class TorchSteps:
    """One PyTorch step (zero_grad, forward, loss, backward, the optimizer's step) with
    per-module hooks."""
    name = "torch"

    def __init__(self, workload, x, y, device=None):
        from .peers_torch import TorchTrainer
        trainer = TorchTrainer(workload, x, y, device or "cpu", None)
        self.sync = trainer.sync or _no_sync
        self.model, self.optimizer, self.loss_fn = trainer.model, trainer.optimizer, trainer.loss_fn
        self.x, self.y = trainer.x, trainer.y
        self.record, self.marks = {}, {}
        self.names = [f"{i}:{type(m).__name__}" for i, m in enumerate(self.model)]
        for name, module in zip(self.names, self.model):
            module.register_forward_pre_hook(self._mark(name, "fwd0"))
            module.register_forward_hook(self._mark(name, "fwd1"))
            module.register_full_backward_pre_hook(self._mark(name, "bwd0"))
        self.step()  # warm-up

    def _mark(self, name, what):
        def hook(*args):
            self.sync()
            self.marks[(name, what)] = time.perf_counter()
        return hook

    def _now(self):
        self.sync()
        return time.perf_counter()

    def step(self):
        self.marks.clear()
        start = self._now()
        self.optimizer.zero_grad(set_to_none=True)
        out = self.model(self.x)
        t_loss = self._now()
        loss = self.loss_fn(out, self.y)
        loss_done = self._now()
        with warnings.catch_warnings():  # "no inputs require gradients" for the first module
            warnings.simplefilter("ignore", UserWarning)
            loss.backward()
        backward_done = self._now()
        self.optimizer.step()
        end = self._now()
        record = {"step": end - start, ("optimizer",): end - backward_done}
        for name in self.names:
            record[(name, "forward")] = self.marks[(name, "fwd1")] - self.marks[(name, "fwd0")]
        last_start = self.marks.get((self.names[-1], "bwd0"), backward_done)
        record[("loss",)] = (loss_done - t_loss) + (last_start - loss_done)  # forward + backward
        previous_end = backward_done
        for name in self.names:  # forward order: module 0's backward is the last to run
            began = self.marks.get((name, "bwd0"))
            if began is not None:
                record[(name, "backward")] = previous_end - began
                previous_end = began
        return record


def _summary(runs, names):
    """Minimum over rounds of every entry, as a JSON-able dict of milliseconds."""
    def best(key):
        values = [r[key] for r in runs if key in r]
        return min(values) * 1e3 if values else None
    layers = [{"layer": n, "forward_ms": best((n, "forward")), "backward_ms": best((n, "backward"))}
              for n in names]
    steps = sorted(r["step"] for r in runs)
    out = {"layers": layers, "loss_ms": best(("loss",)), "optimizer_ms": best(("optimizer",)),
           "step_ms": steps[0] * 1e3, "step_median_ms": steps[len(steps) // 2] * 1e3,
           "rounds": len(runs)}
    if best("one_call_step") is not None:
        out["one_call_step_ms"] = best("one_call_step")
    return out


def profile_workload(workload, peers, rounds, log=print, device=None, batch=BATCH):
    """{contender: summary} for one workload, contenders alternated for `rounds` rounds."""
    x, y = workloads.data(workload, batch)
    contenders, out = {}, {}
    for cls in [AccelnetSteps] + ([TorchSteps] if "torch" in peers else []):
        try:
            contenders[cls.name] = cls(workload, x, y, device)
        except Unavailable as exc:
            out[cls.name] = {"unavailable": str(exc)}
    log(f"profile: {workload.name} {', '.join(contenders)} x{rounds} alternated steps")
    runs = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, contender in contenders.items():
            runs[name].append(contender.step())
    for name, contender in contenders.items():
        out[name] = _summary(runs[name], contender.names)
    if "torch" in contenders:
        out["accelnet_over_torch_step"] = out["accelnet"]["step_ms"] / out["torch"]["step_ms"]
    return out


def run(quick, peers, log=print, device=None, batch=BATCH, names=None):
    """{workload name: profile} for the MLP and every ConvNet workload (or those in `names`);
    keys get "@<batch>" when the batch is not the bench's 128."""
    rounds = 3 if quick else 15
    result = {}
    for make in (workloads.mlp, workloads.cnn, workloads.seed004_cnn, workloads.cifar_cnn):
        workload = make(quick)
        if names and workload.name not in names:
            continue
        key = workload.name if batch == BATCH else f"{workload.name}@{batch}"
        result[key] = profile_workload(workload, peers, rounds, log, device, batch)
    return result


def table(profiles):
    """One line per layer (forward/backward ms for each contender), then loss, optimizer, step."""
    lines = []
    for workload, prof in profiles.items():
        names = [n for n in ("accelnet", "torch") if n in prof and "layers" in prof[n]]
        lines.append(f"{workload}: min of {prof['accelnet']['rounds']} alternated steps, ms "
                     + (f"(accelnet/torch step {prof['accelnet_over_torch_step']:.2f}x)"
                        if "accelnet_over_torch_step" in prof else ""))
        for name in names:
            parts = [f"{l['layer']} {_f(l['forward_ms'])}/{_f(l['backward_ms'])}"
                     for l in prof[name]["layers"]]
            lines.append(f"  {name:8s} fwd/bwd: " + ", ".join(parts))
            one_call = prof[name].get("one_call_step_ms")
            lines.append(f"  {'':8s} loss {_f(prof[name]['loss_ms'])}, optimizer "
                         f"{_f(prof[name]['optimizer_ms'])}, step {_f(prof[name]['step_ms'])} "
                         f"(median {_f(prof[name]['step_median_ms'])})"
                         + ("" if one_call is None else f"; as one call {_f(one_call)}"))
    return "\n".join(lines)


def _f(ms):
    return "-" if ms is None else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}"


if __name__ == "__main__":
    # python -m bench.step_profile [--quick] [--device gpu] [--batch N] [--only cnn,mlp] [--json F]
    import json
    import sys
    args = sys.argv[1:]
    device = args[args.index("--device") + 1] if "--device" in args else None
    batch = int(args[args.index("--batch") + 1]) if "--batch" in args else BATCH
    names = args[args.index("--only") + 1].split(",") if "--only" in args else None
    profiles = run("--quick" in args, ("torch",), device=device, batch=batch, names=names)
    print(table(profiles))
    if "--json" in args:
        with open(args[args.index("--json") + 1], "w") as f:
            json.dump(profiles, f, indent=1)

"""Sequential: the Keras contract (compile, fit, evaluate, predict, summary, save).

Training data go to the device once per fit; batches are sliced there; running loss and
accuracy stay on the device as 0-d arrays and are read back once per epoch. Per-batch
host reads happen only when a callback asks for per-batch logs or a loss check.
"""
import json
import math
import time

import numpy

from . import callbacks as cbks
from . import distributed
from . import interrupts
from . import kernels
from . import losses as losses_mod
from . import memory
from . import optimizers as optimizers_mod
from . import random as an_random
from . import serialization, validation
from .backend import get_array_module, get_backend, to_numpy
from .errors import InvalidArgumentError, NotCompiledError, ShapeError, TrainingError
from .layers import Input, Layer
from .layers.base import unique_name


class Sequential:
    """A linear stack of layers."""

    def __init__(self, layers=None, name=None):
        self.name = name or unique_name("sequential")
        self.layers = []
        self.optimizer = self.loss = None
        self.metrics = []
        self.stop_training = False
        self.built = False
        self._check_nan = False
        self._reducer = None
        for layer in layers or ():
            self.add(layer)

    # -- structure --------------------------------------------------------------
    def add(self, layer):
        if not isinstance(layer, Layer):
            raise InvalidArgumentError(f"Sequential.add expects a Layer, got {type(layer).__name__}.")
        if any(l.name == layer.name for l in self.layers):
            raise InvalidArgumentError(f"Model {self.name!r} already has a layer named {layer.name!r}.")
        self.layers.append(layer)
        self.built = False

    @property
    def input_shape(self):
        first = self.layers[0] if self.layers else None
        return first.input_shape if first is not None else None

    def build(self, input_shape=None):
        """Build every layer, inferring shapes from the first layer's input_shape."""
        if not self.layers:
            raise InvalidArgumentError(f"Model {self.name!r} has no layers.")
        shape = tuple(input_shape) if input_shape is not None else self.input_shape
        if shape is None:
            raise ShapeError(f"Model {self.name!r}: give the first layer an input_shape, or call "
                             f"fit/predict/build so the shape can be inferred from the data.")
        self.layer_shapes = []
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            elif tuple(layer.input_shape) != tuple(shape):
                raise ShapeError(f"Layer {layer.name!r} was built for input shape {layer.input_shape} "
                                 f"but receives {shape}.")
            shape = layer.compute_output_shape(shape)
            self.layer_shapes.append(shape)
        # Layers before (and the input gradient of) the first trainable layer need no gradient.
        trainable = [i for i, l in enumerate(self.layers) if l.params]
        self._first_trainable = trainable[0] if trainable else len(self.layers)
        for i, layer in enumerate(self.layers):
            layer.needs_input_grad = i > self._first_trainable
        self.params = {f"{l.name}/{k}": v for l in self.layers for k, v in l.params.items()}
        self.grads = {f"{l.name}/{k}": v for l in self.layers for k, v in l.grads.items()}
        self.built = True

    @property
    def output_shape(self):
        return self.layer_shapes[-1]

    def count_params(self):
        return sum(l.count_params() for l in self.layers)

    # -- compile ----------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        if loss is None:
            raise InvalidArgumentError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'.")
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        self.metrics = [m if m != "acc" else "accuracy" for m in (metrics or [])]
        for m in self.metrics:
            if m != "accuracy":
                raise InvalidArgumentError(f"Unknown metric {m!r}; accelnet supports 'accuracy'.")
        last = self.layers[-1] if self.layers else None
        # Softmax + cross-entropy: the loss kernel takes the logits (fused, stable).
        self._fused = (self.loss.fuses_with_softmax and not self.loss.from_logits
                       and getattr(getattr(last, "activation", None), "name", None) == "softmax")
        self._logits_out = self._fused or getattr(self.loss, "from_logits", False)

    def _check_compiled(self, what):
        if self.loss is None:
            raise NotCompiledError(f"Model {self.name!r} must be compiled before {what}(): "
                                   f"call model.compile(optimizer=..., loss=...) first.")

    # -- forward / backward -------------------------------------------------------
    def _forward(self, x, training):
        """Output of the stack; the last layer yields logits when the loss is fused."""
        for layer in self.layers[:-1]:
            x = layer.forward(x, training=training)
        last = self.layers[-1]
        return last.forward(x, training=training, logits=True) if self._fused else \
            last.forward(x, training=training)

    def _loss_and_grad(self, out, y):
        if self._fused:
            return self.loss.logits_value_and_grad(out, y)
        return self.loss.value_and_grad(out, y)

    def _penalty(self):
        total = None
        for layer in self.layers:
            p = layer.regularization_penalty()
            if p is not None:
                total = p if total is None else total + p
        return total

    def _backward(self, grad):
        reducer = self._reducer
        for layer in reversed(self.layers[self._first_trainable:]):
            grad = layer.backward(grad)
            if reducer is not None:
                reducer.layer_ready(layer)  # data-parallel: start this layer's allreduce

    def _correct(self, out, y):
        """Number of correct predictions in a batch, as a 0-d device array."""
        xp = get_array_module(out)
        if out.shape[-1] == 1:  # binary / single-output regression-style accuracy
            threshold = 0.0 if self._logits_out else 0.5
            return ((out.reshape(-1) > threshold) == (y.reshape(-1) > 0.5)).sum()
        truth = y if y.ndim == 1 else y.argmax(axis=-1)
        return (out.argmax(axis=-1) == truth).sum()

    def train_on_batch(self, x, y):
        """One optimizer step on a device batch; returns (loss incl. penalties, number
        correct, applied) with loss and count as 0-d device arrays (no host sync)."""
        with interrupts.deferred_sigint(), memory.out_of_memory_errors(self):  # atomic step, OOM named
            return self._train_step(x, y, len(x), len(x))

    def _train_step(self, x, y, local_n, global_n):
        """One step on this rank's `local_n` samples of a global batch of `global_n`
        (equal unless data-parallel; then gradients are averaged across ranks)."""
        if local_n:
            out = self._forward(x, training=True)
            loss, grad = self._loss_and_grad(out, y)
            penalty = self._penalty()
            if penalty is not None:
                loss = loss + penalty
            correct = self._correct(out, y) if self.metrics else None
        else:  # an uneven last batch left this rank nothing
            xp = get_backend().xp
            loss, correct = xp.zeros((), xp.float32), xp.zeros((), xp.int64)
        if self._check_nan:
            value = float(loss)
            if self._reducer is not None:
                value = distributed.allreduce_sum_host([value * local_n])[0] / global_n
            if not math.isfinite(value):
                return loss, correct, False
        if self._reducer is not None:
            self._reducer.begin(local_n, global_n)
        if local_n:
            self._backward(grad)
        else:
            for g in self.grads.values():
                g[...] = 0
        if self._reducer is not None:
            self._reducer.finish()
        self.optimizer.apply(self.params, self.grads)
        return loss, correct, True

    # -- data preparation (once per call, off the batch path) -------------------
    def _prepare_x(self, x, what="x"):
        x = validation.as_float_input(x, what)
        if not self.built:
            self.build(self.input_shape or x.shape[1:])
        first = self.layers[0]
        validation.check_input_shape(self.name, first.name, first.input_shape, x)
        return x

    def _prepare_y(self, y, n, what="y"):
        if len(y) != n:
            raise ShapeError(f"x and {what} must have the same number of samples, got {n} and {len(y)}.")
        return validation.prepare_labels(y, self.loss.name, self.output_shape, self.layers[-1].name)

    # -- fit --------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        self._check_compiled("fit")
        if batch_size is None:
            batch_size = 32
        validation.check_fit_args(batch_size, epochs, validation_split)
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        validation.check_finite(x)
        if validation_data is None and validation_split:
            split = int(len(x) * (1 - validation_split))
            x, val_x, y, val_y = x[:split], x[split:], y[:split], y[split:]
            validation_data = (val_x, val_y)
        backend = get_backend()
        x_dev, y_dev = backend.asarray(x), backend.asarray(y)
        val = None
        if validation_data is not None:
            vx = self._prepare_x(validation_data[0], "validation_data x")
            val = (backend.asarray(vx), backend.asarray(self._prepare_y(validation_data[1], len(vx),
                                                                         "validation_data y")))
        history = cbks.History()
        cb_list = cbks.CallbackList(list(callbacks or []) + [history], self)
        self._check_nan = any(getattr(cb, "check_loss_before_update", False) for cb in cb_list.callbacks)
        self.history = history
        self.stop_training = False
        n = len(x_dev)
        steps = math.ceil(n / batch_size)
        self._resume_epoch = None
        if not distributed.is_main():
            verbose = 0
        cb_list.call("on_train_begin", {})
        if self._resume_epoch is not None:  # BackupAndRestore found a finished epoch
            initial_epoch = max(initial_epoch, self._resume_epoch)
        self._reducer = None
        if distributed.active():  # same start on every rank, gradients averaged per step
            distributed.broadcast_model(self)
            self._reducer = distributed.GradientReducer(self.layers)
        for epoch in range(initial_epoch, epochs):
            cb_list.call("on_epoch_begin", epoch, {})
            order = an_random.host_rng().permutation(n) if shuffle else numpy.arange(n)
            order = distributed.broadcast_host(order)
            logs = self._run_epoch(x_dev, y_dev, backend.asarray(order), batch_size, steps,
                                   epoch, epochs, verbose, cb_list)
            if val is not None and not self.stop_training:
                val_logs = self._evaluate_device(*val, batch_size)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            if verbose == 2 or verbose == 1:
                print(f"Epoch {epoch + 1}/{epochs} - {logs.pop('_seconds'):.1f}s - "
                      + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
            logs.pop("_seconds", None)
            cb_list.call("on_epoch_end", epoch, logs)
            if self.stop_training:
                break
        cb_list.call("on_train_end", {})
        return history

    def _run_epoch(self, x_dev, y_dev, order, batch_size, steps, epoch, epochs, verbose, cb_list):
        xp = get_array_module(x_dev)
        n = len(x_dev)
        total_loss = xp.zeros((), dtype=xp.float32)
        total_correct = xp.zeros((), dtype=xp.int64)
        seen = 0
        bar = _progress(verbose, steps, epoch, epochs)
        start = time.perf_counter()
        last_refresh = start
        for step in range(steps):
            first = step * batch_size
            global_n = min(n, first + batch_size) - first
            lo, hi = distributed.shard_bounds(global_n) if self._reducer is not None else (0, global_n)
            idx = order[first + lo:first + hi]
            xb, yb = x_dev[idx], y_dev[idx]
            if cb_list.wants_batch_begin:
                cb_list.batch_begin(step, {"batch": step, "size": len(idx)})
            with interrupts.deferred_sigint(), memory.out_of_memory_errors(self):  # atomic step, OOM named
                loss, correct, applied = self._train_step(xb, yb, hi - lo, global_n)
            if not applied:
                self.stop_training = True
                print(f"Epoch {epoch + 1}, batch {step}: invalid loss {float(loss)}, terminating "
                      f"training; the weights from before this step are kept.")
                break
            nb = len(idx)
            seen += nb
            total_loss += loss * nb
            if correct is not None:
                total_correct += correct
            if cb_list.wants_batch_logs:
                batch_logs = self._logs(total_loss, total_correct, seen)
                if "accuracy" in batch_logs:  # Keras 2's key, read by older callbacks (seed 004)
                    batch_logs["acc"] = batch_logs["accuracy"]
                cb_list.batch_end(step, batch_logs)
            if bar is not None:
                bar.update(1)
                now = time.perf_counter()
                if now - last_refresh > 0.5 or step == steps - 1:
                    bar.set_postfix(self._logs(total_loss, total_correct, seen), refresh=False)
                    last_refresh = now
            if self.stop_training:
                break
        if bar is not None:
            bar.close()
        kernels.check_errors()
        logs = self._global_logs(total_loss, total_correct, seen)
        logs["_seconds"] = time.perf_counter() - start
        return logs

    def _logs(self, total_loss, total_correct, seen):
        """The one host read: running sums -> floats (this rank's samples only)."""
        logs = {"loss": float(to_numpy(total_loss)) / seen}
        if self.metrics:
            logs["accuracy"] = float(to_numpy(total_correct)) / seen
        return logs

    def _global_logs(self, total_loss, total_correct, seen):
        """Epoch logs over every rank's samples (one small allreduce when distributed)."""
        if not distributed.active():
            return self._logs(total_loss, total_correct, max(seen, 1))
        sums = [float(to_numpy(total_loss)), float(to_numpy(total_correct)) if self.metrics else 0.0,
                float(seen)]
        loss_sum, correct_sum, count = distributed.allreduce_sum_host(sums)
        logs = {"loss": loss_sum / max(count, 1)}
        if self.metrics:
            logs["accuracy"] = correct_sum / max(count, 1)
        return logs

    # -- evaluate / predict -------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=32, verbose=1, return_dict=False):
        self._check_compiled("evaluate")
        validation.check_fit_args(batch_size or 32, 0, 0.0)
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        backend = get_backend()
        logs = self._evaluate_device(backend.asarray(x), backend.asarray(y), batch_size or 32)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        return [logs["loss"], logs["accuracy"]] if self.metrics else logs["loss"]

    def _evaluate_device(self, x_dev, y_dev, batch_size):
        xp = get_array_module(x_dev)
        total_loss = xp.zeros((), dtype=xp.float32)
        total_correct = xp.zeros((), dtype=xp.int64)
        lo, hi = distributed.shard_bounds(len(x_dev))  # (0, n) in one process
        x_dev, y_dev = x_dev[lo:hi], y_dev[lo:hi]
        n = len(x_dev)
        for start in range(0, n, batch_size):
            xb, yb = x_dev[start:start + batch_size], y_dev[start:start + batch_size]
            out = self._forward(xb, training=False)
            loss, _ = self._loss_and_grad(out, yb)
            total_loss += loss * len(xb)
            if self.metrics:
                total_correct += self._correct(out, yb)
        penalty = self._penalty()
        if penalty is not None:
            total_loss += penalty * n
        return self._global_logs(total_loss, total_correct, n)

    def predict(self, x, batch_size=32, verbose=0):
        """Outputs for x as a NumPy array on the host (probabilities for softmax outputs)."""
        batch_size = batch_size or 32
        validation.check_fit_args(batch_size, 0, 0.0)
        x = self._prepare_x(x)
        backend = get_backend()
        lo, hi = distributed.shard_bounds(len(x))  # each rank predicts its share
        x_dev = backend.asarray(x[lo:hi])
        outs = [self(x_dev[i:i + batch_size]) for i in range(0, len(x_dev), batch_size)]
        local = (backend.to_numpy(backend.xp.concatenate(outs)) if outs else
                 numpy.empty((0,) + tuple(self.output_shape), numpy.float32))
        return distributed.allgather_rows(local)

    def __call__(self, x, training=False):
        """Forward pass on backend arrays (no conversion), for hand-written loops."""
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    # -- weights ------------------------------------------------------------------
    def get_weights(self):
        """Every layer's weights as host NumPy arrays, in layer order."""
        if not self.built and self.input_shape is not None:
            self.build()
        return [to_numpy(w).copy() for l in self.layers for w in l.weights]

    def set_weights(self, weights):
        serialization.assign_weights(self, list(weights))

    def save_weights(self, path):
        serialization.save_weights(self, path)

    def load_weights(self, path):
        serialization.load_weights(self, path)

    def save(self, path, include_optimizer=True, training_state=None):
        """Architecture, weights, compile settings and optimizer state in one .npz (atomic)."""
        serialization.save_model(self, path, include_optimizer, training_state)

    def get_config(self):
        return {"name": self.name,
                "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self.layers]}

    def to_json(self):
        return json.dumps({"class_name": "Sequential", "config": self.get_config()})

    def summary(self, print_fn=print):
        """Keras-like table of layers, output shapes and parameter counts."""
        if not self.built:
            self.build()
        rows = [(f"{l.name} ({type(l).__name__})", str((None,) + tuple(s)), f"{l.count_params():,}")
                for l, s in zip(self.layers, self.layer_shapes)]
        widths = [max(len(h), *(len(r[i]) for r in rows)) + 2
                  for i, h in enumerate(("Layer (type)", "Output Shape", "Param #"))]
        line = lambda cells: "".join(c.ljust(w) for c, w in zip(cells, widths))
        total = self.count_params()
        trainable = sum(int(p.size) for p in self.params.values())
        text = [f'Model: "{self.name}"', "_" * sum(widths),
                line(("Layer (type)", "Output Shape", "Param #")), "=" * sum(widths)]
        text += [line(r) for r in rows]
        text += ["=" * sum(widths), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                 f"Non-trainable params: {total - trainable:,}", "_" * sum(widths)]
        print_fn("\n".join(text))


def _progress(verbose, steps, epoch, epochs):
    if verbose != 1:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch", leave=True)
from .serialization import load_model, model_from_config  # noqa: E402  (an.models.load_model)

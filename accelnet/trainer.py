"""The one training loop behind Sequential and the functional Model: compile, fit,
evaluate, predict (Keras 3's trainer).

A model provides `forward(x, training, logits)`, `backward(grad, on_layer_done)`, the
dicts `trainable_params`/`trainable_grads` and `output_shape`; this mixin does the rest.
Training data go to the device once per call; batches are sliced there; the loss and
every metric accumulate on the device (0-d arrays) and are read back once per epoch, in
one transfer. Per-batch host reads happen only when a callback asks for per-batch logs
(or looks at each batch's loss, as TerminateOnNaN does).

Data-parallel training hides behind one interface (`LocalTraining` / `DataParallel`):
the step calls its hooks and knows nothing about ranks.
"""
import contextlib
import math

import numpy

from . import callbacks as cbks
from . import dense_stack, distributed, interrupts, kernels, memory
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from . import random as an_random
from . import validation
from .backend import get_array_module, get_backend, to_numpy
from .errors import InvalidArgumentError, NotCompiledError, ShapeError

# Metrics that only compare scores: they give the same result on logits, so the fused
# softmax output needs no softmax for them.
_ORDER_ONLY = (metrics_mod.sparse_categorical_accuracy, metrics_mod.categorical_accuracy,
               metrics_mod.top_k_categorical_accuracy, metrics_mod.sparse_top_k_categorical_accuracy)


# -- data parallelism behind one interface ------------------------------------------------
class LocalTraining:
    """One process: every hook is the identity."""

    def start(self, model):
        pass

    def order(self, order):
        return order

    def shard(self, n):
        return 0, n

    def begin_step(self, local_n, global_n):
        pass

    def layer_done(self, layer):
        pass

    def finish_step(self):
        pass

    def mean_loss(self, loss, local_n, global_n):
        """This batch's loss over every rank, as a host float (one read)."""
        return float(to_numpy(loss))

    def reduce_state(self, arrays):
        """Sum metric state arrays over the ranks in place (none to sum here)."""

    def gather(self, local):
        return local


class DataParallel(LocalTraining):
    """`mpiexec -n N`: same start on every rank, each rank a shard of every global batch,
    gradients averaged per step, metric state summed once per epoch."""

    def __init__(self, reducer=None):
        self.reducer = reducer

    def start(self, model):
        distributed.broadcast_model(model)
        self.reducer = distributed.GradientReducer(model.layers)

    def order(self, order):
        return distributed.broadcast_host(order)

    def shard(self, n):
        return distributed.shard_bounds(n)

    def begin_step(self, local_n, global_n):
        self.reducer.begin(local_n, global_n)

    def layer_done(self, layer):
        self.reducer.layer_ready(layer)

    def finish_step(self):
        self.reducer.finish()

    def mean_loss(self, loss, local_n, global_n):
        value = float(to_numpy(loss)) if local_n else 0.0
        return float(distributed.allreduce_sum_host([value * local_n])[0]) / global_n

    def reduce_state(self, arrays):
        if not arrays:
            return
        xp = get_array_module(arrays[0])
        flat = to_numpy(xp.concatenate([a.reshape(-1).astype(xp.float64) for a in arrays]))
        total = distributed.allreduce_sum_host(flat)
        offset = 0
        for a in arrays:
            a[...] = xp.asarray(total[offset:offset + a.size].reshape(a.shape).astype(a.dtype))
            offset += a.size

    def gather(self, local):
        return distributed.allgather_rows(local)


LOCAL = LocalTraining()


def _parallel():
    return DataParallel() if distributed.active() else LOCAL


class Trainer:
    """compile/fit/evaluate/predict, shared by Sequential and Model."""

    def _init_trainer(self):
        self.optimizer = self.loss = None
        self.stop_training = False
        self.history = None
        self._metric_specs, self._weighted_specs = [], []
        self._compiled_metrics = None  # resolved at the first fit/evaluate (needs shapes)
        self._loss_tracker = None
        self._dp = LOCAL
        self._resume_epoch = None

    # -- compile ----------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, weighted_metrics=None,
                loss_weights=None, run_eagerly=None, jit_compile=None, steps_per_execution=1):
        """Keras's compile. `run_eagerly`, `jit_compile` and `steps_per_execution` are
        accepted and ignored (accelnet always runs eagerly, one batch per step)."""
        if loss is None:
            raise InvalidArgumentError("compile() needs a loss, e.g. loss='sparse_categorical_crossentropy'.")
        if loss_weights is not None:
            raise InvalidArgumentError("compile(loss_weights=...) needs several outputs; accelnet "
                                       "models have one.")
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        for spec in list(metrics or []) + list(weighted_metrics or []):
            if not (isinstance(spec, str) and spec.lower() in ("accuracy", "acc")):
                metrics_mod.get(spec)  # unknown names fail here, not in fit
        self._metric_specs = list(metrics or [])
        self._weighted_specs = list(weighted_metrics or [])
        self._compiled_metrics = None
        self._loss_tracker = metrics_mod.Mean(name="loss")

    @property
    def metrics(self):
        """The loss tracker and the compiled metrics (after the first fit/evaluate)."""
        if self._loss_tracker is None:
            return []
        return [self._loss_tracker] + [m for m, _ in self._compiled_metrics or []]

    @property
    def metrics_names(self):
        return [m.name for m in self.metrics]

    def _metrics_config(self):
        """compile(metrics=) in JSON form for model files (user objects are left out)."""
        return [s for s in map(metrics_mod.serialize, self._metric_specs) if s is not None]

    def _check_compiled(self, what):
        if self.loss is None:
            raise NotCompiledError(f"Model {self.name!r} must be compiled before {what}(): "
                                   f"call model.compile(optimizer=..., loss=...) first.")

    def _output_activation(self):
        raise NotImplementedError

    def _setup_loss(self):
        """Softmax + cross-entropy: the output layer yields logits and the loss kernel
        applies the softmax (fused, stable)."""
        self._fused = (getattr(self.loss, "fuses_with_softmax", False)
                       and not getattr(self.loss, "from_logits", False)
                       and self._output_activation() == "softmax")

    def _setup_metrics(self, y):
        if self._compiled_metrics is not None:
            return
        units = self.output_shape[-1] if self.output_shape else 1
        from_logits = bool(getattr(self.loss, "from_logits", False))
        resolved = [(metrics_mod.resolve(s, y.ndim, units, from_logits), False)
                    for s in self._metric_specs]
        names = {m.name for m, _ in resolved}
        for s in self._weighted_specs:
            m = metrics_mod.resolve(s, y.ndim, units, from_logits)
            if m.name in names:
                m.name = f"weighted_{m.name}"
            resolved.append((m, True))
        self._compiled_metrics = resolved

    # -- the loss: the one place the trainer calls it ---------------------------------------
    def _compute_loss(self, y_true, y_pred, sample_weight=None):
        """(loss, dloss/dy_pred) of a batch with Keras's sum_over_batch_size reduction:
        sum(w_i * loss_i) / batch size. `y_pred` is the logits when the loss is fused."""
        if self._fused:
            return self.loss.logits_value_and_grad(y_true, y_pred, sample_weight=sample_weight)
        return self.loss.value_and_grad(y_true, y_pred, sample_weight=sample_weight)

    def _penalty(self):
        return self.regularization_penalty()

    # -- metrics on the device --------------------------------------------------------------
    def _reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    def _update_metrics(self, y, out, n, loss, sample_weight):
        self._loss_tracker.update_state(loss, sample_weight=n)  # the batch's mean, n times
        if not self._compiled_metrics:
            return
        probs = out
        if self._fused and any(getattr(m, "_fn", None) not in _ORDER_ONLY
                               for m, _ in self._compiled_metrics):
            probs = _softmax(out)
        for m, weighted in self._compiled_metrics:
            pred = out if getattr(m, "_fn", None) in _ORDER_ONLY else probs
            m.update_state(y, pred, sample_weight=sample_weight if weighted else None)

    def _read_logs(self, reduce=False):
        """Every metric's result as floats: one transfer (plus one small allreduce of the
        metric state when data-parallel and `reduce`)."""
        metrics = self.metrics
        if reduce:
            self._dp.reduce_state([v.value for m in metrics for v in getattr(m, "variables", [])])
        values = to_numpy(metrics_mod.stack_results(metrics))
        return {m.name: float(v) for m, v in zip(metrics, values)}

    # -- the step -------------------------------------------------------------------------
    @property
    def _reducer(self):
        return getattr(self._dp, "reducer", None)

    @_reducer.setter
    def _reducer(self, reducer):  # bench/dist_bench drives steps by hand
        self._dp = DataParallel(reducer) if reducer is not None else LOCAL
        self._prepare_step()

    def _prepare_step(self):
        """What the steps of one fit use: the trainable arrays, the layers that may fold a
        plain SGD update into their backward (`_fold_rate`), the rest, and the loss mode."""
        self._train_params = self.trainable_params
        self._train_grads = self.trainable_grads
        shared = (self._graph or {}).get("shared", ())  # layers called more than once
        self._fold_layers = [
            layer for layer in self.layers
            if getattr(layer, "folds_sgd_update", False) and layer.trainable and self.trainable
            and not layer.regularizers and id(layer) not in shared]
        folded = {f"{layer.name}/{key}" for layer in self._fold_layers for key in layer.params}
        self._rest_params = {k: v for k, v in self._train_params.items() if k not in folded}
        self._rest_grads = {k: v for k, v in self._train_grads.items() if k not in folded}
        self._setup_loss()
        self._dense_step = dense_stack.plan(self, getattr(self, "_dense_step", None))

    def _fold_rate(self, x):
        """The plain-SGD rate to fold into this step's Dense backwards, or None: only on one
        process (no gradient all-reduce), outside worker-thread steps, where the GEMM adds
        into its output in the same pass (MKL: `kernels.gemm_accumulates`) and the optimizer's
        step is p -= lr * g (`plain_step_rate`). Same update as `apply`, to rounding; the
        MLP's epoch on 2 cores: see the README's CPU section."""
        if not self._fold_layers or self._dp is not LOCAL or self.uses_worker_threads:
            return None
        rate = getattr(self.optimizer, "plain_step_rate", None)
        if rate is None or not kernels.gemm_accumulates(x):
            return None
        return rate()

    def train_on_batch(self, x, y, sample_weight=None):
        """One optimizer step on a device batch; returns the batch loss (incl. penalties)
        as a 0-d device array (no host sync). An unbuilt model is built from x's shape."""
        if not self.built:
            self.build(self.input_shape or tuple(x.shape[1:]))
        self._prepare_step()
        with interrupts.deferred_sigint(), memory.out_of_memory_errors(self):  # atomic step, OOM named
            return self._train_step(x, y, len(x), len(x), sample_weight)[0]

    def _step_threads(self, x):
        """BLAS at one thread for a whole step of a model with worker-thread layers
        (`kernels.worker_step`: OpenBLAS's spinning threads would take the workers' cores)."""
        return kernels.worker_step(x) if self.uses_worker_threads else contextlib.nullcontext()

    def _train_step(self, x, y, local_n, global_n, sample_weight=None, step=0, cb=None):
        """One step on this rank's `local_n` samples of a global batch of `global_n`.
        Returns (loss, output, applied)."""
        if not hasattr(self, "_train_params"):
            self._prepare_step()
        with self._step_threads(x):
            return self._train_step_body(x, y, local_n, global_n, sample_weight, step, cb)

    def _train_step_body(self, x, y, local_n, global_n, sample_weight, step, cb):
        rate = self._fold_rate(x) if local_n else None  # None unless plain SGD folds
        if (getattr(self, "_dense_step", None) is not None and local_n and self._dp is LOCAL
                and sample_weight is None and not (cb is not None and cb.wants("loss"))):
            done = self._dense_step.step(x, y, rate)
            if done is not None:  # the whole step in one kernel call (accelnet.dense_stack)
                if rate is not None:  # updated in the kernel: the rest, and the step count
                    self.optimizer.apply(self._rest_params, self._rest_grads)
                else:
                    self.optimizer.apply(self._train_params, self._train_grads)
                return done[0], done[1], True
        out = None
        if local_n:
            out = self.forward(x, training=True, logits=self._fused)
            loss, grad = self._compute_loss(y, out, sample_weight)
            penalty = self._penalty()
            if penalty is not None:
                loss = loss + penalty
        else:  # an uneven last batch left this rank nothing
            xp = get_backend().xp
            loss = xp.zeros((), xp.float32)
        if cb is not None and cb.wants("loss"):
            cb.on_train_batch_loss(step, {"loss": self._dp.mean_loss(loss, local_n, global_n)})
            if self.stop_training:
                return loss, out, False
        self._dp.begin_step(local_n, global_n)
        if local_n:
            # nobody reads the gradient of the training inputs: skip the first layer's
            # input-gradient GEMM (a model nested in another gets this flag from its parent)
            self.needs_input_grad = False
            if rate is not None:
                for layer in self._fold_layers:
                    layer._update_rate = rate
            try:
                self.backward(grad, self._dp.layer_done)
            finally:
                for layer in self._fold_layers:
                    layer._update_rate = None
        else:
            rate = None
            for g in self.grads.values():
                g[...] = 0
        self._dp.finish_step()
        if rate is not None:  # the folded layers are updated: the rest, and the step count
            self.optimizer.apply(self._rest_params, self._rest_grads)
        else:
            self.optimizer.apply(self._train_params, self._train_grads)
        return loss, out, True

    # -- data preparation (once per call, off the batch path) ------------------------------
    def _prepare_x(self, x, what="x"):
        x = validation.as_float_input(x, what)
        if not self.built:
            self.build(self.input_shape or x.shape[1:])
        validation.check_input_shape(self.name, self._input_layer_name(), self.input_shape, x)
        return x

    def _prepare_y(self, y, n, what="y"):
        if y is None:
            raise InvalidArgumentError(f"{what} is missing: fit/evaluate need targets.")
        if len(y) != n:
            raise ShapeError(f"x and {what} must have the same number of samples, got {n} and {len(y)}.")
        return validation.prepare_labels(y, getattr(self.loss, "name", None), self.output_shape,
                                         self._output_layer_name())

    def _prepare_weights(self, sample_weight, class_weight, y, n, what="sample_weight"):
        """Per-sample weights as float32 (None when neither is given); class_weight maps
        each sample's class (integer label, argmax of one-hot, rounded binary label)."""
        if sample_weight is not None and class_weight is not None:
            raise InvalidArgumentError("fit(): give class_weight or sample_weight, not both.")
        if class_weight is not None:
            if not isinstance(class_weight, dict):
                raise InvalidArgumentError(f"class_weight must be a dict {{class: weight}}, got "
                                           f"{type(class_weight).__name__}.")
            labels = to_numpy(y)
            classes = labels.argmax(-1) if labels.ndim > 1 and labels.shape[-1] > 1 else \
                numpy.round(labels.reshape(len(labels), -1)[:, 0] if labels.ndim > 1 else labels)
            table = numpy.ones(int(max(classes.max(initial=0), max(class_weight, default=0))) + 1,
                               numpy.float32)
            for c, w in class_weight.items():
                table[int(c)] = w
            return table[classes.astype(numpy.int64)]
        if sample_weight is None:
            return None
        sw = numpy.asarray(to_numpy(sample_weight), dtype=numpy.float32)
        if sw.ndim > 1 and sw.shape[1:] == (1,):
            sw = sw.reshape(-1)
        if sw.shape != (n,):
            raise ShapeError(f"{what} must have one weight per sample, shape ({n},), got {sw.shape}.")
        if not numpy.isfinite(sw).all():
            raise InvalidArgumentError(f"{what} holds NaN or inf.")
        return sw

    # -- fit --------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, validation_batch_size=None, validation_freq=1):
        self._check_compiled("fit")
        batch_size = 32 if batch_size is None else batch_size
        verbose = 1 if verbose == "auto" else verbose
        validation.check_fit_args(batch_size, epochs, validation_split)
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        validation.check_finite(x)
        sw = self._prepare_weights(sample_weight, class_weight, y, len(x))
        if validation_data is None and validation_split:
            split = int(len(x) * (1 - validation_split))
            val_sw = None if sw is None else sw[split:]
            validation_data = (x[split:], y[split:], val_sw)
            x, y, sw = x[:split], y[:split], None if sw is None else sw[:split]
        backend = get_backend()
        x_dev, y_dev = backend.asarray(x), backend.asarray(y)
        sw_dev = None if sw is None else backend.asarray(sw)
        val = self._prepare_validation(validation_data) if validation_data is not None else None
        self._setup_metrics(y)
        self._dp = _parallel()
        if not distributed.is_main():
            verbose = 0
        n = len(x_dev)
        steps = math.ceil(n / batch_size)
        cb = cbks.CallbackList(callbacks, self, add_history=True, add_progbar=verbose != 0,
                               verbose=verbose, epochs=epochs, steps=steps)
        self.history = cb.history
        self.stop_training = False
        self._resume_epoch = None
        cb.on_train_begin({})
        if self._resume_epoch is not None:  # BackupAndRestore found a finished epoch
            initial_epoch = max(initial_epoch, self._resume_epoch)
        self._dp.start(self)
        self._prepare_step()
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            self._begin_epoch(epoch)
            cb.on_epoch_begin(epoch, {})
            order = an_random.host_rng().permutation(n) if shuffle else numpy.arange(n)
            self._train_epoch(x_dev, y_dev, sw_dev, backend.asarray(self._dp.order(order)),
                              batch_size, steps, cb)
            logs = self._read_logs(reduce=True)
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_device(*val, validation_batch_size or batch_size, cb)
                logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        cb.on_train_end(logs)
        self._dp = LOCAL
        return self.history

    def _begin_epoch(self, epoch):
        """Per-epoch state before the epoch's first batch: the device's random draws
        (dropout masks) derive from (seed, epoch), so a resumed run equals an uninterrupted
        one on every device."""
        get_backend().begin_epoch(epoch)

    def _prepare_validation(self, data):
        if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
            raise InvalidArgumentError("validation_data must be (x, y) or (x, y, sample_weight).")
        vx = self._prepare_x(data[0], "validation_data x")
        vy = self._prepare_y(data[1], len(vx), "validation_data y")
        vsw = self._prepare_weights(data[2] if len(data) == 3 else None, None, vy, len(vx),
                                    "validation_data sample_weight")
        backend = get_backend()
        return (backend.asarray(vx), backend.asarray(vy),
                None if vsw is None else backend.asarray(vsw))

    def _train_epoch(self, x_dev, y_dev, sw_dev, order, batch_size, steps, cb):
        n = len(x_dev)
        tuner = self._blas_tuner = kernels.adaptive_blas_threads(
            x_dev, workers=self.uses_worker_threads, previous=getattr(self, "_blas_tuner", None))
        try:
            for step in range(steps):
                first = step * batch_size
                global_n = min(n, first + batch_size) - first
                lo, hi = self._dp.shard(global_n)
                idx = order[first + lo:first + hi]
                xb, yb = x_dev[idx], y_dev[idx]
                swb = None if sw_dev is None else sw_dev[idx]
                cb.batch("train_begin", "on_train_batch_begin", step, lambda: {})
                # atomic step, OOM named; BLAS's threads or one, timed (ConvNets: one BLAS
                # thread throughout, `_step_threads`, and their large products on MKL's
                # threads or as halves on the workers, timed alike)
                with interrupts.deferred_sigint(), memory.out_of_memory_errors(self), \
                        tuner.step():
                    loss, out, applied = self._train_step(xb, yb, hi - lo, global_n, swb, step, cb)
                if not applied:
                    break
                if hi > lo:
                    self._update_metrics(yb, out, hi - lo, loss, swb)
                cb.batch("train_end", "on_train_batch_end", step, self._batch_logs)
                if self.stop_training:
                    break
        finally:
            tuner.close()
        kernels.check_errors()

    def _batch_logs(self):
        """Running logs of this epoch (this rank's samples), read from the device."""
        logs = self._read_logs()
        if "accuracy" in logs:  # Keras 2's key, read by older callbacks (seed 004)
            logs["acc"] = logs["accuracy"]
        return logs

    # -- evaluate / predict ----------------------------------------------------------------
    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 callbacks=None, return_dict=False):
        self._check_compiled("evaluate")
        batch_size = 32 if batch_size is None else batch_size
        validation.check_fit_args(batch_size, 0, 0.0)
        x = self._prepare_x(x)
        y = self._prepare_y(y, len(x))
        sw = self._prepare_weights(sample_weight, None, y, len(x))
        backend = get_backend()
        self._setup_metrics(y)
        self._dp = _parallel()
        cb = cbks.CallbackList(callbacks, self, verbose=verbose, epochs=1,
                               steps=math.ceil(len(x) / batch_size))
        logs = self._evaluate_device(backend.asarray(x), backend.asarray(y),
                                     None if sw is None else backend.asarray(sw), batch_size, cb)
        self._dp = LOCAL
        if verbose and distributed.is_main():
            print(" - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        if return_dict:
            return logs
        values = [logs[m.name] for m in self.metrics]
        return values[0] if len(values) == 1 else values

    def _evaluate_device(self, x_dev, y_dev, sw_dev, batch_size, cb):
        self._setup_loss()
        self._reset_metrics()
        cb.on_test_begin({})
        lo, hi = self._dp.shard(len(x_dev))  # (0, n) in one process
        x_dev, y_dev = x_dev[lo:hi], y_dev[lo:hi]
        sw_dev = None if sw_dev is None else sw_dev[lo:hi]
        n = len(x_dev)
        penalty = self._penalty()
        for step, start in enumerate(range(0, n, batch_size)):
            cb.batch("test_begin", "on_test_batch_begin", step, lambda: {})
            xb, yb = x_dev[start:start + batch_size], y_dev[start:start + batch_size]
            swb = None if sw_dev is None else sw_dev[start:start + batch_size]
            with self._step_threads(xb):
                out = self.forward(xb, training=False, logits=self._fused)
            loss, _ = self._compute_loss(yb, out, swb)
            if penalty is not None:
                loss = loss + penalty
            self._update_metrics(yb, out, len(xb), loss, swb)
            cb.batch("test_end", "on_test_batch_end", step, self._read_logs)
        logs = self._read_logs(reduce=True)
        cb.on_test_end(logs)
        return logs

    def predict(self, x, batch_size=None, verbose=0, callbacks=None):
        """Outputs for x as a NumPy array on the host (probabilities for softmax outputs)."""
        batch_size = 32 if batch_size is None else batch_size
        validation.check_fit_args(batch_size, 0, 0.0)
        x = self._prepare_x(x)
        backend = get_backend()
        dp = _parallel()
        lo, hi = dp.shard(len(x))  # each rank predicts its share
        x_dev = backend.asarray(x[lo:hi])
        cb = cbks.CallbackList(callbacks, self, verbose=verbose,
                               steps=math.ceil(len(x_dev) / batch_size))
        cb.on_predict_begin({})
        outs = []
        for step, start in enumerate(range(0, len(x_dev), batch_size)):
            cb.batch("predict_begin", "on_predict_batch_begin", step, lambda: {})
            xb = x_dev[start:start + batch_size]
            with self._step_threads(xb):
                outs.append(self.forward(xb, training=False))
            cb.batch("predict_end", "on_predict_batch_end", step, lambda: {"outputs": outs[-1]})
        cb.on_predict_end({})
        local = (backend.to_numpy(backend.xp.concatenate(outs)) if outs else
                 numpy.empty((0,) + tuple(self.output_shape), numpy.float32))
        return dp.gather(local)

    def predict_on_batch(self, x):
        return self.predict(x, batch_size=len(x))

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        return self.evaluate(x, y, batch_size=len(x), verbose=0, sample_weight=sample_weight,
                             return_dict=return_dict)

    # -- optimizer state by structure -----------------------------------------------------
    def optimizer_state(self):
        """The optimizer's state for a file, slots keyed by the parameter's position
        ('m/@3') rather than by layer names, which differ in a rebuilt model."""
        if self.optimizer is None:
            return {}
        position = {key: i for i, key in enumerate(self.trainable_params)}
        state = {}
        for name, arr in self.optimizer.get_state().items():
            slot, _, key = name.partition("/")
            state[f"{slot}/@{position[key]}" if key in position else name] = arr
        return state

    def set_optimizer_state(self, state):
        """Inverse of optimizer_state; files written before positions (names) load too."""
        keys = list(self.trainable_params)
        named = {}
        for name, arr in state.items():
            slot, _, key = name.partition("/")
            if key.startswith("@"):
                i = int(key[1:])
                if not 0 <= i < len(keys):
                    raise ShapeError(f"Optimizer state {name!r} refers to parameter {i}, but model "
                                     f"{self.name!r} has {len(keys)} trainable arrays.")
                key = keys[i]
            named[f"{slot}/{key}" if key else slot] = arr
        self.optimizer.set_state(named)


def _softmax(logits):
    xp = get_array_module(logits)
    z = logits - logits.max(axis=-1, keepdims=True)
    e = xp.exp(z)
    return e / e.sum(axis=-1, keepdims=True)

"""Kernels suite: each kernel's Numba form against its reference on the active backend.

Both forms get the same inputs at realistic shapes (the MLP's and the Keras mnist_cnn's
at batch 128). The first call of each form is timed on its own (it includes Numba's
compile or cache load; the optimizer steps update their inputs in place, so both forms'
results are compared on fresh copies); then the two alternate (ref, numba, ref, numba, ...) and the
median and spread of each are reported, with speedup = reference / numba.
"""
import importlib

import numpy

import accelnet.kernels as K

from . import timing

TARGET = 2.0
FLOAT = numpy.float32


def _dispatch_api():
    """(implementation, current_implementation) from accelnet.kernels or its _dispatch."""
    impl = getattr(K, "implementation", None)
    current = getattr(K, "current_implementation", None)
    if impl is None or current is None:
        from accelnet.kernels import _dispatch
        impl, current = impl or _dispatch.implementation, current or _dispatch.current_implementation
    return impl, current


def _normal(rng, shape, scale=1.0):
    return rng.standard_normal(shape, dtype=FLOAT) * FLOAT(scale)


def cases(quick):
    """[(kernel, label, make(rng) -> (args, kwargs))] at full or --quick shapes."""
    batch, same_batch = (16, 8) if quick else (128, 32)
    out = []
    for n, c in [(128, 10), (1024, 10), (128, 1000), (1024, 1000)]:
        out.append(("softmax_cross_entropy", f"logits {n}x{c}",
                    lambda rng, n=n, c=c: ((_normal(rng, (n, c), 3),
                                            rng.integers(0, c, n).astype(numpy.int32)), {})))
    for shape in [(128, 512), (1024, 4096)]:
        out.append(("relu_backward", "x {}x{}".format(*shape),
                    lambda rng, s=shape: ((_normal(rng, s), _normal(rng, s)), {})))
    for name, shape, k, padding in [("conv1", (batch, 28, 28, 1), 3, "valid"),
                                    ("conv2", (batch, 26, 26, 32), 3, "valid"),
                                    ("same", (same_batch, 32, 32, 64), 3, "same"),
                                    ("seed004 conv1", (batch, 28, 28, 1), 5, "same")]:
        label = f"{name} x{shape} {k}x{k} {padding}"
        n, h, w, c = shape
        oh, ow = (h - k + 1, w - k + 1) if padding == "valid" else (h, w)
        out.append(("im2col", label, lambda rng, s=shape, k=k, p=padding:
                    ((_normal(rng, s), (k, k)), {"stride": 1, "padding": p})))
        out.append(("col2im", label, lambda rng, s=shape, k=k, p=padding, rows=n * oh * ow, c=c:
                    ((_normal(rng, (rows, k * k * c)), s, (k, k)), {"stride": 1, "padding": p})))
    for label, shape in [("MLP (128, 512)", (128, 512)), ("mnist_cnn (128, 12, 12, 64)",
                                                          (batch, 12, 12, 64))]:
        out.append(("dropout_mask", label, lambda rng, s=shape:
                    ((numpy.zeros(1, FLOAT), s, 12345, 0.25), {})))
    shape = (batch, 12, 12, 64)  # Dropout's forward: the mask and x * mask in one pass
    out.append(("dropout_mask", f"mnist_cnn {shape} with x", lambda rng, s=shape:
                ((numpy.zeros(1, FLOAT), s, 12345, 0.25), {"x": _normal(rng, s)})))
    for label, shape, padding in [("mnist_cnn", (batch, 24, 24, 64), "valid"),
                                  ("seed004 pool1", (batch, 28, 28, 32), "same"),
                                  ("cifar", (batch, 16, 16, 64), "same")]:
        label = f"{label} x{shape} 2x2 {padding}"
        out.append(("max_pool", label, lambda rng, s=shape, p=padding:
                    ((_normal(rng, s), (2, 2), (2, 2)), {"padding": p})))
        out.append(("max_pool_backward", label, lambda rng, s=shape, p=padding:
                    _pool_backward_args(rng, s, p)))
    # Conv2D + MaxPooling2D fused (accelnet.fusion) call it per slice of a few images
    for label, shape, padding in [("mnist_cnn conv2 slice", (8, 24, 24, 64), "valid"),
                                  ("seed004 conv1 slice", (8, 28, 28, 32), "same"),
                                  ("seed004 conv2 slice", (8, 14, 14, 64), "same")]:
        out.append(("max_pool_relu_grad", f"{label} x{shape} 2x2 {padding}",
                    lambda rng, s=shape, p=padding: _pool_relu_grad_args(rng, s, p)))
    for label, rows, f in [("MLP dense1", batch, 512), ("mnist_cnn conv2", batch * 576, 64)]:
        out.append(("bias_relu", f"{label} ({rows}, {f})", lambda rng, r=rows, f=f:
                    ((_normal(rng, (r, f)), _normal(rng, (f,))), {})))
    for label, rows, f in [("mnist_cnn conv2", batch * 576, 64), ("cifar conv1", batch * 1024, 32)]:
        out.append(("relu_bias_grad", f"{label} ({rows}, {f})", lambda rng, r=rows, f=f:
                    ((_normal(rng, (r, f)), _normal(rng, (r, f))), {})))
    # Winograd at Conv2D's default tile per kernel size (winograd.TILES)
    for label, shape, f, r, padding in [("mnist_cnn conv2", (same_batch, 26, 26, 32), 64, 3, "valid"),
                                        ("cifar conv2", (same_batch, 32, 32, 32), 32, 3, "same"),
                                        ("cifar conv3", (same_batch, 16, 16, 64), 64, 3, "same"),
                                        ("seed004 conv2", (same_batch, 14, 14, 32), 64, 5, "same")]:
        m = _default_tile(r)
        label = f"{label} x{shape} {r}x{r}->{f} {padding} F({m},{r})"
        out.append(("winograd_conv", label, lambda rng, s=shape, f=f, r=r, m=m, p=padding:
                    _winograd_args(rng, s, f, p, r, m)))
        out.append(("winograd_weight_grad", label, lambda rng, s=shape, f=f, r=r, m=m, p=padding:
                    _weight_grad_args(rng, s, r, f, p, tile=m)))
        if padding == "valid":  # where Conv2D takes both gradients at once (winograd_grads)
            out.append(("winograd_grads", label, lambda rng, s=shape, f=f, r=r, m=m, p=padding:
                        _winograd_grads_args(rng, s, f, p, r, m)))
    # Conv2D's fused pooling on the Winograd path, per slice of 8 images as it calls them
    for label, shape, f, r, padding in [("mnist_cnn conv2 slice", (8, 26, 26, 32), 64, 3, "valid"),
                                        ("seed004 conv2 slice", (8, 14, 14, 32), 64, 5, "same")]:
        m = _default_tile(r)
        label = f"{label} x{shape} {r}x{r}->{f} {padding} F({m},{r}) + pool 2x2"
        out.append(("winograd_conv_pool", label, lambda rng, s=shape, f=f, r=r, m=m, p=padding:
                    _winograd_pool_args(rng, s, f, p, r, m)))
        if padding == "valid":
            out.append(("winograd_pool_grads", label,
                        lambda rng, s=shape, f=f, r=r, m=m, p=padding:
                        _winograd_pool_grads_args(rng, s, f, p, r, m)))
    for label, shape, k, filters, padding in [
            ("mnist_cnn conv1", (batch, 28, 28, 1), 3, 32, "valid"),
            ("seed004 conv1", (batch, 28, 28, 1), 5, 32, "same"),
            ("seed004 conv2", (batch, 14, 14, 32), 5, 64, "same"),
            ("cifar conv1", (batch, 32, 32, 3), 3, 32, "same")]:
        label = f"{label} x{shape} {k}x{k}->{filters} {padding}"
        out.append(("conv_forward", label, lambda rng, s=shape, k=k, f=filters, p=padding: (
            (_normal(rng, s), _normal(rng, (k * k * s[3], f), 0.1), (k, k), 1, p),
            {"bias": _normal(rng, (f,)), "relu": True})))
        out.append(("conv_weight_grad", label, lambda rng, s=shape, k=k, f=filters, p=padding:
                    _weight_grad_args(rng, s, k, f, p, im2col=True)))
    for label, shape, k, filters, padding in [
            ("mnist_cnn conv2", (batch, 26, 26, 32), 3, 64, "valid"),
            ("seed004 conv2", (batch, 14, 14, 32), 5, 64, "same")]:
        out.append(("conv_input_grad", f"{label} x{shape} {k}x{k}->{filters} {padding}",
                    lambda rng, s=shape, k=k, f=filters, p=padding: _input_grad_args(rng, s, k, f, p)))
    for label, shape in [("cifar bn1", (batch, 32, 32, 32)), ("cifar bn3", (batch, 16, 16, 64))]:
        rows, c = int(numpy.prod(shape[:3])), shape[3]
        label = f"{label} x{shape} as ({rows}, {c})"
        out.append(("batch_norm_forward", label, lambda rng, r=rows, c=c:
                    ((_normal(rng, (r, c), 2) + FLOAT(0.5), _normal(rng, c), _normal(rng, c),
                      1e-3), {})))
        out.append(("batch_norm_backward", label, lambda rng, r=rows, c=c:
                    _batch_norm_backward_args(rng, r, c)))
    # optimizer steps, in place: Adam over mnist_cnn's largest and a small kernel, SGD with
    # momentum over the MLP's first kernel
    for label, shape in [("mnist_cnn dense1 kernel", (9216, 128)), ("mnist_cnn conv2 kernel",
                                                                     (3, 3, 32, 64))]:
        out.append(("adam_update", f"{label} {shape}", lambda rng, s=shape: (
            (_normal(rng, s), _normal(rng, s), _normal(rng, s, 0.1), numpy.abs(_normal(rng, s)),
             1e-3, 0.9, 0.999, 1e-7), {})))
    shape = (784, 512)
    out.append(("sgd_update", f"MLP dense1 kernel {shape}, momentum 0.9", lambda rng, s=shape: (
        (_normal(rng, s), _normal(rng, s), 0.01), {"momentum": 0.9, "v": _normal(rng, s, 0.1)})))
    # the MLP's whole SGD step (issue 13): reference array ops against one compiled call
    for ending in ("SGD folded", "gradients"):
        out.append(("dense_step", f"MLP 784-512-512-10 batch {batch}, {ending}",
                    lambda rng, e=ending: _dense_step_args(rng, batch, (784, 512, 512, 10), e)))
    return out


def _batch_norm_backward_args(rng, rows, c):
    """(dy, x, gamma, mean, inv_std) with x's own batch statistics."""
    x = _normal(rng, (rows, c), 2) + FLOAT(0.5)
    mean = x.mean(axis=0, dtype=numpy.float64)
    inv_std = 1 / numpy.sqrt(x.var(axis=0, dtype=numpy.float64) + 1e-3)
    return (_normal(rng, (rows, c)), x, _normal(rng, c), mean, inv_std), {}


def _output_shape(shape, k, padding):
    n, h, w, _ = shape
    return (n, h - k + 1, w - k + 1) if padding == "valid" else (n, h, w)


def _weight_grad_args(rng, shape, k, filters, padding, im2col=False, tile=2):
    dy = _normal(rng, _output_shape(shape, k, padding) + (filters,))
    if im2col:
        return (_normal(rng, shape), dy, (k, k), 1, padding), {}
    return (_normal(rng, shape), dy, padding), {"m": tile, "r": k}


def _default_tile(r):
    """The Winograd tile m Conv2D takes for an r x r kernel's forward."""
    return importlib.import_module("accelnet.kernels.winograd").TILES[(r, r)]["forward"]


def _input_grad_args(rng, shape, k, filters, padding):
    dz = _normal(rng, _output_shape(shape, k, padding) + (filters,))
    return (dz, _normal(rng, (k * k * shape[3], filters), 0.1), shape, (k, k), 1, padding), {}


def _winograd_args(rng, shape, filters, padding, r=3, m=2):
    wg = importlib.import_module("accelnet.kernels.winograd")
    u = wg.winograd_weights(_normal(rng, (r, r, shape[3], filters), 0.1), m=m)
    return (_normal(rng, shape), u, padding), {"r": r}


def _winograd_grads_args(rng, shape, filters, padding, r, m):
    (x, u, _), _ = _winograd_args(rng, shape, filters, padding, r, m)
    dy = _normal(rng, _output_shape(shape, r, padding) + (filters,))
    return (x, dy, u, padding), {"r": r}


def _winograd_pool_args(rng, shape, filters, padding, r, m):
    (x, u, _), _ = _winograd_args(rng, shape, filters, padding, r, m)
    return (x, u, (2, 2), (2, 2), padding), {"bias": _normal(rng, (filters,), 0.1), "relu": True,
                                             "r": r}


def _winograd_pool_grads_args(rng, shape, filters, padding, r, m):
    """(x, grad, argmax, pooled, U, pool, strides, padding) from a reference forward."""
    (x, u, pool, strides, _), kwargs = _winograd_pool_args(rng, shape, filters, padding, r, m)
    wp = importlib.import_module("accelnet.kernels.winograd_pool")
    pooled, arg = wp.reference(x, u, pool, strides, padding, **kwargs)
    return (x, _normal(rng, pooled.shape), arg, pooled, u, pool, strides, padding), {"r": r}


def _pool_backward_args(rng, shape, padding):
    """(grad, argmax, x_shape, pool, strides) from a reference forward on random x."""
    mp = importlib.import_module("accelnet.kernels.max_pool")  # the module, not the function
    out, arg = mp.reference(_normal(rng, shape), (2, 2), (2, 2), padding)
    return (_normal(rng, out.shape), arg, shape, (2, 2), (2, 2)), {"padding": padding}


def _pool_relu_grad_args(rng, shape, padding):
    """(grad, argmax, pooled, z_shape, pool, strides) from a reference forward on a ReLU
    output."""
    mp = importlib.import_module("accelnet.kernels.max_pool")
    out, arg = mp.reference(numpy.maximum(_normal(rng, shape), 0), (2, 2), (2, 2), padding)
    return (_normal(rng, out.shape), arg, out, shape, (2, 2), (2, 2)), {"padding": padding}


# kernels whose public function is dispatched under another kernel's name (none today:
# every public kernel function has its own entry in kernels/_dispatch.py's FORMS)
DISPATCH_NAME = {}
# the size hint the public function passes to the dispatcher's shape rules (_dispatch.SHAPE_RULES)
SIZE_HINTS = {"softmax_cross_entropy": lambda args: args[0].shape[-1],
              "im2col": lambda args: args[0].shape[-1] if args[0].ndim == 4 else None,
              "conv_forward": lambda args: args[0].shape[-1] if args[0].ndim == 4 else None,
              "conv_weight_grad": lambda args: args[0].shape[-1] if args[0].ndim == 4 else None}


def _max_abs_diff(a, b, backend):
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    return max(float(numpy.max(numpy.abs(backend.to_numpy(u).astype(numpy.float64)
                                          - backend.to_numpy(v))) if numpy.size(u) else 0.0)
               for u, v in zip(a, b))


def _max_abs(a, backend):
    a = a if isinstance(a, tuple) else (a,)
    return max(float(numpy.max(numpy.abs(backend.to_numpy(u)))) if numpy.size(u) else 0.0
               for u in a if hasattr(u, "shape"))


def _dense_step_args(rng, batch, widths, ending):
    """(x, labels, kernels, biases, ReLU flags, rate) for `kernels.dense_step`: the SGD
    update folded in, or (rate None) the gradients into given arrays."""
    ks = [_normal(rng, (a, b), (2.0 / a) ** 0.5) for a, b in zip(widths, widths[1:])]
    bs = [_normal(rng, (b,), 0.1) for b in widths[1:]]
    args = (_normal(rng, (batch, widths[0])), rng.integers(0, widths[-1], batch), ks, bs,
            [True] * (len(widths) - 2))
    if ending == "gradients":
        return args, {"kernel_grads": [numpy.empty_like(k) for k in ks],
                      "bias_grads": [numpy.empty_like(b) for b in bs]}
    return args + (1e-3,), {}


def bench_case(kernel, make, backend, budget_s, min_runs, max_runs, seed):
    """Timings of one case: {'reference': {...}, 'numba': {...}, 'speedup', ...}."""
    impl, current = _dispatch_api()
    fn = getattr(K, kernel)

    def inputs():
        host_args, host_kwargs = make(numpy.random.default_rng(seed))
        def move(a):
            if isinstance(a, list):  # a list of arrays (dense_step's layers)
                return [move(v) for v in a]
            return backend.asarray(a) if isinstance(a, numpy.ndarray) else a
        return (tuple(move(a) for a in host_args),
                {k: move(v) for k, v in host_kwargs.items()})

    args, kwargs = inputs()

    def form(name):
        def call():
            with impl(name):
                return fn(*args, **kwargs)
        return call

    forms = {"reference": form("reference"), "numba": form("numba")}
    sync = backend.synchronize
    row = {}
    for name, call in forms.items():
        with impl(name):
            resolved = current(DISPATCH_NAME.get(kernel, kernel), args[0])
        row[name] = {"implementation": resolved, "first_call_s": timing.clock(call, sync)}
    estimate = max(timing.clock(forms["reference"], sync), 1e-6)
    runs = int(min(max(budget_s / estimate, min_runs), max_runs))
    times = timing.alternate(forms, runs, lambda call: timing.clock(call, sync))
    for name in forms:
        row[name].update(timing.spread(times[name]))
    def on_fresh_inputs(name):  # optimizer kernels update their arguments in place
        fresh_args, fresh_kwargs = inputs()
        with impl(name):
            return fn(*fresh_args, **fresh_kwargs)

    want = on_fresh_inputs("reference")
    row["max_abs_diff"] = _max_abs_diff(want, on_fresh_inputs("numba"), backend)
    # relative to the output's magnitude: gradients summed over a batch reach the hundreds
    row["match"] = row["max_abs_diff"] <= 1e-4 * max(1.0, _max_abs(want, backend))
    row["speedup"] = row["reference"]["median_s"] / row["numba"]["median_s"]
    row["speedup_best"] = row["reference"]["min_s"] / row["numba"]["min_s"]  # least disturbed
    hint = SIZE_HINTS.get(kernel, lambda a: None)(args)
    row["default"] = current(DISPATCH_NAME.get(kernel, kernel), args[0], hint)
    row["default_speedup"] = 1.0 if row["default"] == "reference" else row["speedup"]
    row["target"] = TARGET
    row["pass"] = row["speedup"] >= TARGET
    return row


def run(backend, quick, log=print):
    """All kernel cases; a case that raises becomes a row with its error (the suite goes on)."""
    budget, lo, hi = (0.05, 3, 100) if quick else (0.4, 10, 1000)
    rows = []
    for i, (kernel, label, make) in enumerate(cases(quick)):
        log(f"kernels: {kernel} {label}")
        row = {"kernel": kernel, "case": label}
        try:
            row.update(bench_case(kernel, make, backend, budget, lo, hi, seed=i))
        except Exception as exc:  # a missing or broken kernel is reported, not fatal
            row["error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


def targets(rows):
    """Two pass/fail lines per kernel: the Numba form's worst speedup across cases against
    2x, and (issue 13) the default form's worst speedup over the reference against 1x (1.0
    where a shape rule makes the reference itself the default)."""
    out = []
    for kernel in dict.fromkeys(r["kernel"] for r in rows):
        mine = [r for r in rows if r["kernel"] == kernel]
        complete = all("speedup" in r for r in mine)
        worst = min(r["speedup"] for r in mine) if complete else None
        out.append({"name": f"{kernel} numba >= {TARGET:g}x reference (worst case)",
                    "value": worst, "op": ">=", "target": TARGET, "stretch": None,
                    "pass": worst is not None and worst >= TARGET})
        worst_default = min(r["default_speedup"] for r in mine) if complete else None
        out.append({"name": f"{kernel} default form >= reference (worst case)",
                    "value": worst_default, "op": ">=", "target": 1.0, "stretch": None,
                    "pass": worst_default is not None and worst_default >= 1.0})
    return out

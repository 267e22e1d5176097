"""The single dispatch point: which form of a kernel runs for a given array.

Every kernel has three forms: `reference` (plain NumPy/CuPy ops), `numba-cpu`
(`numba.njit`, serial unless ACCELNET_NUMBA_PARALLEL=1; NumPy arrays) and `numba-cuda` (`numba.cuda.jit`, CuPy
arrays). The device comes from the array (CuPy -> "gpu", else "cpu"); the family
("numba" or "reference") comes from, in order of precedence:

1. `with implementation("reference"|"numba"):` (process-wide while the block runs;
   `implementation(None)` inside a block restores the normal choice);
2. the environment variable `ACCELNET_KERNELS=numba|reference` (read at every call);
3. `DEFAULTS[kernel]["cpu"|"gpu"]` below (edit it when benchmarks say otherwise).

`FORMS` names, for every kernel, the function of each form (module, attribute), looked up
at call time so tests can monkeypatch a form. Numba forms accept float32/float64 arrays
only; other dtypes run the reference form. On a GPU whose numba-cuda cannot compile
(`_cuda.toolchain_problem()`), the numba-cuda forms give way to the references.
"""
import contextlib
import importlib
import os
import types

import numpy

from ..backend import is_device_array

ENV_VAR = "ACCELNET_KERNELS"
FAMILIES = ("numba", "reference")

# kernel -> form -> (module in this package, function name)
FORMS = {
    "softmax_cross_entropy": {"reference": ("softmax_cross_entropy", "reference"),
                              "numba-cpu": ("softmax_cross_entropy", "numba_cpu"),
                              "numba-cuda": ("softmax_cross_entropy", "numba_cuda")},
    "relu_backward": {"reference": ("relu_backward", "reference"),
                      "numba-cpu": ("relu_backward", "numba_cpu"),
                      "numba-cuda": ("relu_backward", "numba_cuda")},
    "im2col": {"reference": ("im2col", "reference_im2col"),
               "numba-cpu": ("im2col", "numba_cpu_im2col"),
               "numba-cuda": ("im2col", "numba_cuda_im2col")},
    "col2im": {"reference": ("im2col", "reference_col2im"),
               "numba-cpu": ("im2col", "numba_cpu_col2im"),
               "numba-cuda": ("im2col", "numba_cuda_col2im")},
    "dropout_mask": {"reference": ("dropout_mask", "reference"),
                     "numba-cpu": ("dropout_mask", "numba_cpu"),
                     "numba-cuda": ("dropout_mask", "numba_cuda")},
    "max_pool": {"reference": ("max_pool", "reference"),
                 "numba-cpu": ("max_pool", "numba_cpu"),
                 "numba-cuda": ("max_pool", "numba_cuda")},
    "max_pool_backward": {"reference": ("max_pool", "reference_backward"),
                          "numba-cpu": ("max_pool", "numba_cpu_backward"),
                          "numba-cuda": ("max_pool", "numba_cuda_backward")},
    "max_pool_relu_grad": {"reference": ("max_pool", "reference_relu_grad"),
                           "numba-cpu": ("max_pool", "numba_cpu_relu_grad"),
                           "numba-cuda": ("max_pool", "numba_cuda_relu_grad")},
    "bias_relu": {"reference": ("bias_relu", "reference"),
                  "numba-cpu": ("bias_relu", "numba_cpu"),
                  "numba-cuda": ("bias_relu", "numba_cuda")},
    "relu_bias_grad": {"reference": ("bias_relu", "reference_grad"),
                       "numba-cpu": ("bias_relu", "numba_cpu_grad"),
                       "numba-cuda": ("bias_relu", "numba_cuda_grad")},
    "winograd_conv": {"reference": ("winograd", "reference"),
                      "numba-cpu": ("winograd", "numba_cpu"),
                      "numba-cuda": ("winograd", "numba_cuda")},
    "winograd_weight_grad": {"reference": ("winograd", "reference_weight_grad"),
                             "numba-cpu": ("winograd", "numba_cpu_weight_grad"),
                             "numba-cuda": ("winograd", "numba_cuda_weight_grad")},
    "winograd_grads": {"reference": ("winograd_grads", "reference"),
                       "numba-cpu": ("winograd_grads", "numba_cpu"),
                       "numba-cuda": ("winograd_grads", "numba_cuda")},
    "winograd_conv_pool": {"reference": ("winograd_pool", "reference"),
                           "numba-cpu": ("winograd_pool", "numba_cpu"),
                           "numba-cuda": ("winograd_pool", "numba_cuda")},
    "winograd_pool_grads": {"reference": ("winograd_pool", "reference_grads"),
                            "numba-cpu": ("winograd_pool", "numba_cpu_grads"),
                            "numba-cuda": ("winograd_pool", "numba_cuda_grads")},
    "conv_forward": {"reference": ("conv_gemm", "reference_forward"),
                     "numba-cpu": ("conv_gemm", "numba_cpu_forward"),
                     "numba-cuda": ("conv_gemm", "numba_cuda_forward")},
    "conv_weight_grad": {"reference": ("conv_gemm", "reference_weight_grad"),
                         "numba-cpu": ("conv_gemm", "numba_cpu_weight_grad"),
                         "numba-cuda": ("conv_gemm", "numba_cuda_weight_grad")},
    "conv_input_grad": {"reference": ("conv_gemm", "reference_input_grad"),
                        "numba-cpu": ("conv_gemm", "numba_cpu_input_grad"),
                        "numba-cuda": ("conv_gemm", "numba_cuda_input_grad")},
    "batch_norm_forward": {"reference": ("batch_norm", "reference_forward"),
                           "numba-cpu": ("batch_norm", "numba_cpu_forward"),
                           "numba-cuda": ("batch_norm", "numba_cuda_forward")},
    "batch_norm_backward": {"reference": ("batch_norm", "reference_backward"),
                            "numba-cpu": ("batch_norm", "numba_cpu_backward"),
                            "numba-cuda": ("batch_norm", "numba_cuda_backward")},
    "adam_update": {"reference": ("optimizer_update", "reference_adam"),
                    "numba-cpu": ("optimizer_update", "numba_cpu_adam"),
                    "numba-cuda": ("optimizer_update", "numba_cuda_adam")},
    "sgd_update": {"reference": ("optimizer_update", "reference_sgd"),
                   "numba-cpu": ("optimizer_update", "numba_cpu_sgd"),
                   "numba-cuda": ("optimizer_update", "numba_cuda_sgd")},
    # a whole Dense-stack training step; on the GPU the array-op form (CuPy, cuBLAS)
    "dense_step": {"reference": ("dense_step", "reference"),
                   "numba-cpu": ("dense_step", "numba_cpu"),
                   "numba-cuda": ("dense_step", "reference")},
}

# GPU (H100, numba-cuda through the direct launch, kernels._cuda_launch; kernel bench medians of
# bench/results/gpu_check_vm_20261127-043300 and -045000): numba-cuda for softmax-CE 4.6-4.8x,
# dropout mask 2.1-2.6x, max-pool 2.7-3.3x, pool+ReLU grad 1.3-1.5x, ReLU+bias grad 3.9-12x,
# col2im and the conv input gradient (GEMM + col2im) 0.84-2.8x, BatchNorm 1.7-11x, the Winograd
# passes 3.2-4.7x, Adam 1.9-2.1x, SGD 1.05x; im2col and the conv forward and weight gradient
# (im2col + GEMM) only below 8 channels (SHAPE_RULES: 1.6-2.1x at 1-3 channels, 0.35-0.83x for
# im2col at 32-64). bias_relu (not in the kernel bench): the all-numba MLP arm, whose only other
# difference from the default was it, ran 1.60 against 2.03 ms/step at batch 128 and 1.94
# against 2.37 at 1024 (-045000). The CuPy reference for relu_backward (0.96-1.06x, a tie) and
# max_pool_backward (0.69-1.6x; mnist_cnn's pooling backward at batch 1024: 2.24 ms numba-cuda
# against 1.23). With ACCELNET_CUDA_FAST_LAUNCH=0 every numba-cuda launch costs ~0.16-0.28 ms
# of host time and ACCELNET_KERNELS=reference is then faster.
# CPU adam_update and sgd_update: one pass against the reference's several, measured 4.7x for
# Adam over mnist_cnn's 1.2 M parameters (3.8 -> 0.8 ms) and 1.8x for SGD over the MLP's 0.67 M.
DEFAULTS = {
    "softmax_cross_entropy": {"cpu": "numba", "gpu": "numba"},
    "relu_backward": {"cpu": "numba", "gpu": "reference"},
    "im2col": {"cpu": "numba", "gpu": "numba"},
    "col2im": {"cpu": "numba", "gpu": "numba"},
    "dropout_mask": {"cpu": "numba", "gpu": "numba"},
    "max_pool": {"cpu": "numba", "gpu": "numba"},
    "max_pool_backward": {"cpu": "numba", "gpu": "reference"},
    "max_pool_relu_grad": {"cpu": "numba", "gpu": "numba"},
    "bias_relu": {"cpu": "numba", "gpu": "numba"},
    "relu_bias_grad": {"cpu": "numba", "gpu": "numba"},
    "winograd_conv": {"cpu": "numba", "gpu": "numba"},
    "winograd_weight_grad": {"cpu": "numba", "gpu": "numba"},
    "winograd_grads": {"cpu": "numba", "gpu": "numba"},
    "winograd_conv_pool": {"cpu": "numba", "gpu": "numba"},  # on the GPU: its two kernels'
    "winograd_pool_grads": {"cpu": "numba", "gpu": "numba"},  # CUDA forms in a row
    "conv_forward": {"cpu": "numba", "gpu": "numba"},
    "conv_weight_grad": {"cpu": "numba", "gpu": "numba"},
    "conv_input_grad": {"cpu": "numba", "gpu": "numba"},
    "batch_norm_forward": {"cpu": "numba", "gpu": "numba"},
    "batch_norm_backward": {"cpu": "numba", "gpu": "numba"},
    "adam_update": {"cpu": "numba", "gpu": "numba"},
    "sgd_update": {"cpu": "numba", "gpu": "numba"},
    "dense_step": {"cpu": "numba", "gpu": "reference"},
}

# Where the bench shows a Numba form losing to its reference at some shapes, the default
# depends on the shape: (kernel, device) -> predicate on the call's size hint that keeps
# Numba. softmax-CE on CPU: the reference's SIMD exp wins for wide rows (0.5x at 1000
# classes, 1.0x at 64, 1.4x at 32, 2.2x at 10). im2col on the GPU: numba-cuda only below 8
# channels (2.0-2.1x at C=1, 0.35-0.55x at C=32, 0.44-0.83x at C=64), and so the conv forward and
# weight gradient, which are im2col + GEMM. (On the CPU the Numba im2col now wins at one channel
# too: 1.7x at 3x3, 6.3x at 5x5, bench_20261127-051352, so it has no rule there.) Forced
# choices (implementation(), ACCELNET_KERNELS) ignore these rules.
SHAPE_RULES = {
    ("softmax_cross_entropy", "cpu"): lambda classes: classes <= 32,
    ("im2col", "gpu"): lambda channels: channels < 8,
    ("conv_forward", "gpu"): lambda channels: channels < 8,  # their im2col is numba-cuda's
    ("conv_weight_grad", "gpu"): lambda channels: channels < 8,
}

NUMBA_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))
_NUMBA_DTYPES = frozenset(NUMBA_DTYPES)  # a hash lookup per array on every kernel call
_override = [None]  # innermost `implementation()` choice; None = no override
_modules = {}  # module name in this package -> module (functions are still looked up per call)


def _check_family(name, source):
    if name not in FAMILIES:
        raise ValueError(f"Invalid kernel implementation {name!r} (from {source}); "
                         f"valid values: {', '.join(FAMILIES)}.")
    return name


@contextlib.contextmanager
def implementation(name):
    """Run every kernel in this block as `name` ("numba" or "reference"; None = default)."""
    if name is not None:
        name = _check_family(str(name).strip().lower(), "implementation()")
    previous = _override[0]
    _override[0] = name
    try:
        yield
    finally:
        _override[0] = previous


_ENVIRON = os.environ
_ENV_KEY = getattr(_ENVIRON, "encodekey", lambda key: None)(ENV_VAR)


_ENV_KEYS = {}


def _environment_value(name=ENV_VAR):
    """os.environ.get(name), read at every call; without `Mapping.get`'s Python frames
    when os.environ is CPython's `_Environ` (a dict lookup on its encoded data)."""
    environ = os.environ
    data = getattr(environ, "_data", None)
    key = _ENV_KEY if name == ENV_VAR else _ENV_KEYS.get(name)
    if key is None and name != ENV_VAR and environ is _ENVIRON and hasattr(environ, "encodekey"):
        key = _ENV_KEYS[name] = environ.encodekey(name)
    if environ is not _ENVIRON or key is None or type(data) is not dict:
        return environ.get(name)
    value = data.get(key)
    return None if value is None else environ.decodevalue(value)


def _requested():
    if _override[0] is not None:
        return _override[0]
    value = _environment_value()
    if value:
        value = value.strip().lower()
        if value:
            return _check_family(value, f"the {ENV_VAR} environment variable")
    return None


def _device(xp_or_array):
    if type(xp_or_array) is numpy.ndarray:
        return "cpu"
    if isinstance(xp_or_array, types.ModuleType):  # numpy, cupy (or a test device module)
        return "cpu" if xp_or_array is numpy else "gpu"
    return "gpu" if is_device_array(xp_or_array) else "cpu"


def current_implementation(kernel_name, xp_or_array, size_hint=None):
    """The form `kernel_name` runs for this array (or array module): 'reference',
    'numba-cpu' or 'numba-cuda'. `size_hint` (classes, channels) feeds SHAPE_RULES."""
    if kernel_name not in DEFAULTS:
        raise ValueError(f"Unknown kernel {kernel_name!r}; kernels: {', '.join(DEFAULTS)}.")
    device = _device(xp_or_array)
    family = _requested()
    if family is None:
        family = DEFAULTS[kernel_name][device]
        rule = SHAPE_RULES.get((kernel_name, device))
        if family == "numba" and rule is not None and size_hint is not None \
                and not rule(size_hint):
            family = "reference"
    if family == "reference":
        return "reference"
    if device == "gpu":
        from ._cuda import toolchain_problem
        return "reference" if toolchain_problem() else "numba-cuda"
    return "numba-cpu"


pick = current_implementation


def form_function(kernel_name, form_name):
    """The function of one form of a kernel, from `FORMS`."""
    module, attribute = FORMS[kernel_name][form_name]
    found = _modules.get(module)
    if found is None:
        found = _modules[module] = importlib.import_module(f"{__package__}.{module}")
    return getattr(found, attribute)


def form(kernel_name, array, *more_arrays, size_hint=None):
    """The function that runs `kernel_name` on `array`. The device follows `array`; any
    array with a dtype other than float32/float64 sends the call to the reference form."""
    default = DEFAULTS.get(kernel_name)
    if (type(array) is numpy.ndarray and default is not None and _override[0] is None
            and (kernel_name, "cpu") not in SHAPE_RULES and not _environment_value()):
        # the common case, what current_implementation() decides, without its calls
        name = "numba-cpu" if default["cpu"] == "numba" else "reference"
    else:
        name = pick(kernel_name, array, size_hint)
    if name != "reference":
        for a in (array,) + more_arrays:
            if getattr(a, "dtype", None) not in _NUMBA_DTYPES:
                name = "reference"
                break
    return form_function(kernel_name, name)

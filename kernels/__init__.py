"""accelnet.kernels: the hot spots, each as a NumPy/CuPy reference and Numba forms.

Kernels (every one has `reference`, `numba_cpu` and `numba_cuda` forms in its module, but
`dense_step`, whose CUDA entry is its reference):

- `softmax_cross_entropy(logits, labels) -> (loss, dlogits)`: fused, stable softmax +
  cross-entropy for int class indices or soft labels; bad labels raise (on the GPU via
  a device flag read by `check_errors()`).
- `relu_backward(dy, x, out=None) -> dx`: dy where x > 0, else 0.
- `dropout_mask(like, shape, key, rate) -> mask`: 1/(1-rate) where a counter-based hash of
  (element, key) keeps the element, else 0; bit-identical on every device and form.
- `im2col(x, kernel_size, stride=1, padding="valid") -> cols` and
  `col2im(cols, x_shape, kernel_size, stride=1, padding="valid") -> dx`: channels-last
  patch extraction for convolution/pooling and its exact adjoint;
  `conv_output_size` and `same_padding` give the shapes.
- `conv_forward(x, w2, kernel_size, stride, padding, out=None, bias=None, relu=False)`,
  `conv_weight_grad(x, dz, kernel_size, stride, padding)` and
  `conv_input_grad(dz, w2, x_shape, kernel_size, stride, padding, out=None)`: convolution
  as im2col + GEMM, each pass in one call (on the CPU one GIL-free Numba call per task).
- `bias_relu(z, bias) -> z` (in place) and `relu_bias_grad(dy, y, out=None) -> (dz,
  bias_grad)`: a layer's bias + ReLU and their backward, one pass each.
- `winograd_conv(x, U, padding, out=None, bias=None, relu=False, r=3)` with
  `U = winograd_weights(kernel, m=2)`: Winograd F(m x m, r x r) for r x r stride-1
  convolutions (F(2x2, 3x3), F(4x4, 3x3), F(2x2, 5x5), F(3x3, 5x5) have generated CPU
  kernels; `winograd_tile` says when Conv2D uses which), and `winograd_weight_grad(x, dy, padding, m=2, r=3) -> (r, r, C, F)`, its
  kernel gradient; `winograd_grads(x, dy, U, padding, out=None, r=3) -> (dw, dx)`: both
  gradients from one transform of dy (the input gradient by the adjoint of the input
  transform; `winograd_grads_applies` says where Conv2D uses it). With `transformed=True`
  both give the gradient of U, (n*n, F, C), to sum over batch slices before one
  `winograd_weight_grad_finish(du_t, m, r) -> (r, r, C, F)`.
- `winograd_conv_pool(x, U, pool_size, strides, padding, pool_padding, bias, relu, r) ->
  (pooled, argmax)` and `winograd_pool_grads(x, grad, argmax, pooled, U, pool_size,
  strides, ...) -> (dw, bias_grad, dx)`: a Winograd convolution (+ bias, ReLU) with the max
  pooling after it, and their backward, per block of images while it is in cache (Conv2D's
  fused pooling; the same bits as the kernels one after the other).
- `adam_update(p, g, m, v, step_size, beta_1, beta_2, epsilon, v_hat=None, decay=None)`
  and `sgd_update(p, g, lr, momentum=0.0, v=None, nesterov=False, decay=None)`: an
  optimizer's step on one parameter (and its slots) in place, one pass, subnormal slot
  entries flushed to +0; `flush_subnormal(a)`: that flush, for the other optimizers' slots.
- `max_pool(x, pool_size, strides, padding) -> (out, argmax)` and
  `max_pool_backward(grad, argmax, x_shape, pool_size, strides, padding) -> dx`: max
  pooling that records each window's winner, and the gradient scattered to it;
  `max_pool_relu_grad(grad, argmax, pooled, x_shape, ...) -> (dz, bias_grad)`: both
  backward passes of bias + ReLU + max pooling from the pooled output (Conv2D's pooled step).
- `batch_norm_forward(x, gamma, beta, epsilon, mean=None, var=None) -> (y, mean, var,
  inv_std)` and `batch_norm_backward(dy, x, gamma, mean, inv_std, training=True) -> (dx,
  dgamma, dbeta)`: batch normalization of a (rows, C) array over its rows (batch or given
  statistics) and its backward, two passes each, deterministic float64 statistics.
- `dense_step(x, labels, kernels, biases, relu, rate=None, kernel_grads=None,
  bias_grads=None, workspace=None) -> (loss, logits)`: a whole training step of a Dense
  stack with a softmax-cross-entropy output, ending in the gradients or, with a plain-SGD
  `rate`, in the update; its Numba form is one compiled call into MKL
  (`dense_step_compiled(x)` says where it runs; `DenseStepWorkspace` keeps its buffers).
  Its "numba-cuda" entry is the array-op reference.

Batch-chunked layer work on accelnet's worker threads: `batch_tasks`, `run_tasks`,
`task_slices`, `scratch`, `threaded`, `worker_step`, `gemm`, `gemm_accumulates` (see
`_workers`; `gemm` runs Intel MKL's GEMM where the `mkl` wheel is installed: `_mkl`).

Which form runs: see `_dispatch` (`DEFAULTS`, `ACCELNET_KERNELS=numba|reference`,
`with implementation(...)`, `current_implementation(kernel, array)`). Importing this
package compiles nothing and imports neither Numba nor CuPy: CPU kernels compile on first
call (cached on disk), CUDA kernels on first launch.
"""
from ._dispatch import DEFAULTS, current_implementation, implementation
from ._workers import (adaptive_blas_threads, batch_tasks, gemm, gemm_accumulates, run_tasks,
                       scratch, task_slices, threaded, worker_step)
from .batch_norm import batch_norm_backward, batch_norm_forward
from .bias_relu import bias_relu, relu_bias_grad
from .conv_gemm import conv_forward, conv_input_grad, conv_weight_grad
from .dense_step import Workspace as DenseStepWorkspace
from .dense_step import compiled_applies as dense_step_compiled
from .dense_step import dense_step
from .dropout_mask import dropout_mask
from .im2col import col2im, conv_output_size, im2col, same_padding
from .max_pool import argmax_dtype as max_pool_argmax_dtype
from .max_pool import max_pool, max_pool_backward, max_pool_relu_grad
from .optimizer_update import adam_update, flush_subnormal, sgd_update
from .relu_backward import relu_backward
from .winograd import applies as winograd_applies
from .winograd import applies_input_grad as winograd_applies_input_grad
from .winograd import input_grad_padding as winograd_input_grad_padding
from .winograd import tile as winograd_tile
from .winograd import (winograd_conv, winograd_weight_grad, winograd_weight_grad_finish,
                       winograd_weights)
from .winograd_grads import applies as winograd_grads_applies
from .winograd_grads import transposed as winograd_transposed
from .winograd_grads import winograd_grads
from .winograd_pool import winograd_conv_pool, winograd_pool_grads
from .softmax_cross_entropy import check_errors, softmax_cross_entropy

__all__ = ["DEFAULTS", "adam_update", "adaptive_blas_threads", "batch_norm_backward", "batch_norm_forward",
           "batch_tasks", "bias_relu", "check_errors", "col2im", "conv_forward",
           "conv_input_grad", "conv_output_size", "conv_weight_grad", "current_implementation",
           "dense_step", "dense_step_compiled", "DenseStepWorkspace",
           "dropout_mask", "flush_subnormal", "gemm", "gemm_accumulates", "im2col", "implementation", "max_pool", "max_pool_argmax_dtype",
           "max_pool_backward", "max_pool_relu_grad",
           "relu_backward", "relu_bias_grad", "run_tasks", "same_padding", "scratch",
           "sgd_update", "softmax_cross_entropy", "task_slices", "threaded",
           "winograd_applies", "winograd_applies_input_grad", "winograd_conv", "winograd_conv_pool",
           "winograd_grads", "winograd_pool_grads",
           "winograd_grads_applies", "winograd_transposed",
           "winograd_input_grad_padding", "winograd_tile", "winograd_weight_grad",
           "winograd_weight_grad_finish", "winograd_weights",
           "worker_step"]

"""accelnet.ops: values as NumPy computes them, tape gradients against finite differences (float64)."""
import numpy as np
import pytest

from accelnet import ops
from accelnet.gradient_check import numerical_grad
from accelnet.ops import TapeError, Tensor

rng = np.random.default_rng(0)
X = rng.standard_normal((3, 4))
POS = rng.random((3, 4)) + 0.5
OTHER = rng.standard_normal((3, 4))


def check_tape(f, x, rtol=1e-6, atol=1e-9):
    """The tape's gradient of sum(f(x) * r) equals central differences."""
    r = np.random.default_rng(1).standard_normal(np.shape(f(x)))
    value, grad = ops.value_and_grad(lambda t: ops.sum(f(t) * r), x)
    np.testing.assert_allclose(value, np.sum(f(x) * r), rtol=1e-12)
    numeric = numerical_grad(lambda: np.sum(f(x) * r), x)
    np.testing.assert_allclose(grad, numeric, rtol=rtol, atol=atol)


UNARY = {
    "negative": (ops.negative, X), "square": (ops.square, X), "sqrt": (ops.sqrt, POS),
    "abs": (ops.abs, X), "exp": (ops.exp, X), "log": (ops.log, POS), "log1p": (ops.log1p, POS),
    "expm1": (ops.expm1, X), "tanh": (ops.tanh, X), "sigmoid": (ops.sigmoid, X),
    "softplus": (ops.softplus, X), "log_sigmoid": (ops.log_sigmoid, X), "relu": (ops.relu, X),
    "softmax": (ops.softmax, X), "log_softmax": (ops.log_softmax, X),
    "softmax_axis0": (lambda x: ops.softmax(x, axis=0), X),
    "clip": (lambda x: ops.clip(x, -0.5, 0.5), X),
    "sum_axis": (lambda x: ops.sum(x, axis=1), X), "sum_keepdims": (lambda x: ops.sum(x, 0, True), X),
    "mean": (lambda x: ops.mean(x, axis=-1), X), "mean_all": (ops.mean, X),
    "max": (lambda x: ops.max(x, axis=1), X), "min": (lambda x: ops.min(x, axis=0), X),
    "var": (lambda x: ops.var(x, axis=1), X), "std": (lambda x: ops.std(x, axis=0), X),
    "logsumexp": (lambda x: ops.logsumexp(x, axis=1), X),
    "reshape": (lambda x: ops.reshape(x, (4, 3)), X), "transpose": (ops.transpose, X),
    "expand_squeeze": (lambda x: ops.squeeze(ops.expand_dims(x, 1), 1), X),
    "slice": (lambda x: x[1:, ::2], X), "take_repeated": (lambda x: x[np.array([0, 0, 2])], X),
    "matmul": (lambda x: ops.matmul(x, OTHER.T), X), "matmul_vector": (lambda x: x[0] @ OTHER[0], X),
    "concatenate": (lambda x: ops.concatenate([x, 2 * x], axis=1), X),
    "stack": (lambda x: ops.stack([x, x * x], axis=0), X),
    "cast_float": (lambda x: ops.cast(x, "float64") * 3, X),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_tape_gradient_matches_finite_differences(name):
    f, x = UNARY[name]
    check_tape(f, x.copy())


@pytest.mark.parametrize("op", [ops.add, ops.subtract, ops.multiply, ops.divide, ops.maximum,
                                ops.minimum, ops.power, ops.divide_no_nan])
def test_binary_gradient_for_either_argument_with_broadcasting(op):
    a, b = POS.copy(), (rng.random((1, 4)) + 0.5)
    check_tape(lambda t: op(t, b), a)
    check_tape(lambda t: op(a, t), b)  # b was broadcast over rows: its gradient sums them


def test_python_operators_and_numpy_ufuncs_record_on_the_tape():
    y = OTHER

    def f(p):
        return ops.mean((y - p) ** 2) + np.mean(np.exp(p) * y) + np.sum(abs(p)) / 2 - (1.0 / (p * p + 1)).sum()
    check_tape(f, X.copy())


def test_where_sends_the_gradient_to_the_chosen_branch():
    check_tape(lambda t: ops.where(t > 0, ops.square(t), 3 * t), X.copy())


def test_values_without_tensors_are_plain_arrays():
    out = ops.mean(ops.square(X), axis=1)
    assert isinstance(out, np.ndarray) and not isinstance(out, Tensor)
    np.testing.assert_allclose(out, (X ** 2).mean(1))
    np.testing.assert_allclose(ops.softmax(X), np.exp(X) / np.exp(X).sum(1, keepdims=True))
    np.testing.assert_allclose(ops.log_softmax(X), np.log(np.exp(X) / np.exp(X).sum(1, keepdims=True)))
    np.testing.assert_array_equal(ops.one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    assert ops.one_hot(np.array([1]), 2).dtype == np.float32
    np.testing.assert_array_equal(ops.argmax(X, axis=1), X.argmax(1))
    assert ops.cast(X, "int32").dtype == np.int32
    assert ops.convert_to_tensor([1.0, 2.0]).dtype == np.float32  # Keras's floatx
    assert ops.convert_to_tensor(np.arange(3)).dtype == np.arange(3).dtype
    np.testing.assert_array_equal(ops.convert_to_numpy(ops.where(X > 0, 1, 0)), (X > 0) * 1)
    assert ops.shape(X) == (3, 4)


def test_constants_carry_no_gradient():
    value, grad = ops.value_and_grad(lambda t: ops.sum(ops.stop_gradient(t) * t), X.copy())
    np.testing.assert_allclose(grad, X)  # d/dx of c * x with c = x held constant
    _, grad = ops.value_and_grad(lambda t: ops.sum(ops.one_hot(ops.argmax(t, axis=1), 4)), X.copy())
    np.testing.assert_array_equal(grad, 0)


def test_leaving_the_tape_raises_instead_of_dropping_the_gradient():
    for leave in (np.asarray, float, lambda t: ops.convert_to_numpy(t), lambda t: np.cumsum(t),
                  lambda t: np.sinh(t)):
        with pytest.raises(TapeError):
            ops.value_and_grad(lambda t: ops.sum(leave(ops.sum(t))), X.copy())


def test_gradient_is_a_fresh_writable_array_in_the_input_dtype():
    x32 = X.astype(np.float32)
    _, grad = ops.value_and_grad(lambda t: ops.sum(t), x32)
    assert grad.dtype == np.float32 and grad.flags.writeable
    grad += 1  # the caller may update it in place
    np.testing.assert_array_equal(grad, 2)


def test_value_and_grad_needs_a_scalar():
    with pytest.raises(ValueError, match="scalar"):
        ops.value_and_grad(lambda t: t * 2, X.copy())

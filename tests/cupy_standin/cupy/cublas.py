"""The stand-in's `cupy.cublas.gemm(transa, transb, a, b, out=None, alpha=1.0, beta=0.0)`:
out = alpha * op(a) @ op(b) + beta * out with CuPy's signature and checks (2-D operands of one
float dtype, out of shape (m, n) and that dtype; host arrays refused), computed on the host."""
import numpy

from . import _broken, _unwrap, _wrap, ndarray


def _op(array, trans):
    if trans in ("N", "n", 0):
        return array
    if trans in ("T", "t", 1):
        return array.T
    if trans in ("H", "h", 2):
        return array.T.conj()
    raise TypeError(f"invalid trans (actual: {trans})")


def gemm(transa, transb, a, b, out=None, alpha=1.0, beta=0.0):
    _broken("cublas")
    assert a.ndim == b.ndim == 2
    assert a.dtype == b.dtype
    if a.dtype.char not in "fdFD":
        raise TypeError("invalid dtype")
    op_a, op_b = _op(_unwrap(a), transa), _op(_unwrap(b), transb)
    m, k = op_a.shape
    assert op_b.shape[0] == k
    n = op_b.shape[1]
    if out is None:
        out, beta = _wrap(numpy.empty((m, n), a.dtype, order="F")), 0.0
    else:
        assert out.ndim == 2 and out.shape == (m, n) and out.dtype == a.dtype
    alpha = _unwrap(alpha) if isinstance(alpha, ndarray) else alpha
    beta = _unwrap(beta) if isinstance(beta, ndarray) else beta
    target = _unwrap(out)
    result = alpha * (op_a @ op_b)
    if beta != 0:
        result = result + beta * target
    target[...] = result
    return out

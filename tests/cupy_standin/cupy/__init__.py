"""A test-only stand-in for CuPy: NumPy behind the walls CuPy puts up.

Put on `sys.path` only by the tests that want it (`tests/standin.py`); it lets our real
`GpuBackend` (`_import_cupy`, `ACCELNET_BACKEND=gpu`) and, under Numba's CUDA simulator,
the numba-cuda kernel forms run end to end on a CPU-only machine. Like CuPy it refuses:

- implicit host conversion (`__array__`, iteration) and NumPy arrays as operands;
- it returns 0-d device arrays where NumPy returns Python/NumPy scalars (reductions,
  scalar indexing);
- `Generator.bit_generator.state` is a method, and a generator is bound to the device it
  was created on ("This Generator state is allocated in a different device");
- more than one device (`STANDIN_CUPY_DEVICES`), driver/runtime versions
  (`STANDIN_CUPY_DRIVER`, `STANDIN_CUPY_RUNTIME`), missing CUDA libraries
  (`STANDIN_CUPY_BROKEN=cublas|nvrtc`), streams, a memory pool with a limit that raises
  `cupy.cuda.memory.OutOfMemoryError`.

Every explicit host read (`.get()`, `asnumpy`, `float()`, `int()`, `bool()`, `.item()`,
`.tolist()`) is a counted "host sync" (`syncs()`, `reset_syncs()`), so tests can prove
that training reads back about once per epoch, not once per batch.
"""
import operator
import os

import numpy

__version__ = "14.0.0+standin"
STANDIN = True
_SYNCS = {"count": 0}


def reset_syncs():
    _SYNCS["count"] = 0


def syncs():
    return _SYNCS["count"]


def _sync():
    _SYNCS["count"] += 1


def _broken(library):
    if library in os.environ.get("STANDIN_CUPY_BROKEN", "").split(","):
        so = {"cublas": "libcublas.so.13", "nvrtc": "libnvrtc.so.13"}[library]
        raise RuntimeError(f"CuPy failed to load {so}: OSError: {so}: cannot open shared "
                           f"object file: No such file or directory")


def _unwrap(obj):
    """ndarray -> NumPy, recursively; refuse host ndarrays (CuPy does)."""
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, numpy.ndarray) and obj.ndim > 0:
        raise TypeError("Unsupported type <class 'numpy.ndarray'>: a host NumPy array was "
                        "mixed with a device array (CuPy stand-in)")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, numpy.ndarray):
        cuda.memory._account(obj)
        return ndarray(obj)
    if isinstance(obj, numpy.generic):
        return ndarray(numpy.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


class ndarray:
    """A NumPy array in a box that NumPy cannot open implicitly."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # -- what CuPy refuses ------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly. (CuPy stand-in)")

    def __iter__(self):
        raise TypeError("Iterating over a device array element by element is not allowed "
                        "(CuPy stand-in).")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # -- explicit host reads: counted syncs --------------------------------------------
    def get(self, stream=None):
        _sync()
        return self._a.copy()

    def item(self):
        _sync()
        return self._a.item()

    def tolist(self):
        _sync()
        return self._a.tolist()

    def __float__(self):
        _sync()
        return float(self._a)

    def __int__(self):
        _sync()
        return int(self._a)

    def __index__(self):
        _sync()
        return operator.index(self._a)

    def __bool__(self):
        _sync()
        return bool(self._a)

    # -- array protocol ----------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    device = property(lambda self: cuda.Device())

    @property
    def __cuda_array_interface__(self):
        """Pointers into host memory: only Numba's CUDA simulator may follow them."""
        a = self._a
        return {"shape": a.shape, "typestr": a.dtype.str, "version": 3,
                "data": (a.__array_interface__["data"][0], not a.flags.writeable),
                "strides": None if a.flags.c_contiguous else a.strides, "stream": 1}

    def __len__(self):
        return len(self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap_index(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap_index(key)] = _unwrap(value)

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__/__array_struct__ back door
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            out = kwargs.get("out")
            if out is not None:
                kwargs["out"] = _unwrap(out)
                getattr(self._a, name)(*_unwrap(args), **kwargs)
                return out
            return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
        return method

    def __repr__(self):
        return f"cupy.ndarray(shape={self.shape}, dtype={self.dtype}) [stand-in]"


def _unwrap_index(key):
    if isinstance(key, tuple):
        return tuple(_unwrap_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    return key  # ints, slices, None, Ellipsis and host index arrays (CuPy accepts those)


def _binary(ufunc):
    def forward(self, other):
        return ufunc(self, other)

    def reflected(self, other):
        return ufunc(other, self)

    def inplace(self, other):
        ufunc(self, other, out=(self,))
        return self
    return forward, reflected, inplace


def _matmul(a, b, out=None):
    _broken("cublas")
    return numpy.matmul(a, b) if out is None else numpy.matmul(a, b, out=out)


for _name, _ufunc in [("add", numpy.add), ("sub", numpy.subtract), ("mul", numpy.multiply),
                      ("truediv", numpy.true_divide), ("floordiv", numpy.floor_divide),
                      ("mod", numpy.remainder), ("pow", numpy.power),
                      ("and", numpy.bitwise_and), ("or", numpy.bitwise_or),
                      ("xor", numpy.bitwise_xor), ("lshift", numpy.left_shift),
                      ("rshift", numpy.right_shift)]:
    _f, _r, _i = _binary(_ufunc)
    setattr(ndarray, f"__{_name}__", _f)
    setattr(ndarray, f"__r{_name}__", _r)
    setattr(ndarray, f"__i{_name}__", _i)
for _name, _ufunc in [("lt", numpy.less), ("le", numpy.less_equal), ("gt", numpy.greater),
                      ("ge", numpy.greater_equal), ("eq", numpy.equal), ("ne", numpy.not_equal)]:
    setattr(ndarray, f"__{_name}__", lambda self, other, _u=_ufunc: _u(self, other))
ndarray.__matmul__ = lambda self, other: matmul(self, other)
ndarray.__rmatmul__ = lambda self, other: matmul(other, self)
ndarray.__neg__ = lambda self: numpy.negative(self)
ndarray.__pos__ = lambda self: self
ndarray.__abs__ = lambda self: numpy.absolute(self)
ndarray.__invert__ = lambda self: numpy.invert(self)
ndarray.__hash__ = None
ndarray.__module__ = "cupy"


# -- module functions ------------------------------------------------------------------
def __getattr__(name):
    """NumPy's functions on unwrapped arrays with wrapped results; dtypes and constants."""
    attr = getattr(numpy, name)
    if isinstance(attr, type) or not callable(attr):
        return attr

    def function(*args, **kwargs):
        if name in ("exp", "log", "tanh", "sum", "max", "where"):
            _broken("nvrtc")  # CuPy compiles its elementwise/reduction kernels with NVRTC
        return _wrap(attr(*_unwrap(args), **_unwrap(kwargs)))
    function.__name__ = name
    return function


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None else a.astype(dtype, copy=False)
    return _wrap(numpy.array(a, dtype=dtype, order=order or "K"))  # host -> device copy


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, ndarray):
        return _wrap(numpy.array(a._a, dtype=dtype, copy=copy, order=order, ndmin=ndmin))
    return _wrap(numpy.array(a, dtype=dtype, order=order, ndmin=ndmin))


def ascontiguousarray(a, dtype=None):
    return _wrap(numpy.ascontiguousarray(_unwrap(a), dtype=dtype))


def asnumpy(a, stream=None):
    if isinstance(a, ndarray):
        _sync()
        return a._a.copy()
    return numpy.asarray(a)


def matmul(a, b, out=None):
    if out is not None:
        _matmul(_unwrap(a), _unwrap(b), out=_unwrap(out))
        return out
    return _wrap(_matmul(_unwrap(a), _unwrap(b)))


dot = matmul


def get_array_module(*args):
    import sys
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else numpy


def is_available():
    return cuda.runtime.getDeviceCount() > 0


def get_default_memory_pool():
    return cuda.memory._POOL


import importlib  # noqa: E402  (`from . import` would ask __getattr__, i.e. NumPy, first)

cuda = importlib.import_module(__name__ + ".cuda")
random = importlib.import_module(__name__ + ".random")

ndarray.__module__ = "cupy"

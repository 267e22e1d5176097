"""A test-only "device" backend that behaves like CuPy where GPU ports usually break.

Its arrays wrap NumPy arrays but, as CuPy's do, refuse implicit conversion to NumPy
(`__array__` raises TypeError, and mixing them with NumPy arrays in an operation raises),
and reductions and scalar indexing return 0-d device arrays, not Python numbers. Every
explicit host read (`float()`, `int()`, `bool()`, `.item()`, `.get()`, `to_numpy`) is a
"host sync" and is counted, so tests can prove that fit/evaluate/predict never hand a
device array to NumPy and read back about once per epoch, not once per batch.
"""
import operator
import types

import numpy

from accelnet import backend as an_backend

SYNCS = {"count": 0}


def reset_syncs():
    SYNCS["count"] = 0


def syncs():
    return SYNCS["count"]


def _unwrap(obj):
    """StrictArray -> ndarray, recursively; refuse host ndarrays (CuPy would)."""
    if isinstance(obj, StrictArray):
        return obj._a
    if isinstance(obj, numpy.ndarray) and obj.ndim > 0:
        raise TypeError("Unsupported type <class 'numpy.ndarray'>: a host NumPy array was mixed "
                        "with a device array (strict backend)")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    if isinstance(obj, numpy.ndarray):
        return StrictArray(obj)
    if isinstance(obj, numpy.generic):
        return StrictArray(numpy.asarray(obj))
    if isinstance(obj, tuple):
        return tuple(_wrap(o) for o in obj)
    if isinstance(obj, list):
        return [_wrap(o) for o in obj]
    return obj


def _sync():
    SYNCS["count"] += 1


class StrictArray:
    """An ndarray in a box that NumPy cannot open implicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a):
        self._a = a

    # -- what CuPy refuses ------------------------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (strict device "
                        "backend, as CuPy). Use to_numpy()/.get() explicitly.")

    def __iter__(self):
        raise TypeError("Iterating over a device array element by element is not allowed "
                        "(strict device backend).")

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
    def get(self):
        _sync()
        return self._a.copy()

    def item(self):
        _sync()
        return self._a.item()

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

    def tolist(self):
        _sync()
        return self._a.tolist()

    # -- array protocol --------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StrictArray(self._a.T))

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
        return f"StrictArray(shape={self.shape}, dtype={self.dtype})"


def _unwrap_index(key):
    if isinstance(key, tuple):
        return tuple(_unwrap_index(k) for k in key)
    if isinstance(key, StrictArray):
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


for _name, _ufunc in [("add", numpy.add), ("sub", numpy.subtract), ("mul", numpy.multiply),
                      ("truediv", numpy.true_divide), ("floordiv", numpy.floor_divide),
                      ("mod", numpy.remainder), ("pow", numpy.power), ("matmul", numpy.matmul),
                      ("and", numpy.bitwise_and), ("or", numpy.bitwise_or),
                      ("xor", numpy.bitwise_xor)]:
    _f, _r, _i = _binary(_ufunc)
    setattr(StrictArray, f"__{_name}__", _f)
    setattr(StrictArray, f"__r{_name}__", _r)
    setattr(StrictArray, f"__i{_name}__", _i)
for _name, _ufunc in [("lt", numpy.less), ("le", numpy.less_equal), ("gt", numpy.greater),
                      ("ge", numpy.greater_equal), ("eq", numpy.equal), ("ne", numpy.not_equal)]:
    setattr(StrictArray, f"__{_name}__", lambda self, other, _u=_ufunc: _u(self, other))
StrictArray.__neg__ = lambda self: numpy.negative(self)
StrictArray.__pos__ = lambda self: self
StrictArray.__abs__ = lambda self: numpy.absolute(self)
StrictArray.__invert__ = lambda self: numpy.invert(self)
StrictArray.__hash__ = None


class _StrictGenerator:
    """A NumPy Generator whose draws land on the strict device."""

    def __init__(self, seed=None):
        self._g = numpy.random.default_rng(seed)

    @property
    def bit_generator(self):
        return self._g.bit_generator

    def __getattr__(self, name):
        attr = getattr(self._g, name)
        return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))


class _StrictModule(types.ModuleType):
    """`xp` of the strict backend: NumPy's functions on unwrapped arrays, results wrapped."""

    def __init__(self):
        super().__init__("strict_xp")
        self.random = types.SimpleNamespace(default_rng=_StrictGenerator)

    def __getattr__(self, name):
        attr = getattr(numpy, name)
        if isinstance(attr, type) or not callable(attr):
            return attr  # dtypes (float32), constants, newaxis
        return lambda *a, **k: _wrap(attr(*_unwrap(a), **_unwrap(k)))

    def asarray(self, a, dtype=None):
        if isinstance(a, StrictArray):
            return a if dtype is None else a.astype(dtype, copy=False)
        return StrictArray(numpy.array(a, dtype=dtype))  # host -> device: a copy, no sync

    array = asarray

    def asnumpy(self, a):
        _sync()
        return a._a.copy()


xp = _StrictModule()
an_backend.register_device_array_type(StrictArray, xp)


class StrictBackend(an_backend.Backend):
    name = "strict"
    xp = xp

    def to_numpy(self, a):
        return a.get() if isinstance(a, StrictArray) else numpy.asarray(a)

    def describe(self):
        return "strict test backend (NumPy behind a CuPy-like wall)"

"""A CPU stand-in for CuPy's ndarray that is strict where CuPy is strict.

Op code must run on CuPy, also where the tests run without a GPU. Code written against NumPy
usually breaks on CuPy in one of a few ways, and ``StrictArray`` turns each of them into a
``TypeError`` on the CPU:

1. Mixing with NumPy arrays. ``strict + ndarray``, ``ndarray * strict``, ``strict[...] = ndarray``
   and ``strict_xp.matmul(strict, ndarray)`` raise, as CuPy raises "Unsupported type
   <class 'numpy.ndarray'>" (a NumPy array lives on the host, a CuPy array on the GPU).
   Python scalars and NumPy scalars (``np.float32(2)``) are fine, as in CuPy.
2. Implicit conversion to NumPy. ``np.asarray(strict)`` raises, as CuPy's ``__array__`` does
   ("Implicit conversion to a NumPy array is not allowed"). ``strict.get()`` is the explicit
   door, as in CuPy; ``float()``, ``int()`` and ``bool()`` of a one-element array work, as in
   CuPy (where they synchronise with the GPU).
3. NumPy functions on device arrays. ``np.sqrt(strict)`` and ``np.pad(strict, ...)`` raise.
   This is stricter than CuPy, which hands some NumPy functions over to itself, but it is
   the rule of minires: op code calls ``xp.<name>`` with ``xp = get_array_module(x)``.
4. Functions come from the array module. ``strict_xp`` wraps NumPy, submodules included
   (``strict_xp.lib.stride_tricks.as_strided``), so that ``strict_xp.zeros(...)`` returns
   strict arrays and a plain ndarray argument raises. Like CuPy, ``strict_xp.array`` and
   ``strict_xp.asarray`` accept host data (the explicit host-to-device copy), ufuncs refuse
   lists, reductions refuse Python sequences (``xp.prod(x.shape)`` breaks on CuPy), ufuncs
   have no ``.at`` (banned in minires anyway: slow), ``errstate`` does not exist, and
   ``einsum`` takes no ``out``/``order``/``casting``.
   ``strict_xp.random`` behaves like ``cupy.random``: its draws take a ``dtype``.

Results that NumPy gives as scalars (``x.sum()``) come back as 0-d strict arrays, as CuPy's
do. Views stay views: a strict array wraps an ndarray without copying it, so in-place
writes through ``as_strided`` views or slices land where they would on CuPy.
"""
import operator

import numpy as np

_SCALARS = (bool, int, float, complex, np.generic)


def _unsupported(value, where):
    return TypeError(f"{where}: Unsupported type {type(value)} (a StrictArray, like a CuPy array, "
                     "does not mix with NumPy arrays or Python sequences; convert with xp.asarray)")


def _operand(value, where):
    """The ndarray inside a strict array, or a scalar; anything else is refused."""
    if isinstance(value, StrictArray):
        return value._array
    if isinstance(value, _SCALARS):
        return value
    raise _unsupported(value, where)


def _wrap(value, originals=None):
    """ndarrays (and NumPy scalars, as CuPy gives 0-d arrays) become strict arrays."""
    if originals and id(value) in originals:  # an out= argument, or asarray of a strict array
        return originals[id(value)]
    if isinstance(value, np.ndarray):
        return StrictArray(value)
    if isinstance(value, np.generic):
        return StrictArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v, originals) for v in value)
    return value


def _call(func, args, kwargs, where):
    """``func(*args, **kwargs)`` on the ndarrays inside; any plain ndarray argument is refused."""
    originals = {}

    def unwrap(value):
        if isinstance(value, StrictArray):
            originals[id(value._array)] = value
            return value._array
        if isinstance(value, np.ndarray):
            raise _unsupported(value, where)
        if isinstance(value, (list, tuple)):
            return type(value)(unwrap(v) for v in value)
        return value

    result = func(*unwrap(args), **{key: unwrap(v) for key, v in kwargs.items()})
    return _wrap(result, originals)


def _index(index):
    if isinstance(index, tuple):
        return tuple(_index(i) for i in index)
    if isinstance(index, StrictArray):
        return index._array
    if isinstance(index, np.ndarray):  # CuPy would copy it to the GPU silently: not in op code
        raise _unsupported(index, "StrictArray indexing")
    return index


class StrictArray:
    """An ndarray that refuses NumPy: see the module docstring."""

    __slots__ = ("_array",)
    __array_ufunc__ = None  # NumPy ufuncs refuse us; ndarray <op> strict falls to our __r<op>__
    __hash__ = None

    def __init__(self, array):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"StrictArray wraps an ndarray, got {type(array)}")
        self._array = array

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} called on a StrictArray: op code must call "
                        f"xp.{func.__name__} with xp = get_array_module(x)")

    def get(self):
        """A NumPy copy: the explicit device-to-host transfer (``cupy.ndarray.get``)."""
        return self._array.copy()

    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    strides = property(lambda self: self._array.strides)
    flags = property(lambda self: self._array.flags)
    T = property(lambda self: StrictArray(self._array.T))

    def __getattr__(self, name):  # methods: reshape, transpose, sum, max, astype, copy, ...
        if name.startswith("_") or name in ("flat", "ctypes", "tofile"):  # no NumPy protocols, no host views
            raise AttributeError(f"'StrictArray' object has no attribute '{name}'")
        value = getattr(self._array, name)
        if callable(value):
            return lambda *args, **kwargs: _call(value, args, kwargs, f"StrictArray.{name}")
        return _wrap(value)

    def __getitem__(self, index):
        return _wrap(self._array[_index(index)])

    def __setitem__(self, index, value):
        self._array[_index(index)] = _operand(value, "StrictArray.__setitem__")

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (_wrap(row) for row in self._array)

    def __bool__(self):
        return bool(self._array)

    def __float__(self):
        return float(self._array)

    def __int__(self):
        return int(self._array)

    def __complex__(self):
        return complex(self._array)

    def __repr__(self):
        return f"StrictArray({self._array!r})"


def _binary(op, name):
    def forward(self, other):
        return _wrap(op(self._array, _operand(other, f"StrictArray.__{name}__")))

    def reflected(self, other):
        return _wrap(op(_operand(other, f"StrictArray.__r{name}__"), self._array))

    return forward, reflected


def _in_place(op, name):
    def method(self, other):
        op(self._array, _operand(other, f"StrictArray.__i{name}__"))
        return self

    return method


def _unary(op):
    return lambda self: _wrap(op(self._array))


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    _op = getattr(operator, _name + "_" if _name in ("and", "or") else _name)
    _forward, _reflected = _binary(_op, _name)
    setattr(StrictArray, f"__{_name}__", _forward)
    setattr(StrictArray, f"__r{_name}__", _reflected)
    setattr(StrictArray, f"__i{_name}__", _in_place(getattr(operator, f"i{_name}"), _name))

for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(StrictArray, f"__{_name}__", _binary(getattr(operator, _name), _name)[0])

for _name in ("neg", "pos", "abs", "invert"):
    setattr(StrictArray, f"__{_name}__", _unary(getattr(operator, _name)))


class _Function:
    """A NumPy function that takes and returns strict arrays."""

    def __init__(self, func, name, array_first=False, unsupported_keywords=()):
        self._func, self.__name__ = func, name
        self._array_first, self._unsupported_keywords = array_first, set(unsupported_keywords)

    def __call__(self, *args, **kwargs):
        if self._array_first and args and not isinstance(args[0], StrictArray):
            raise _unsupported(args[0], self.__name__)
        if self._unsupported_keywords & set(kwargs):
            raise TypeError(f"{self.__name__}: CuPy does not support the keyword(s) "
                            f"{sorted(self._unsupported_keywords & set(kwargs))}")
        return _call(self._func, args, kwargs, self.__name__)


class _Ufunc(_Function):
    """A NumPy ufunc: operands are strict arrays or scalars (CuPy refuses lists), and no ``.at``."""

    def __call__(self, *args, **kwargs):
        for arg in args:
            _operand(arg, self.__name__)
        return super().__call__(*args, **kwargs)

    def reduce(self, *args, **kwargs):
        return _Function(self._func.reduce, f"{self.__name__}.reduce", array_first=True)(*args, **kwargs)

    def accumulate(self, *args, **kwargs):
        return _Function(self._func.accumulate, f"{self.__name__}.accumulate", array_first=True)(*args, **kwargs)

    def at(self, *args, **kwargs):
        raise TypeError(f"{self.__name__}.at: not available for every CuPy ufunc, and banned in minires "
                        "(about ten times slower than adding strided slices in a loop over offsets)")


def _host_to_device(name):
    """``strict_xp.array`` / ``asarray``: strict arrays as NumPy would treat ndarrays, host data copied."""
    numpy_function = getattr(np, name)

    def convert(obj, *args, **kwargs):
        if isinstance(obj, StrictArray):
            return _call(numpy_function, (obj, *args), kwargs, name)
        kwargs.pop("copy", None)
        return StrictArray(np.array(obj, *args, copy=True, **kwargs))

    return convert


# Functions whose first argument CuPy requires to be an array (a tuple or list is refused).
_ARRAY_FIRST = {"sum", "prod", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin",
                "any", "all", "cumsum", "cumprod", "reshape", "ravel", "transpose", "squeeze",
                "expand_dims", "moveaxis", "swapaxes", "broadcast_to", "pad", "clip", "sort", "argsort"}
_NOT_IN_CUPY = {"errstate", "seterr", "geterr"}
_KEYWORDS_NOT_IN_CUPY = {"einsum": ("out", "order", "casting")}


class _Namespace:
    """A module (or a random generator) whose functions take and return strict arrays."""

    def __init__(self, module, name):
        self._module, self.__name__ = module, name

    def __getattr__(self, name):
        if name.startswith("__") or name in _NOT_IN_CUPY:
            raise AttributeError(f"module '{self.__name__}' has no attribute '{name}' (CuPy has none either)")
        value = getattr(self._module, name)
        qualified = f"{self.__name__}.{name}"
        if value is np.ndarray:
            return StrictArray
        if name in ("array", "asarray", "asanyarray") and self._module is np:
            return _host_to_device(name)
        if isinstance(value, type(np)):
            return _Namespace(value, qualified)
        if isinstance(value, np.ufunc):
            return _Ufunc(value, qualified)
        if callable(value) and not isinstance(value, type):  # dtypes and classes pass as they are
            return _Function(value, qualified, name in _ARRAY_FIRST, _KEYWORDS_NOT_IN_CUPY.get(name, ()))
        return value


class _Random(_Namespace):
    """``strict_xp.random``, like ``cupy.random``: draws take ``dtype=`` (NumPy's module-level
    functions do not, so this wraps a ``numpy.random.Generator``)."""

    def __init__(self):
        super().__init__(np.random.default_rng(0), "strict_xp.random")

    def seed(self, seed=None):
        self._module = np.random.default_rng(seed)

    def default_rng(self, seed=None):
        return _Namespace(np.random.default_rng(seed), "strict_xp.random.Generator")


class _StrictNumPy(_Namespace):
    def __init__(self):
        super().__init__(np, "strict_xp")
        self.random = _Random()


strict_xp = _StrictNumPy()


def to_strict(module):
    """Wrap every parameter, gradient and buffer of ``module`` in place; returns the module."""
    for submodule in module.modules():
        for p in submodule.parameters(recurse=False):
            p.data = StrictArray(p.data)
            p.grad = None if p.grad is None else StrictArray(p.grad)
        for name, buffer in list(submodule.named_buffers(recurse=False)):
            setattr(submodule, name, StrictArray(buffer))
    return module

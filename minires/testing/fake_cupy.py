"""A CuPy stand-in for machines without a GPU: arrays that live on a (fake) device, and refuse
what CuPy refuses.

No GPU is lent to this project, yet minires must run on CuPy. This module looks to minires
exactly like ``cupy`` on a machine with two GPUs, so that a test can run the GPU path -- layers,
models, optimizers, checkpoints, the training loop, the demo -- on the CPU, and every line that
would break on a GPU breaks here. It is installed where minires looks for CuPy by a test hook::

    from minires import backend
    from minires.testing import fake_cupy

    with backend.substitute_cupy(fake_cupy):
        model.to("cuda")            # parameters become fake_cupy.ndarray arrays on "cuda:0"

What it is. A ``fake_cupy.ndarray`` wraps a NumPy array (without copying it: views stay views,
and in-place writes through slices or ``as_strided`` land where they would on CuPy) and the id
of the device it lives on. The functions are NumPy's, so the numbers are NumPy's to the bit; the
module offers the part of CuPy's API that minires uses (``_FUNCTIONS``, ``_METHODS``; anything
else is an AttributeError, as a NumPy function CuPy lacks would be on a GPU), plus
``asnumpy``, ``get_array_module``, ``cuda.Device``, ``cuda.runtime.getDeviceCount``,
``lib.stride_tricks.as_strided``, ``linalg.norm`` and ``random``.

What it refuses, as CuPy does:

1. Implicit conversion to NumPy. ``np.asarray(x)`` raises CuPy's TypeError ("Implicit
   conversion to a NumPy array is not allowed"); ``x.get()`` and ``fake_cupy.asnumpy(x)`` are
   the explicit doors. ``float(x)``, ``int(x)`` and ``bool(x)`` are CuPy's ``float(x.get())``
   ...: fine for a 0-d array (one number leaves the device), and NumPy's error otherwise (with
   NumPy 2, only 0-d arrays convert to ``float`` and ``int``; ``bool`` wants one element).
2. Mixing with NumPy arrays. ``x + numpy_array``, ``numpy_array * x``, ``x[...] = numpy_array``
   and ``fake_cupy.matmul(x, numpy_array)`` raise CuPy's TypeError "Unsupported type
   <class 'numpy.ndarray'>": a NumPy array lives on the host. Python and NumPy scalars mix.
3. Devices. An array lives on the device that was current when it was made (``with
   fake_cupy.cuda.Device(1): ...``; device 0 otherwise). A computation runs on the current
   device, and an operand that lives on another one is CuPy's ValueError "The device where the
   array resides (1) is different from the current device (0)" (an error where the GPUs have no
   peer access; where they have, CuPy warns and reads across the bus). So two devices never
   mix. Views (slices, ``reshape``, ``transpose``, ``as_strided``) stay on their array's device
   without computing; ``copy()``, ``asarray``, ``get()`` and ``float()`` cross devices, as on CuPy.
4. CuPy's narrower API. Ufuncs take arrays and scalars, not lists; reductions refuse Python
   sequences (``xp.prod(x.shape)``); ufuncs have no ``.at``; there is no ``errstate``;
   ``einsum`` takes no ``out``/``order``/``casting``; ``random`` draws take ``dtype=``.

Stricter than CuPy, by minires' rule that op code calls ``xp.<name>`` with ``xp =
get_array_module(x)``: NumPy functions and ufuncs called on device arrays (``np.pad(x, 1)``,
``np.maximum(x, 0)``) and NumPy index arrays (``x[np.array([0, 1])]``) are TypeErrors, where
CuPy hands the former over to itself and copies the latter to the device behind the user's back.

Results that NumPy gives as scalars (``x.sum()``) come back as 0-d device arrays, as CuPy's do.
"""
import operator
import sys
from types import SimpleNamespace

import numpy as np

DEVICE_COUNT = 2
_SCALARS = (bool, int, float, complex, np.generic)
_current_device = 0


# -- devices ----------------------------------------------------------------------------------

class Device:
    """``cupy.cuda.Device``: a GPU by id (default: the current one); ``with Device(1):`` makes
    it the current device for the block."""

    def __init__(self, device=None):
        if device is None:
            device = _current_device
        if not (isinstance(device, (int, np.integer)) and 0 <= device < DEVICE_COUNT):
            raise ValueError(f"fake_cupy.cuda.Device: expected a device id in 0..{DEVICE_COUNT - 1}, "
                             f"got {device!r} (the stand-in has {DEVICE_COUNT} GPUs)")
        self.id = int(device)
        self._previous = []

    def use(self):
        global _current_device
        _current_device = self.id

    def __enter__(self):
        self._previous.append(_current_device)
        self.use()
        return self

    def __exit__(self, *exc_info):
        Device(self._previous.pop()).use()

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(("fake_cupy.cuda.Device", self.id))

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


def _get_device_count():
    return DEVICE_COUNT


cuda = SimpleNamespace(Device=Device, runtime=SimpleNamespace(getDeviceCount=_get_device_count),
                       get_device_id=lambda: _current_device)


def _check_on_current_device(arrays, where):
    """A computation reads its operands on the current device: CuPy's rule without peer access."""
    for array in arrays:
        if array._device_id != _current_device:
            raise ValueError(f"{where}: The device where the array resides ({array._device_id}) is "
                             f"different from the current device ({_current_device}). Peer access is "
                             "unavailable between these devices (compute inside "
                             f"`with cupy.cuda.Device({array._device_id}):`)")


# -- wrapping NumPy ---------------------------------------------------------------------------

def _unsupported(value, where):
    return TypeError(f"{where}: Unsupported type {type(value)} (a CuPy array does not mix with NumPy "
                     "arrays or Python sequences; copy host data to the device with xp.asarray)")


def _check_operand(value, where):
    """Operators and ufuncs take device arrays and scalars, nothing else."""
    if not isinstance(value, (ndarray, *_SCALARS)):
        raise _unsupported(value, where)


def _unwrap(value, operands, where):
    """The NumPy arrays inside ``value`` (recording the device arrays met in ``operands``)."""
    if isinstance(value, ndarray):
        operands.append(value)
        return value._array
    if isinstance(value, np.ndarray):
        raise _unsupported(value, where)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, operands, where) for v in value)
    return value


def _wrap(result, operands, where):
    """Device arrays for NumPy's results: a view stays on its array's device (no computation,
    as on CuPy); anything new was computed, on the current device, from operands that must live
    there. NumPy scalars become 0-d arrays, as CuPy's reductions give."""
    if isinstance(result, tuple):
        return tuple(_wrap(r, operands, where) for r in result)
    if isinstance(result, np.generic):
        result = np.asarray(result)
    if not isinstance(result, np.ndarray):
        return result
    for operand in operands:
        if result is operand._array:  # out=, or a no-op such as astype(same dtype, copy=False)
            return operand
    for operand in operands:
        if np.may_share_memory(result, operand._array):
            return ndarray(result, operand._device_id)
    _check_on_current_device(operands, where)
    return ndarray(result, _current_device)


def _call(func, args, kwargs, where, writes=False):
    """``func`` on the NumPy arrays inside the arguments; the results as device arrays.
    ``writes`` (or an ``out=``): the call writes into an operand, so its devices are checked first."""
    operands = []
    host_args = _unwrap(args, operands, where)
    host_kwargs = {key: _unwrap(value, operands, where) for key, value in kwargs.items()}
    if writes or kwargs.get("out") is not None:
        _check_on_current_device(operands, where)
    return _wrap(func(*host_args, **host_kwargs), operands, where)


def _host_index(index, operands):
    """An index with device index arrays unwrapped; NumPy index arrays are refused."""
    if isinstance(index, tuple):
        return tuple(_host_index(i, operands) for i in index)
    if isinstance(index, ndarray):
        operands.append(index)
        return index._array
    if isinstance(index, (np.ndarray, list)):  # CuPy copies these to the GPU silently: not in op code
        raise _unsupported(index, "fake_cupy.ndarray indexing")
    return index


# -- the array --------------------------------------------------------------------------------

# ndarray methods (NumPy's, which CuPy's ndarray has too) that minires and its tests call.
_METHODS = {"reshape", "transpose", "swapaxes", "squeeze", "ravel", "flatten", "view", "astype",
            "sum", "prod", "mean", "var", "std", "max", "min", "argmax", "argmin", "any", "all",
            "cumsum", "clip", "sort", "argsort", "dot", "nonzero", "take", "repeat", "round",
            "conj", "fill", "item", "tolist"}
_IN_PLACE_METHODS = {"fill", "sort"}


class ndarray:
    """A CuPy array on a fake device: a NumPy array and a device id (see the module docstring).

    Made by this module's functions, not by hand: ``fake_cupy.asarray(host)``, ``zeros`` ...
    """

    __slots__ = ("_array", "_device_id")
    __array_ufunc__ = None  # NumPy ufuncs refuse us, and ndarray <op> x falls to our __r<op>__
    __hash__ = None

    def __init__(self, array, device_id):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"fake_cupy.ndarray wraps a NumPy array, got {type(array)}")
        self._array, self._device_id = array, device_id

    # -- the doors to the host, and the refusals --
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} called on a device array: op code must call "
                        f"xp.{func.__name__} with xp = get_array_module(x)")

    def get(self, stream=None, order="C", out=None):
        """A NumPy copy: the explicit device-to-host transfer (``cupy.ndarray.get``)."""
        if out is not None:
            out[...] = self._array
            return out
        return np.array(self._array, order=order, copy=True)

    def __float__(self):
        return float(self.get())

    def __int__(self):
        return int(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):
        return bool(self.get())

    def __format__(self, format_spec):
        return format(self.get(), format_spec)

    def __str__(self):
        return str(self._array)

    def __repr__(self):
        return f"fake_cupy.ndarray({self._array!r}, device=cuda:{self._device_id})"

    def __reduce__(self):  # pickles as host data that unpickles onto the current device, as CuPy's
        return array, (self.get(),)

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        with self.device:
            return self.copy()

    # -- what CuPy's ndarray has --
    device = property(lambda self: Device(self._device_id))
    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    strides = property(lambda self: self._array.strides)
    flags = property(lambda self: self._array.flags)
    T = property(lambda self: ndarray(self._array.T, self._device_id))

    def copy(self, order="C"):
        """A copy on the current device (CuPy copies across devices here)."""
        return ndarray(np.array(self._array, order=order, copy=True), _current_device)

    def __getattr__(self, name):
        if name not in _METHODS:
            raise AttributeError(f"'fake_cupy.ndarray' object has no attribute '{name}' (the stand-in "
                                 "offers the part of CuPy's ndarray that minires uses: _METHODS)")
        method = getattr(np.ndarray, name)  # unbound: called with the array as first operand
        return lambda *args, **kwargs: _call(method, (self, *args), kwargs, f"fake_cupy.ndarray.{name}",
                                             writes=name in _IN_PLACE_METHODS)

    def __getitem__(self, index):
        operands = [self]
        host_index = _host_index(index, operands)
        result = self._array[host_index]
        if isinstance(result, np.generic):  # x[1, 2]: CuPy gives a 0-d view, NumPy a scalar
            result = self._array[(*(host_index if isinstance(host_index, tuple) else (host_index,)), ...)]
        return _wrap(result, operands, "fake_cupy.ndarray.__getitem__")

    def __setitem__(self, index, value):
        operands = [self]
        host_index = _host_index(index, operands)
        _check_operand(value, "fake_cupy.ndarray.__setitem__")
        if isinstance(value, ndarray):
            operands.append(value)
            value = value._array
        _check_on_current_device(operands, "fake_cupy.ndarray.__setitem__")
        self._array[host_index] = value

    def __len__(self):
        return len(self._array)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def _binary(op, name):
    def forward(self, other):
        _check_operand(other, f"fake_cupy.ndarray.__{name}__")
        return _call(op, (self, other), {}, f"fake_cupy.ndarray.__{name}__")

    def reflected(self, other):
        _check_operand(other, f"fake_cupy.ndarray.__r{name}__")
        return _call(op, (other, self), {}, f"fake_cupy.ndarray.__r{name}__")

    return forward, reflected


def _in_place(op, name):
    def method(self, other):
        where = f"fake_cupy.ndarray.__i{name}__"
        _check_operand(other, where)
        _call(op, (self, other), {}, where, writes=True)
        return self

    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    _op = getattr(operator, _name + "_" if _name in ("and", "or") else _name)
    _forward, _reflected = _binary(_op, _name)
    setattr(ndarray, f"__{_name}__", _forward)
    setattr(ndarray, f"__r{_name}__", _reflected)
    setattr(ndarray, f"__i{_name}__", _in_place(getattr(operator, f"i{_name}"), _name))

for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(ndarray, f"__{_name}__", _binary(getattr(operator, _name), _name)[0])

for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", lambda self, _op=getattr(operator, _name):
            _call(_op, (self,), {}, "fake_cupy.ndarray unary operator"))


# -- functions --------------------------------------------------------------------------------

class _Function:
    """A NumPy function that takes and gives device arrays."""

    def __init__(self, func, name, array_first=False, unsupported_keywords=(), writes=False):
        self._func, self.__name__ = func, name
        self._array_first, self._unsupported_keywords = array_first, set(unsupported_keywords)
        self._writes = writes

    def __call__(self, *args, **kwargs):
        if self._array_first and args and not isinstance(args[0], ndarray):
            raise _unsupported(args[0], self.__name__)
        if self._unsupported_keywords & set(kwargs):
            raise TypeError(f"{self.__name__}: CuPy does not support the keyword(s) "
                            f"{sorted(self._unsupported_keywords & set(kwargs))}")
        return _call(self._func, args, kwargs, self.__name__, self._writes)


class _Ufunc(_Function):
    """A NumPy ufunc: operands are device arrays or scalars (CuPy refuses lists), and no ``.at``."""

    def __call__(self, *args, **kwargs):
        for arg in args:
            _check_operand(arg, self.__name__)
        return super().__call__(*args, **kwargs)

    def reduce(self, *args, **kwargs):
        return _Function(self._func.reduce, f"{self.__name__}.reduce", array_first=True)(*args, **kwargs)

    def accumulate(self, *args, **kwargs):
        return _Function(self._func.accumulate, f"{self.__name__}.accumulate", array_first=True)(*args, **kwargs)

    def at(self, *args, **kwargs):
        raise TypeError(f"{self.__name__}.at: not available for every CuPy ufunc, and banned in minires "
                        "(about ten times slower than adding strided slices in a loop over offsets)")


# The CuPy functions minires and its tests use, computed by NumPy's namesakes (each exists in CuPy).
_FUNCTIONS = {
    # creation
    "empty", "empty_like", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "arange",
    "linspace", "eye", "ascontiguousarray",
    # shapes and copies
    "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "squeeze", "expand_dims", "broadcast_to",
    "concatenate", "stack", "tile", "repeat", "pad", "flip", "copyto", "where", "take",
    # elementwise
    "add", "subtract", "multiply", "divide", "true_divide", "negative", "maximum", "minimum", "exp",
    "log", "sqrt", "square", "abs", "absolute", "sign", "tanh", "power", "clip", "floor",
    "equal", "not_equal", "greater", "greater_equal", "less", "less_equal", "logical_and",
    "logical_or", "logical_not", "bitwise_and", "bitwise_or", "isfinite", "isnan",
    # reductions and products
    "sum", "prod", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "any",
    "all", "cumsum", "bincount", "sort", "argsort", "matmul", "dot", "einsum", "allclose",
    "array_equal",
    # dtypes and constants (CuPy's are NumPy's)
    "dtype", "result_type", "finfo", "iinfo", "float16", "float32", "float64", "int8", "int16",
    "int32", "int64", "uint8", "bool_", "integer", "floating", "newaxis", "inf", "nan", "pi", "e",
}
# Functions whose first argument CuPy requires to be an array (a tuple or list is refused).
_ARRAY_FIRST = {"sum", "prod", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin",
                "any", "all", "cumsum", "reshape", "ravel", "transpose", "squeeze", "expand_dims",
                "moveaxis", "swapaxes", "broadcast_to", "pad", "clip", "sort", "argsort", "bincount"}
_KEYWORDS_NOT_IN_CUPY = {"einsum": ("out", "order", "casting")}


def _function(name, value, qualified):
    if isinstance(value, np.ufunc):
        return _Ufunc(value, qualified)
    if callable(value) and not isinstance(value, type):  # dtypes and classes pass as they are
        return _Function(value, qualified, name in _ARRAY_FIRST, _KEYWORDS_NOT_IN_CUPY.get(name, ()),
                         writes=name == "copyto")
    return value


def __getattr__(name):
    """``fake_cupy.<name>`` for the names in ``_FUNCTIONS`` (built once, then kept)."""
    if name not in _FUNCTIONS:
        raise AttributeError(f"module 'fake_cupy' has no attribute '{name}' (the stand-in offers the part "
                             "of CuPy that minires uses: _FUNCTIONS; add a name only if CuPy has it)")
    value = _function(name, getattr(np, name), f"fake_cupy.{name}")
    globals()[name] = value
    return value


lib = SimpleNamespace(stride_tricks=SimpleNamespace(as_strided=_Function(
    np.lib.stride_tricks.as_strided, "fake_cupy.lib.stride_tricks.as_strided", array_first=True)))
linalg = SimpleNamespace(norm=_Function(np.linalg.norm, "fake_cupy.linalg.norm", array_first=True))


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    """A new array on the current device: from host data (the explicit host-to-device copy), or
    from a device array on any device."""
    if isinstance(obj, ndarray):
        obj = obj._array
    return ndarray(np.array(obj, dtype=dtype, copy=True, order=order, ndmin=ndmin), _current_device)


def asarray(a, dtype=None, order=None):
    """``a`` itself when it is already a device array of that dtype on the current device, else a copy there."""
    if isinstance(a, ndarray) and a._device_id == _current_device and dtype in (None, a.dtype) \
            and order in (None, "K", "A"):
        return a
    return array(a, dtype=dtype, order="K" if order is None else order)


def asnumpy(a, stream=None, order="C", out=None):
    """A NumPy array with the values of ``a``: a copy from the device, or ``np.asarray`` of host data."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    """This module when any argument is a device array, else NumPy (``cupy.get_array_module``)."""
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else np


# -- random -----------------------------------------------------------------------------------

class _Generator:
    """``cupy.random.Generator``: draws by a NumPy generator, made on the current device."""

    def __init__(self, seed=None):
        self._numpy = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._numpy.random(size, dtype=dtype)), _current_device)

    def standard_normal(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._numpy.standard_normal(size, dtype=dtype)), _current_device)


class _Random:
    """``cupy.random``: one generator per device, ``seed`` reseeds the current device's."""

    def __init__(self):
        self._generators = {}

    def _generator(self):
        return self._generators.setdefault(_current_device, _Generator())

    def seed(self, seed=None):
        self._generators[_current_device] = _Generator(seed)

    def random(self, size=None, dtype=np.float64):
        return self._generator().random(size, dtype)

    def standard_normal(self, size=None, dtype=np.float64):
        return self._generator().standard_normal(size, dtype)

    @staticmethod
    def default_rng(seed=None):
        return _Generator(seed)


random = _Random()

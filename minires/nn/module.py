"""``Module``, ``Parameter`` and ``Sequential``: the scaffolding every layer stands on.

There is no autograd. A module's ``forward(x)`` computes the output and keeps the cache its
own backward needs; ``backward(dy)`` turns the gradient of the loss with respect to the
output, ``dy = dL/dy``, into the gradient with respect to the input, ``dx = dL/dx``, and
*adds* ``dL/dp`` into ``p.grad`` for each parameter ``p``. A network's backward calls its
children's backward in the reverse order of their forward: the chain rule, written out.

Names, ``state_dict`` keys and hooks follow PyTorch, so that weights map one to one.
"""
import functools
import itertools
from collections import OrderedDict, namedtuple

import numpy as np

from ..backend import device_of, on_device, parse_device, to_device
from ..grad_mode import is_grad_enabled
from .checks import check_array


class Parameter:
    """A trainable array: ``.data`` holds the values, ``.grad`` the accumulated ``dL/d(data)``.

    ``.grad`` starts as ``None``; each backward adds into it (so two backward passes sum
    their gradients, as in PyTorch), ``zero_grad`` resets it to ``None``, and it may be
    assigned directly. Optimizers skip parameters whose ``.grad`` is ``None``. A frozen
    parameter (``requires_grad=False``) receives no gradient.
    """

    def __init__(self, data, requires_grad=True):
        check_array("Parameter", data, "data")
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)

    def accumulate_grad(self, grad):
        """``grad`` must be a fresh array: it becomes ``.grad`` when none was there."""
        if tuple(grad.shape) != tuple(self.data.shape):
            raise ValueError(f"Parameter: gradient of shape {tuple(grad.shape)} does not match "
                             f"the parameter's shape {tuple(self.data.shape)}")
        if not self.requires_grad:
            return
        if self.grad is None:
            self.grad = grad
        else:
            self.grad += grad

    def __repr__(self):
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, device={device_of(self.data)})"


class RemovableHandle:
    """Returned by ``register_*_hook``; ``handle.remove()`` takes the hook away."""

    _ids = itertools.count()

    def __init__(self, hooks):
        self._hooks = hooks
        self.id = next(RemovableHandle._ids)

    def remove(self):
        self._hooks.pop(self.id, None)


class StateDictError(RuntimeError, ValueError):
    """``load_state_dict`` found missing, unexpected or wrongly shaped entries."""


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
_NO_GRAD = object()  # the cache of a forward that ran under no_grad()
_EMPTY = object()  # no forward since the last backward


def _with_backward_hooks(backward):
    """Wrap a subclass's ``backward``: the forward's cache is let go once the outermost call has
    returned (not when it starts: a gradient it refuses leaves the cache for a corrected retry),
    then the backward hooks run."""

    @functools.wraps(backward)
    def wrapped(self, *args, **kwargs):
        if self._in_backward:  # a super().backward(...) call inside a subclass's backward
            return backward(self, *args, **kwargs)
        self._in_backward = True
        try:
            grad_input = backward(self, *args, **kwargs)
        finally:
            self._in_backward = False
        self._cache = _EMPTY  # one backward per forward, as in PyTorch
        grad_output = args[0] if args else next(iter(kwargs.values()), None)
        for hook in list(self._backward_hooks.values()):
            replaced = hook(self, grad_input, grad_output)
            if replaced is not None:
                grad_input = replaced
        return grad_input

    return wrapped


class Module:
    """Base class of every layer and network. Subclasses write ``forward`` and ``backward``."""

    def __init__(self):
        for name, value in (("_parameters", OrderedDict()), ("_buffers", OrderedDict()),
                            ("_modules", OrderedDict()), ("_forward_hooks", OrderedDict()),
                            ("_backward_hooks", OrderedDict()), ("training", True),
                            ("_cache", _EMPTY), ("_in_backward", False)):
            object.__setattr__(self, name, value)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "backward" in cls.__dict__:
            cls.backward = _with_backward_hooks(cls.__dict__["backward"])

    # -- attributes: parameters, buffers and children are registered by assignment -----------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if isinstance(value, (Parameter, Module)):
            registry = self._parameters if isinstance(value, Parameter) else self._modules
            self._forget(name, keep=registry)  # a reassigned child keeps its place, as in PyTorch
            registry[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        elif value is None and (name in self._parameters or name in self._modules):
            (self._parameters if name in self._parameters else self._modules)[name] = None
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name, keep=None):
        for registry in (self._parameters, self._buffers, self._modules, self.__dict__):
            if registry is not keep:
                registry.pop(name, None)

    def __getattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            values = self.__dict__.get(registry)
            if values is not None and name in values:
                return values[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """A non-trainable array saved in ``state_dict`` (e.g. ``running_mean``); ``None`` is skipped."""
        if name in self.__dict__:
            raise KeyError(f"{type(self).__name__}: attribute '{name}' already exists")
        self._buffers[name] = array

    def register_parameter(self, name, param):
        self._parameters[name] = param

    def add_module(self, name, module):
        self._modules[name] = module

    # -- forward, backward, hooks -----------------------------------------------------------
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def __call__(self, *inputs):
        output = self.forward(*inputs)
        for hook in list(self._forward_hooks.values()):
            replaced = hook(self, inputs, output)
            if replaced is not None:
                output = replaced
        return output

    def register_forward_hook(self, hook):
        """``hook(module, inputs, output)`` runs after each forward; it may return a new output."""
        handle = RemovableHandle(self._forward_hooks)
        self._forward_hooks[handle.id] = hook
        return handle

    def register_backward_hook(self, hook):
        """``hook(module, grad_input, grad_output)`` runs after each backward; it may return a new grad_input."""
        handle = RemovableHandle(self._backward_hooks)
        self._backward_hooks[handle.id] = hook
        return handle

    def _save_for_backward(self, cache):
        """Keep what backward needs -- unless in ``no_grad()``, where nothing is kept."""
        self._cache = cache if is_grad_enabled() else _NO_GRAD

    def _saved_for_backward(self):
        """The forward's cache, for backward; it serves one backward (a second needs a new forward)."""
        cache = self._cache
        if cache is _EMPTY:
            raise RuntimeError(f"{self.extra_name()}: backward called before forward "
                               "(or a second time after one forward)")
        if cache is _NO_GRAD:
            raise RuntimeError(f"{self.extra_name()}: backward called after a forward under "
                               "minires.no_grad(), which keeps nothing for backward")
        return cache

    # -- iteration ------------------------------------------------------------------------
    def named_modules(self, memo=None, prefix=""):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(memo, f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        for name, child in self._modules.items():
            if child is not None:
                yield name, child

    def children(self):
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry, recurse):
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{prefix}.{name}" if prefix else name), value

    def named_parameters(self, recurse=True):
        yield from self._named_members("_parameters", recurse)

    def parameters(self, recurse=True):
        for _, p in self.named_parameters(recurse):
            yield p

    def named_buffers(self, recurse=True):
        yield from self._named_members("_buffers", recurse)

    def buffers(self, recurse=True):
        for _, b in self.named_buffers(recurse):
            yield b

    # -- state ----------------------------------------------------------------------------
    def state_dict(self):
        """``OrderedDict`` name -> array: parameters then buffers of each module, PyTorch's keys."""
        state = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for name, p in module._parameters.items():
                if p is not None:
                    state[dot + name] = p.data
            for name, b in module._buffers.items():
                if b is not None:
                    state[dot + name] = b
        return state

    def _state_slots(self):
        """name -> (module, registry, attribute) for every entry of ``state_dict``."""
        slots = OrderedDict()
        for prefix, module in self.named_modules():
            dot = f"{prefix}." if prefix else ""
            for registry in ("_parameters", "_buffers"):
                for name, value in getattr(module, registry).items():
                    if value is not None:
                        slots[dot + name] = (module, registry, name)
        return slots

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into this module's parameters and buffers, in place.

        Values are converted to each target's device and dtype. With ``strict`` any missing or
        unexpected key is an error; a shape mismatch always is. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        slots = self._state_slots()
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        for key, value in state_dict.items():
            if key in slots:
                target = self._slot_value(slots[key])
                shape = tuple(value.shape) if hasattr(value, "shape") else np.shape(value)  # no host copy
                if shape != tuple(target.shape):
                    problems.append(f"shape mismatch for {key}: the checkpoint has {shape}, "
                                    f"the model has {tuple(target.shape)}")
        if problems:
            raise StateDictError(f"error loading the state_dict into {type(self).__name__}:\n  "
                                 + "\n  ".join(problems))
        for key, value in state_dict.items():
            if key in slots:
                target = self._slot_value(slots[key])
                with on_device(device_of(target)):
                    target[...] = to_device(value, device_of(target))  # casts to the target's dtype
        return _IncompatibleKeys(missing, unexpected)

    @staticmethod
    def _slot_value(slot):
        module, registry, name = slot
        value = getattr(module, registry)[name]
        return value.data if isinstance(value, Parameter) else value

    # -- modes, gradients, devices ----------------------------------------------------------
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient: to ``None`` (PyTorch's default) or to zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def apply(self, fn):
        """Call ``fn(module)`` on every child (deepest first), then on ``self``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, device=None, dtype=None):
        """Move parameters, gradients and buffers to ``device`` and/or cast floats to ``dtype``.

        ``m.to("cuda")``, ``m.to("cpu")``, ``m.to(dtype=np.float64)``, ``m.to(np.float64)``: a string
        is a device, as in PyTorch. Integer buffers (``num_batches_tracked``) keep their dtype. Returns ``self``.
        """
        if device is not None and not isinstance(device, str):
            device, dtype = None, device  # m.to(np.float64)
        if device is not None:
            parse_device(device)  # a clear error for "gpu" or "cuda:x" before anything moves
        dtype = None if dtype is None else np.dtype(dtype)
        if dtype is not None and dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}.to: expected a floating-point dtype, got {dtype}")

        def convert(array):
            if device is not None:
                array = to_device(array, device)
            if dtype is not None and array.dtype.kind == "f":
                with on_device(device_of(array)):
                    array = array.astype(dtype, copy=False)
            return array

        for module in self.modules():
            for p in module._parameters.values():
                if p is not None:
                    p.data = convert(p.data)
                    p.grad = None if p.grad is None else convert(p.grad)
            for name, b in module._buffers.items():
                if b is not None:
                    module._buffers[name] = convert(b)
            module._cache = _EMPTY  # a cache on the old device/dtype is useless
        return self

    def double(self):
        return self.to(dtype=np.float64)

    def float(self):
        return self.to(dtype=np.float32)

    # -- printing -------------------------------------------------------------------------
    def extra_repr(self):
        return ""

    def extra_name(self):
        """``Conv2d(3, 64, kernel_size=(3, 3), ...)``: how errors name this layer."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def __repr__(self):
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        if not lines:
            return self.extra_name()
        return f"{type(self).__name__}(" + "".join(f"\n  {line}" for line in lines) + "\n)"


class Sequential(Module):
    """Children applied in order; backward visits them in reverse (the chain rule)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(modules):
                self.add_module(str(index), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        self._save_for_backward(True)
        return x

    def backward(self, grad_output):
        self._saved_for_backward()
        for module in reversed(self._modules.values()):
            grad_output = module.backward(grad_output)
        return grad_output

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

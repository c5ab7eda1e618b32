"""The ``Optimizer`` base class: parameter groups, per-parameter state, ``step`` and checkpoints.

An optimizer keeps its parameters in *groups*. ``optimizer.param_groups`` is a list of dicts,
each holding ``'params'`` (a list of ``Parameter``) and every hyper-parameter of the update rule
(``'lr'``, ``'weight_decay'``, ...). A group dict passed to the constructor overrides the
defaults for its own parameters; that is how biases and batch-norm parameters are kept out of
weight decay (see ``weight_decay_groups``). Learning-rate schedules write ``group['lr']``.

``optimizer.state[p]`` holds what the update rule carries from one step to the next for the
parameter ``p`` (a momentum buffer, moment estimates, a step count). It is created on ``p``'s
first update, with arrays on ``p``'s device and of ``p``'s dtype -- so move the model
(``model.to("cuda")``) before training starts, or carry the state over with
``state_dict``/``load_state_dict``.

``step()`` updates, in place on ``p.data`` (the arrays the model holds stay the same objects),
every parameter whose ``.grad`` is not ``None``; a subclass writes its rule in ``_update``.
Hyper-parameters are read as Python floats, so that a NumPy ``float64`` scalar in a group cannot
turn float32 arithmetic into float64.

``state_dict()`` has PyTorch's layout, parameters being replaced by their position counted
across the groups::

    {'state':        {0: {'momentum_buffer': array}, 2: {...}},   # only parameters with state
     'param_groups': [{'lr': 0.1, 'momentum': 0.9, ..., 'params': [0, 1]}, {..., 'params': [2]}]}

As in PyTorch the arrays in it are the optimizer's live buffers (nothing is copied or moved to
the host); ``load_state_dict`` copies them onto the device and into the dtype of the parameters.
"""
import copy
import numbers

from ..backend import device_of, get_array_module, on_device, to_device
from ..nn.module import Parameter


class Optimizer:
    """Base class: holds the groups and the state, runs ``_update`` for each parameter with a gradient.

    ``defaults`` maps each hyper-parameter to the value groups get when they do not set it.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self._check_hyperparameters(self.defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, (Parameter, dict)) or hasattr(params, "shape") or not hasattr(params, "__iter__"):
            raise TypeError(f"{self._name}: expected an iterable of Parameters or of parameter-group "
                            f"dicts (e.g. model.parameters()), got {type(params).__name__}")
        groups = self._as_list(params)
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self):
        return type(self).__name__

    def _check_hyperparameters(self, group):
        """Raise ``ValueError`` for a bad hyper-parameter in ``group`` (subclasses add their rules)."""
        _check_nonnegative(self._name, group, "lr", "learning rate")

    def add_param_group(self, param_group):
        """Append a group: ``{'params': [...], 'lr': ..., ...}``; missing hyper-parameters get the defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{self._name}: a parameter group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{self._name}: a parameter group needs a 'params' entry, "
                             f"got keys {sorted(param_group)}")
        params = param_group["params"]
        params = [params] if isinstance(params, Parameter) else self._as_list(params)
        for p in params:
            if not isinstance(p, Parameter):
                raise TypeError(f"{self._name}: can only optimize minires.nn.Parameter objects, "
                                f"got {type(p).__module__}.{type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{self._name}: a parameter group lists the same parameter twice "
                             "(it would be updated twice per step)")
        taken = {id(p) for group in self.param_groups for p in group["params"]}
        if any(id(p) in taken for p in params):
            raise ValueError(f"{self._name}: some parameters appear in more than one parameter group")

        group = {"params": params}
        group.update((key, value) for key, value in param_group.items() if key != "params")
        for key, default in self.defaults.items():
            group.setdefault(key, default)
        self._check_hyperparameters(group)
        self.param_groups.append(group)

    def _as_list(self, params):
        if isinstance(params, set):
            raise TypeError(f"{self._name}: parameters must be given in an ordered collection "
                            "(a set's order changes from run to run); use a list")
        return list(params)

    def _parameters(self):
        for group in self.param_groups:
            yield from group["params"]

    def zero_grad(self, set_to_none=True):
        """Reset every gradient: to ``None`` (PyTorch's default, frees the memory) or to zeros."""
        for p in self._parameters():
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient. ``closure()``, if given, is called first
        (it should run forward and backward) and its loss is returned."""
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, self._checked_grad(p), group, self.state.setdefault(p, {}))
        return loss

    def _update(self, p, grad, group, state):
        """Apply the update rule to ``p.data`` in place, reading and writing ``state``."""
        raise NotImplementedError(f"{self._name} does not define _update")

    def _checked_grad(self, p):
        grad = p.grad
        if tuple(grad.shape) != tuple(p.data.shape):
            raise ValueError(f"{self._name}: gradient of shape {tuple(grad.shape)} does not match "
                             f"its parameter's shape {tuple(p.data.shape)}")
        if grad.dtype != p.data.dtype:
            raise TypeError(f"{self._name}: gradient dtype {grad.dtype} does not match its "
                            f"parameter's dtype {p.data.dtype}")
        get_array_module(p.data, grad)  # raises when they live on different devices
        return grad

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self):
        """``{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}`` (PyTorch's layout)."""
        groups, index = [], 0
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = list(range(index, index + len(group["params"])))
            index += len(group["params"])
            groups.append(packed)
        state = {i: dict(self.state[p]) for i, p in enumerate(self._parameters()) if self.state.get(p)}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and state saved by ``state_dict`` from an optimizer of the
        same kind over parameters of the same shapes, in the same groups and order."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{self._name}.load_state_dict: the state_dict has {len(saved_groups)} "
                             f"parameter groups, this optimizer has {len(self.param_groups)}")
        param_at = {}
        for number, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{self._name}.load_state_dict: parameter group {number} has "
                                 f"{len(saved['params'])} parameters in the state_dict, "
                                 f"{len(group['params'])} in this optimizer")
            missing = [key for key in self.defaults if key not in saved]
            if missing:
                raise ValueError(f"{self._name}.load_state_dict: parameter group {number} lacks "
                                 f"{missing} (was the state_dict saved by another optimizer?)")
            param_at.update(zip(saved["params"], group["params"]))

        new_state = {}
        for index, values in state_dict["state"].items():
            if index not in param_at:
                raise ValueError(f"{self._name}.load_state_dict: state for parameter {index}, "
                                 f"which no parameter group lists")
            p = param_at[index]
            new_state[p] = {key: _copy_like(self._name, value, p, f"state[{index}][{key!r}]")
                            for key, value in values.items()}
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new_group = {"params": group["params"]}
            new_group.update(copy.deepcopy({k: v for k, v in saved.items() if k != "params"}))
            self._check_hyperparameters(new_group)
            new_groups.append(new_group)
        self.state, self.param_groups = new_state, new_groups

    def __repr__(self):
        lines = [f"{self._name} ("]
        for number, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {number}")
            lines += [f"    {key}: {value}" for key, value in sorted(group.items()) if key != "params"]
        return "\n".join(lines + [")"])


def _check_nonnegative(optimizer, group, key, meaning):
    value = group[key]
    if not isinstance(value, numbers.Real):
        raise TypeError(f"{optimizer}: {meaning} {key} must be a number, got {type(value).__name__}")
    if not value >= 0:  # also catches NaN
        raise ValueError(f"{optimizer}: invalid {meaning} {key}={value!r}, expected {key} >= 0")


def _copy_like(optimizer, value, p, what):
    """A copy of a saved state entry on ``p``'s device; floating arrays take ``p``'s dtype."""
    if not hasattr(value, "shape"):
        return copy.deepcopy(value)  # e.g. the step count
    if tuple(value.shape) != tuple(p.data.shape):
        raise ValueError(f"{optimizer}.load_state_dict: {what} has shape {tuple(value.shape)}, "
                         f"its parameter has shape {tuple(p.data.shape)}")
    with on_device(device_of(p.data)):
        value = to_device(value, device_of(p.data))
        return value.astype(p.data.dtype if value.dtype.kind == "f" else value.dtype)  # astype copies


def weight_decay_groups(module, weight_decay):
    """Two parameter groups for ``module``: weights that decay, and parameters that do not.

    Matrices and kernels (``ndim >= 2``: convolution and linear weights) get ``weight_decay``;
    1-D parameters -- biases and batch-norm scales and shifts -- get 0: they set offsets and
    scales rather than the capacity of the network, so pulling them towards zero does not
    regularise, it only biases them (a decayed batch-norm scale shrinks the signal the next
    layer must scale back up). Empty groups are left out::

        opt = optim.SGD(optim.weight_decay_groups(model, 5e-4), lr=0.1, momentum=0.9)
    """
    decay, no_decay = [], []
    for p in module.parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]

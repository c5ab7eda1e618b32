"""``minires.summary(model, input_size)``: a torchinfo-like table, plus what backward costs.

For each module: its output shape, its parameters, the bytes its forward keeps for the
backward pass (the cache; an array kept by two layers -- a ReLU's output that the next conv
also keeps -- is counted once in the total), and its multiply-adds:

    Conv2d: N * C_out * H_out * W_out * (C_in / groups) * kh * kw
    Linear: (elements of the output) * in_features

Totals are written with thousands separators: ``Total params: 11,173,962``.
"""
import math
from dataclasses import dataclass

import numpy as np

from . import nn
from .backend import get_array_module
from .grad_mode import enable_grad
from .nn.module import _EMPTY


def _cached_arrays(cache):
    """Every array inside a module's cache (tuples, lists and dicts are searched)."""
    if hasattr(cache, "nbytes") and hasattr(cache, "shape"):
        yield cache
    elif isinstance(cache, (tuple, list)):
        for item in cache:
            yield from _cached_arrays(item)
    elif isinstance(cache, dict):
        for item in cache.values():
            yield from _cached_arrays(item)
    elif hasattr(cache, "__dict__") and not isinstance(cache, type):
        for item in vars(cache).values():
            yield from _cached_arrays(item)


def _mult_adds(module, output):
    if isinstance(module, nn.Conv2d):
        return output.size * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return output.size * module.in_features
    return 0


@dataclass
class Row:
    name: str
    kind: str
    depth: int
    shape: tuple
    params: int
    kept: dict          # id -> nbytes of the arrays this subtree keeps for backward
    mult_adds: int


class Summary:
    """The result of ``summary``: ``str(summary)`` is the table; the totals are attributes."""

    def __init__(self, model, rows, input_bytes, depth):
        self.rows, self.depth = rows, depth
        parameters = list(model.parameters())
        self.total_params = sum(p.size for p in parameters)
        self.trainable_params = sum(p.size for p in parameters if p.requires_grad)
        self.param_bytes = sum(p.data.nbytes for p in parameters)
        self.kept_bytes = sum(rows[0].kept.values()) if rows else 0
        self.total_mult_adds = rows[0].mult_adds if rows else 0
        self.input_bytes = input_bytes

    def __str__(self):
        width = max([36] + [2 * r.depth + len(f"{r.name} ({r.kind})") + 2 for r in self.rows[1:] if r.depth <= self.depth])
        header = f"{'Layer (type)':<{width}}{'Output Shape':<22}{'Param #':>13}{'Kept for backward':>20}{'Mult-Adds':>17}"
        rule = "=" * len(header)
        lines = [rule, header, rule]
        for r in self.rows[1:]:
            if r.depth <= self.depth:
                label = "  " * (r.depth - 1) + f"{r.name.rsplit('.', 1)[-1]} ({r.kind})"
                lines.append(f"{label:<{width}}{str(list(r.shape)):<22}{r.params:>13,}"
                             f"{_megabytes(sum(r.kept.values())):>20}{r.mult_adds:>17,}")
        mb = 1024 ** 2
        lines += [rule,
                  f"Total params: {self.total_params:,}",
                  f"Trainable params: {self.trainable_params:,}",
                  f"Non-trainable params: {self.total_params - self.trainable_params:,}",
                  f"Total mult-adds: {self.total_mult_adds:,} ({self.total_mult_adds / 1e9:.2f} G)",
                  rule,
                  f"Input size (MB): {self.input_bytes / mb:.2f}",
                  f"Params size (MB): {self.param_bytes / mb:.2f}",
                  f"Kept for backward (MB): {self.kept_bytes / mb:.2f}",
                  f"Estimated total (MB): {(self.input_bytes + self.param_bytes + self.kept_bytes) / mb:.2f}",
                  rule]
        return "\n".join(lines)

    __repr__ = __str__


def _megabytes(nbytes):
    return f"{nbytes / 1024 ** 2:.2f} MB" if nbytes else "--"


def summary(model, input_size=(1, 3, 32, 32), dtype=np.float32, depth=3, seed=0):
    """Run one forward pass on random input of ``input_size`` and tabulate every module.

    The model's running statistics are restored afterwards, and its caches released.
    """
    state = {name: b.copy() for name, b in model.named_buffers()}
    outputs = {}
    handles = [module.register_forward_hook(lambda m, inputs, out: outputs.setdefault(id(m), out))
               for module in model.modules()]
    parameters = list(model.parameters())
    xp = get_array_module(parameters[0].data) if parameters else np
    x = xp.asarray(np.random.default_rng(seed).standard_normal(input_size).astype(dtype))
    try:
        with enable_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    _collect(model, "", 0, outputs, rows)
    for module in model.modules():
        module._cache = _EMPTY  # the forward was only for measuring: keep nothing
    model.load_state_dict({**model.state_dict(), **state})
    return Summary(model, rows, x.nbytes, depth)


def _collect(module, name, depth, outputs, rows):
    """Append the row of ``module`` and its descendants; returns that row."""
    row = Row(name or type(module).__name__, type(module).__name__, depth,
              tuple(getattr(outputs.get(id(module)), "shape", ())), 0, {}, 0)
    rows.append(row)
    row.params = sum(p.size for p in module.parameters(recurse=False))
    if module._cache is not _EMPTY:
        row.kept.update({id(a): a.nbytes for a in _cached_arrays(module._cache)})
    if id(module) in outputs:
        row.mult_adds = _mult_adds(module, outputs[id(module)])
    for child_name, child in module.named_children():
        child_row = _collect(child, f"{name}.{child_name}" if name else child_name, depth + 1, outputs, rows)
        row.params += child_row.params
        row.kept.update(child_row.kept)
        row.mult_adds += child_row.mult_adds
    return row

"""Flatten and Identity: layers that move no numbers.

Flatten merges the axes ``start_dim .. end_dim`` (inclusive) into one:

    (N, C, H, W)  --Flatten()-->  (N, C*H*W)

Each output element is one input element, so the backward pass only undoes the reshape:

    dx = dy.reshape(x.shape)

Like PyTorch, forward returns a view of ``x`` when its memory layout allows it (a copy
otherwise), and a 0-d input becomes a 1-element vector. The cache is the two shapes.

Identity: ``y = x`` and ``dx = dy`` (a placeholder, e.g. where a block has no
downsample path).
"""
import math
from dataclasses import dataclass

from . import checks
from .checks import check_array, check_same_shape
from .module import Module


def _axis(layer, dim, ndim):
    rank = max(ndim, 1)  # a 0-d array flattens like a 1-d one, as in PyTorch
    if not -rank <= dim < rank:
        raise ValueError(f"{checks.layer_name(layer)}: dimension out of range (expected to be in range of "
                         f"[{-rank}, {rank - 1}], but got {dim}) for an input with {ndim} dimensions")
    return dim % rank


def _flattened_shape(layer, shape, start_dim, end_dim):
    start, end = _axis(layer, start_dim, len(shape)), _axis(layer, end_dim, len(shape))
    if start > end:
        raise ValueError(f"{checks.layer_name(layer)}: start_dim ({start_dim}) cannot come after end_dim ({end_dim}) "
                         f"for an input of shape {tuple(shape)}")
    return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])


@dataclass
class FlattenCache:
    """What ``flatten_backward`` needs: the two shapes."""
    input_shape: tuple
    output_shape: tuple


def _flatten(layer, x, start_dim, end_dim):
    y = x.reshape(_flattened_shape(layer, x.shape, start_dim, end_dim))
    return y, FlattenCache(x.shape, y.shape)


def flatten_forward(x, start_dim=1, end_dim=-1):
    """Merge axes ``start_dim .. end_dim`` of ``x``; returns ``(y, cache)``."""
    check_array("flatten_forward", x)
    return _flatten("flatten_forward", x, start_dim, end_dim)


def flatten_backward(dy, cache):
    """``dx = dy.reshape(x.shape)``."""
    check_same_shape("flatten_backward", dy, cache.output_shape, "upstream gradient")
    return dy.reshape(cache.input_shape)


class Flatten(Module):
    """Merge the axes ``start_dim .. end_dim`` into one (by default all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        check_array(self, x)
        y, cache = _flatten(self, x, self.start_dim, self.end_dim)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        return flatten_backward(grad_output, self._saved_for_backward())

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """``y = x``, ``dx = dy``. Accepts and ignores any arguments, like PyTorch's."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        self._save_for_backward(None)
        return x

    def backward(self, grad_output):
        self._saved_for_backward()  # only to report a backward without a forward
        return grad_output

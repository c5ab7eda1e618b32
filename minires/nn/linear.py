"""Linear (fully connected) layer: an affine map of the last axis.

Forward, for ``x`` of shape ``(*, in)``, weight ``W`` of shape ``(out, in)`` and bias
``b`` of shape ``(out,)``:

    y = x W^T + b,        y_mj = sum_k x_mk W_jk + b_j          y: (*, out)

The leading axes ``*`` (a batch, or a batch and a sequence) are flattened into ``M`` rows
so that the whole layer is one matrix product.

Backward: y is linear in each of x, W and b, so with ``dy = dL/dy`` as ``(M, out)`` rows,

    dx_mk = sum_j dy_mj W_jk         dx = dy W          (M, in)
    dW_jk = sum_m dy_mj x_mk         dW = dy^T x        (out, in)
    db_j  = sum_m dy_mj              db = dy summed over the rows

Memory: the cache holds ``x`` (needed for dW) and ``W`` (needed for dx), both by
reference: no copy. The input must therefore not be modified in place between forward
and backward.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module
from . import checks, init
from .checks import check_dim, check_float, check_matching, check_rank, check_same_shape
from .module import Module, Parameter


def _check_inputs(layer, x, weight, bias):
    check_float(layer, x)
    check_float(layer, weight, "weight")
    check_rank(layer, weight, 2, "(out_features, in_features)", "weight")
    if x.ndim == 0:
        raise ValueError(f"{checks.layer_name(layer)}: expected an input of shape (*, in_features), got a 0-d array")
    check_dim(layer, x, -1, weight.shape[1], "features")
    if bias is not None:
        check_float(layer, bias, "bias")
        check_same_shape(layer, bias, (weight.shape[0],), "bias")
    check_matching(layer, x, weight, bias)


def _rows(array):
    """``array`` of shape ``(*, k)`` as a matrix ``(M, k)`` (a view when the layout allows)."""
    return array.reshape(math.prod(array.shape[:-1]), array.shape[-1])


@dataclass
class LinearCache:
    """What ``linear_backward`` needs: the input (for dW) and the weight (for dx), by reference."""
    x: object
    weight: object
    has_bias: bool


def _linear(x, weight, bias):
    xp = get_array_module(x, weight, bias)
    y = xp.matmul(_rows(x), weight.T)
    if bias is not None:
        y += bias
    return y.reshape(*x.shape[:-1], weight.shape[0]), LinearCache(x, weight, bias is not None)


def linear_forward(x, w, b=None):
    """``y = x w^T + b`` for ``x`` (*, in), ``w`` (out, in), ``b`` (out,) or ``None``.

    Returns ``(y, cache)``, a ``LinearCache``.
    """
    _check_inputs("linear_forward", x, w, b)
    return _linear(x, w, b)


def linear_backward(dy, cache):
    """``(dx, dw, db)`` from ``dy`` (*, out); ``db`` is ``None`` for a layer without bias."""
    x, weight, has_bias = cache.x, cache.weight, cache.has_bias
    check_same_shape("linear_backward", dy, (*x.shape[:-1], weight.shape[0]), "upstream gradient")
    xp = get_array_module(dy, x, weight)
    dy_rows = _rows(dy)
    dx = xp.matmul(dy_rows, weight).reshape(x.shape)
    dw = xp.matmul(dy_rows.T, _rows(x))
    db = dy_rows.sum(axis=0) if has_bias else None
    return dx, dw, db


class Linear(Module):
    """``y = x W^T + b`` over the last axis; PyTorch's names, shapes and initialisation.

    ``weight``: (out_features, in_features), ``bias``: (out_features,) or ``None``.
    Parameters are float32 on the host; move or cast them with ``module.to(...)``.
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"Linear: {name} must be a non-negative integer, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(np.empty((self.out_features, self.in_features), dtype=np.float32))
        if bias:
            self.bias = Parameter(np.empty(self.out_features, dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        """PyTorch's default: ``W`` and ``b`` uniform in +-1/sqrt(in_features).

        For ``W`` this is ``kaiming_uniform_(a=sqrt(5))``: gain sqrt(2 / (1 + 5)) times
        sqrt(3 / fan_in) is exactly 1/sqrt(fan_in).
        """
        if self.in_features > 0:  # an empty weight has nothing to draw (and no fan_in)
            init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        bias = None if self.bias is None else self.bias.data
        _check_inputs(self, x, self.weight.data, bias)
        y, cache = _linear(x, self.weight.data, bias)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        dx, dw, db = linear_backward(grad_output, self._saved_for_backward())
        self.weight.accumulate_grad(dw)
        if db is not None:
            self.bias.accumulate_grad(db)
        return dx

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

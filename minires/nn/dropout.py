"""Dropout, the "inverted" kind: scale at training time, do nothing at evaluation time.

Forward, in training mode, with a fresh mask ``m`` of independent Bernoulli(1 - p) draws
(1 = keep, 0 = drop):

    y = x * m / (1 - p)          so that  E[y] = x,

and in evaluation mode (or for p = 0) ``y = x``. Because the expectation is already right
during training, the evaluated network needs no rescaling. For p = 1 every element is
dropped and ``y = 0 * x`` (PyTorch's convention: the scale 1/(1 - p) would be infinite).

Backward: with the mask fixed, y is linear in x with diagonal Jacobian ``m / (1 - p)``:

    dx = dy * m / (1 - p)        (evaluation: dx = dy)

Shapes: any; ``dx`` has the shape of ``x``.

Randomness: the mask is drawn on the device of ``x`` as uniforms ``u`` in [0, 1), kept
where ``u >= p``. On NumPy they come from ``minires.random.default_generator()`` (seeded by
``minires.manual_seed``), on CuPy from ``cupy.random`` (the GPU's own generator). A
``generator`` argument overrides this: anything with ``.random(shape, dtype=...)`` that
returns arrays on x's device (``numpy.random.Generator``, ``cupy.random.Generator``).
Uniforms are drawn in float32 whatever the dtype of ``x``: half the memory traffic of
float64, and 2^-24 is a fine enough grid for p.

Memory: the cache is the boolean mask (one byte per element, a quarter of a float32 copy
of ``x``) and the scale 1/(1 - p), in a ``DropoutCache``; no mask when dropout is the identity.
"""
import numbers
from dataclasses import dataclass

import numpy as np

from ..backend import get_array_module
from ..random import default_generator
from . import checks
from .checks import check_float, check_same_shape
from .module import Module


def _check_probability(layer, p):
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"{checks.layer_name(layer)}: dropout probability has to be between 0 and 1, but got {p}")


def _uniform(xp, shape, generator):
    if generator is None:
        generator = default_generator() if xp is np else xp.random
    return generator.random(shape, dtype=np.float32)


@dataclass
class DropoutCache:
    """What ``dropout_backward`` needs: the mask (None when the forward was the identity), the scale."""
    keep: object
    scale: float


def _dropout(x, p, training, generator):
    if not training or p == 0:
        return x, DropoutCache(None, 1.0)
    xp = get_array_module(x)
    keep = _uniform(xp, x.shape, generator) >= p  # P(keep) = 1 - p; all False for p = 1
    scale = 1.0 / (1.0 - p) if p < 1 else 0.0
    y = xp.multiply(x, keep)  # bool operand: y keeps the dtype of x
    y *= scale
    return y, DropoutCache(keep, scale)


def dropout_forward(x, p=0.5, training=True, generator=None):
    """``y = x * mask / (1 - p)`` when ``training``, else ``y = x``; returns ``(y, cache)``."""
    check_float("dropout_forward", x)
    _check_probability("dropout_forward", p)
    return _dropout(x, p, training, generator)


def dropout_backward(dy, cache):
    """``dx = dy * mask / (1 - p)`` (``dy`` itself when the forward was the identity)."""
    if cache.keep is None:
        return dy
    keep, scale = cache.keep, cache.scale
    check_same_shape("dropout_backward", dy, keep.shape, "upstream gradient")
    dx = get_array_module(dy, keep).multiply(dy, keep)
    dx *= scale
    return dx


class Dropout(Module):
    """Zero each element with probability ``p`` in training mode, scaling the rest by 1/(1 - p)."""

    def __init__(self, p=0.5):
        super().__init__()
        _check_probability("Dropout", p)
        self.p = p

    def forward(self, x):
        check_float(self, x)
        y, cache = _dropout(x, self.p, self.training, None)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        return dropout_backward(grad_output, self._saved_for_backward())

    def extra_repr(self):
        return f"p={self.p}"

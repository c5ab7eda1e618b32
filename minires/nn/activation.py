"""ReLU, the rectified linear unit, and the logistic sigmoid.

Where the plain version is. ``relu_backward`` is ``where(y <= 0, 0, dy)`` inside
``with minires.nn.reference_kernels():``, and exercise 1 (``minires/exercises/solutions/ex1_relu.py``)
writes it that way; outside, ``_zero_where`` gives the same bits faster. The sigmoid has one route.

ReLU. Forward, elementwise:   y = max(x, 0)

Backward: dy/dx is 1 where x > 0 and 0 where x < 0; at x = 0 the function has no
derivative and, like PyTorch, we take 0. By the chain rule

    dx = dy * [x > 0]

PyTorch's exact rule is ``dx = 0 if y <= 0 else dy`` (``threshold_backward``): a NaN output
passes its gradient, and a dropped gradient is 0 even when ``dy`` is inf or NaN there (where
``dy * 0`` would give NaN). We follow it to the bit.

Shapes: any; ``dx`` has the shape of ``x``.
Memory: backward needs only the sign pattern, so we keep the output ``y``
(``y > 0`` exactly where ``x > 0``): the next layer usually keeps it anyway, so the
mask costs nothing extra.

Sigmoid (the gate of a gated shortcut). Forward, elementwise:

    y = sigma(x) = 1 / (1 + exp(-x))

computed as ``e / (1 + e)`` with ``e = exp(x)`` for negative x, so that exp never overflows.
Backward: ``sigma'(x) = exp(-x) / (1 + exp(-x))^2 = sigma(x) (1 - sigma(x))``, so

    dx = dy * (1 - y) * y

needs only the output; the cache keeps ``y`` (PyTorch's ``sigmoid_backward`` uses the same formula).
Shapes: any; ``dx`` has the shape of ``x``.
"""
from dataclasses import dataclass

from ..backend import get_array_module
from .checks import check_float, check_same_shape
from .module import Module
from .reference import uses_reference_kernels


@dataclass
class ReluCache:
    """What ``relu_backward`` needs: the output (``y > 0`` exactly where ``x > 0``)."""
    y: object


def relu_forward(x):
    """``y = max(x, 0)``; the cache, a ``ReluCache``, keeps ``y``."""
    check_float("relu_forward", x)
    xp = get_array_module(x)
    y = xp.maximum(x, 0)
    return y, ReluCache(y)


def relu_backward(dy, cache):
    """``dx = 0 where y <= 0, else dy`` (PyTorch's rule, see above)."""
    y = cache.y
    check_same_shape("relu_backward", dy, y.shape, "upstream gradient")
    xp = get_array_module(dy, y)  # also checks that both live on one device
    if uses_reference_kernels():
        return xp.where(y <= 0, 0, dy)
    return _zero_where(dy, y <= 0)


def _zero_where(dy, drop):
    """``where(drop, 0, dy)`` bit for bit, NaN and inf included, at the speed of ``dy * keep``.

    dy's bits ANDed with all zeros (drop) or all ones (keep), the mask built in the output's own
    memory (no temporary as big as dy). NumPy's ``where`` is several times slower (measured in
    benchmarks/README.md), and ``dy * keep`` would make ``inf * 0`` NaN.
    """
    xp = get_array_module(dy)
    dx = xp.empty_like(dy)
    mask = dx.view("u%d" % dy.dtype.itemsize)  # the unsigned integer as wide as the float
    xp.copyto(mask, drop)                      # 1 where dropped, 0 where kept
    mask -= 1                                  # 0 where dropped, all ones (0 - 1 wraps) where kept
    xp.bitwise_and(mask, dy.view(mask.dtype), out=mask)
    return dx


class ReLU(Module):
    """``y = max(x, 0)`` elementwise."""

    def forward(self, x):
        y, cache = relu_forward(x)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        return relu_backward(grad_output, self._saved_for_backward())


@dataclass
class SigmoidCache:
    """What ``sigmoid_backward`` needs: the output."""
    y: object


def sigmoid_forward(x):
    """``y = 1 / (1 + exp(-x))``, overflow-free; the cache, a ``SigmoidCache``, keeps ``y``."""
    check_float("sigmoid_forward", x)
    xp = get_array_module(x)
    e = xp.exp(-xp.abs(x))                 # exp(-|x|) <= 1: no overflow
    y = xp.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return y, SigmoidCache(y)


def sigmoid_backward(dy, cache):
    """``dx = dy * (1 - y) * y`` (PyTorch's order of the products)."""
    y = cache.y
    check_same_shape("sigmoid_backward", dy, y.shape, "upstream gradient")
    get_array_module(dy, y)  # checks that both live on one device
    return dy * (1 - y) * y


class Sigmoid(Module):
    """``y = 1 / (1 + exp(-x))`` elementwise."""

    def forward(self, x):
        y, cache = sigmoid_forward(x)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        return sigmoid_backward(grad_output, self._saved_for_backward())

"""ReLU, the rectified linear unit.

Forward, elementwise:   y = max(x, 0)

Backward: dy/dx is 1 where x > 0 and 0 where x < 0; at x = 0 the function has no
derivative and, like PyTorch, we take 0. By the chain rule

    dx = dy * [x > 0]

Shapes: any; ``dx`` has the shape of ``x``.
Memory: backward needs only the sign pattern, so we keep the output ``y``
(``y > 0`` exactly where ``x > 0``): the next layer usually keeps it anyway, so the
mask costs nothing extra.
"""
from ..backend import get_array_module
from .checks import check_float, check_same_shape
from .module import Module


def relu_forward(x):
    """``y = max(x, 0)``; the cache is ``y`` itself."""
    check_float("relu_forward", x)
    xp = get_array_module(x)
    y = xp.maximum(x, 0)
    return y, y


def relu_backward(dy, cache):
    """``dx = dy * [y > 0]``."""
    y = cache
    check_same_shape("relu_backward", dy, y.shape, "upstream gradient")
    xp = get_array_module(dy, y)
    return xp.where(y > 0, dy, 0).astype(dy.dtype, copy=False)


class ReLU(Module):
    """``y = max(x, 0)`` elementwise."""

    def forward(self, x):
        y, cache = relu_forward(x)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        return relu_backward(grad_output, self._saved_for_backward())

"""Exercise 1 -- ReLU.

Forward, elementwise:

    y = max(x, 0)

To derive: the gradient of the loss L with respect to x, given the upstream gradient
dout = dL/dy (same shape as y).

  * y_i depends on x_i only, so the chain rule has one term per element:
        dL/dx_i = dy_i/dx_i * dL/dy_i
  * dy_i/dx_i is 1 where x_i > 0 and 0 where x_i < 0. At x_i = 0 there is no derivative;
    take 0 there, as PyTorch does.

Shapes: x, dout and dx all have the same (any) shape.

Hints:
  * Multiply by dout. The mask (x > 0) alone is what you get with an all-ones dout, so a
    check with dout = ones would not notice its absence; the grader uses a random dout.
  * One line of NumPy, no loop.
"""
import numpy as np


def relu_forward(x):
    """Returns ``(y, cache)``: ``y = max(x, 0)``, and the cache is ``x``."""
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """``dx = dL/dx`` from ``dout = dL/dy``; same shape as x."""
    x = cache
    # BEGIN SOLUTION
    return dout * (x > 0)
    # END SOLUTION

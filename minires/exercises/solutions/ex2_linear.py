"""Exercise 2 -- a fully connected (linear) layer.

Forward, for a batch x of N rows with D features, a weight w with one row per output
feature (M of them, PyTorch's layout) and a bias b:

    y = x w^T + b,          y[n, m] = sum_d x[n, d] w[m, d] + b[m]

To derive, given dout = dL/dy of shape (N, M):

  * dx[n, d] = sum_m dout[n, m] * dy[n, m]/dx[n, d]     -- what is dy[n, m]/dx[n, d]?
  * dw[m, d] = sum_n dout[n, m] * dy[n, m]/dw[m, d]     -- every row n used the same w: sum over n
  * db[m]    = sum_n dout[n, m]                         -- likewise

then write each sum as one matrix product.

Shapes: x (N, D), w (M, D), b (M,), y and dout (N, M).
        dx (N, D), dw (M, D), db (M,) -- each gradient has the shape of its variable.

Hints:
  * Let the shapes guide you: (N, M) @ (M, D) is the only product of dout and w that
    gives an (N, D) result.
  * The bias was broadcast over the N rows in the forward pass; broadcasting in the forward
    pass is a sum in the backward pass.
"""
import numpy as np


def linear_forward(x, w, b):
    """Returns ``(y, cache)`` with ``y = x @ w.T + b`` and ``cache = (x, w)``."""
    return x @ w.T + b, (x, w)


def linear_backward(dout, cache):
    """Returns ``(dx, dw, db)``."""
    x, w = cache
    # BEGIN SOLUTION
    dx = dout @ w
    dw = dout.T @ x
    db = dout.sum(axis=0)
    return dx, dw, db
    # END SOLUTION

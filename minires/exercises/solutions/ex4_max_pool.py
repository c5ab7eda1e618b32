"""Exercise 4 -- max pooling, with overlapping windows and ties.

Forward, for x of shape (N, C, H, W), square windows of size k moved by stride s (no padding):

    out[n, c, h, w] = max over 0 <= i, j < k of  x[n, c, h*s + i, w*s + j]

    H_out = (H - k) // s + 1,   W_out = (W - k) // s + 1

To derive, given dout = dL/dout of shape (N, C, H_out, W_out):

  * Within one window the max is a selection: out = x[argmax], so the window's gradient
    dout[n, c, h, w] goes entirely to the element that held the max, and none to the others.
  * Ties: when several elements share the max, PyTorch sends the gradient to ONE of them, the
    first in the window in row-major order (i, then j). Do the same.
  * With s < k the windows OVERLAP: one x element can be the max of several windows. It
    receives the sum of their gradients, so accumulate with +=, never assign with =.

Shapes: x and dx (N, C, H, W); out and dout (N, C, H_out, W_out).

Hints:
  * Mirror the forward pass: loop over the k*k offsets (i, j), not over pixels. For a fixed
    offset, ``x[:, :, window_slice(i, s, H_out), window_slice(j, s, W_out)]`` is, for every
    window at once, its element at offset (i, j): an (N, C, H_out, W_out) array.
  * ``that_element == out`` marks the windows whose max sits at this offset. To keep only the
    first max of each window, remember (a boolean array of out's shape) which windows have
    already sent their gradient.
  * A test with k == s (no overlap) cannot tell = from +=: the grader also uses k=3, s=2.
"""
import numpy as np


def output_size(size, kernel_size, stride):
    return (size - kernel_size) // stride + 1


def window_slice(offset, stride, count):
    """Rows (or columns) ``offset, offset + stride, ...``: ``count`` of them, one per window."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def max_pool_forward(x, kernel_size, stride):
    """Returns ``(out, cache)`` with ``cache = (x, kernel_size, stride, out)``."""
    N, C, H, W = x.shape
    H_out, W_out = output_size(H, kernel_size, stride), output_size(W, kernel_size, stride)
    out = np.full((N, C, H_out, W_out), -np.inf, dtype=x.dtype)
    for i in range(kernel_size):
        for j in range(kernel_size):
            np.maximum(out, x[:, :, window_slice(i, stride, H_out), window_slice(j, stride, W_out)], out=out)
    return out, (x, kernel_size, stride, out)


def max_pool_backward(dout, cache):
    """Returns ``dx``, shape (N, C, H, W)."""
    x, kernel_size, stride, out = cache
    # BEGIN SOLUTION
    H_out, W_out = out.shape[2:]
    dx = np.zeros_like(x)
    routed = np.zeros(out.shape, dtype=bool)  # windows whose gradient has found its element
    for i in range(kernel_size):
        for j in range(kernel_size):
            rows, cols = window_slice(i, stride, H_out), window_slice(j, stride, W_out)
            first_max = (x[:, :, rows, cols] == out) & ~routed
            dx[:, :, rows, cols] += dout * first_max
            routed |= first_max
    return dx
    # END SOLUTION

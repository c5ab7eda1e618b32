"""Exercise 6 -- convolution as a matrix product: col2im and the conv2d backward pass.

Forward (given below). im2col copies every receptive field of the zero-padded input into one
row of a matrix; the convolution is then a linear layer applied to those rows:

    cols[(n, h, w), (c, i, j)] = x_pad[n, c, h*s + i, w*s + j]          im2col
    Y = cols @ W_mat^T + b,          W_mat = w.reshape(F, C*k*k)          one GEMM
    y[n, f, h, w] = Y[(n, h, w), f]

    H_out = (H + 2p - k) // s + 1      (likewise W_out)

(minires.nn.conv orders the columns (i, j, c) instead, a window then being k*k runs of C
contiguous numbers in its channels-last memory; the product and the gradients are the same.)

To derive, given dout = dL/dy of shape (N, F, H_out, W_out):

  1. As in exercise 2 (a linear layer), with dY = dout as (N*H_out*W_out, F) rows:
        dW_mat = dY^T @ cols,     db = sum of dY over its rows,     dcols = dY @ W_mat
  2. col2im turns dcols into dx. Every entry of cols is a COPY of one element of x_pad; the
     gradient of a copy flows back to its original, and an element copied into several
     windows (they overlap whenever s < k) receives the SUM of all its copies' gradients.
     So col2im is the adjoint (the transpose) of im2col: for all x and c,
        sum(im2col(x) * c) == sum(x * col2im(c))          (the grader checks exactly this)
  3. Finally cut the padding off: dx = dx_pad[:, :, p:p+H, p:p+W].

Shapes: x, dx (N, C, H, W); w, dw (F, C, k, k); b, db (F,) (b may be None: no bias, as in
        exercise 7; return db all the same); y, dout (N, F, H_out, W_out);
        cols, dcols (N*H_out*W_out, C*k*k).

Hints:
  * Write col2im like im2col below, backwards: loop over the k*k offsets (i, j), and ADD each
    offset's slice into dx_pad with +=. With = a later offset overwrites what an earlier one
    wrote wherever windows overlap; a test with k == s (no overlap) would not notice.
  * dout.transpose(0, 2, 3, 1).reshape(-1, F) gives dY with the row order of cols.
  * dW_mat.reshape(w.shape) undoes w.reshape(F, -1).
"""
import numpy as np


def conv_output_size(size, kernel_size, stride, padding):
    return (size + 2 * padding - kernel_size) // stride + 1


def window_slice(offset, stride, count):
    """Rows (or columns) ``offset, offset + stride, ...``: ``count`` of them, one per window."""
    return slice(offset, offset + stride * (count - 1) + 1, stride)


def im2col(x, kernel_size, stride, padding):
    """The receptive fields of x as rows: shape (N*H_out*W_out, C*k*k), in the order above."""
    N, C, H, W = x.shape
    k, s, p = kernel_size, stride, padding
    H_out, W_out = conv_output_size(H, k, s, p), conv_output_size(W, k, s, p)
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = np.empty((N, H_out, W_out, C, k, k), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            element_ij = x_pad[:, :, window_slice(i, s, H_out), window_slice(j, s, W_out)]
            windows[:, :, :, :, i, j] = element_ij.transpose(0, 2, 3, 1)
    return windows.reshape(N * H_out * W_out, C * k * k)


def col2im(cols, x_shape, kernel_size, stride, padding):
    """The adjoint of im2col: returns an array of shape ``x_shape`` (N, C, H, W)."""
    # BEGIN SOLUTION
    N, C, H, W = x_shape
    k, s, p = kernel_size, stride, padding
    H_out, W_out = conv_output_size(H, k, s, p), conv_output_size(W, k, s, p)
    windows = cols.reshape(N, H_out, W_out, C, k, k)
    dx_pad = np.zeros((N, C, H + 2 * p, W + 2 * p), dtype=cols.dtype)
    for i in range(k):
        for j in range(k):
            dx_pad[:, :, window_slice(i, s, H_out), window_slice(j, s, W_out)] += \
                windows[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dx_pad[:, :, p:p + H, p:p + W]
    # END SOLUTION


def conv2d_forward(x, w, b, stride=1, padding=0):
    """Returns ``(y, cache)`` with ``cache = (x.shape, cols, w, stride, padding)``; ``b=None``: no bias."""
    N, _, H, W = x.shape
    F, _, k, _ = w.shape
    H_out, W_out = conv_output_size(H, k, stride, padding), conv_output_size(W, k, stride, padding)
    cols = im2col(x, k, stride, padding)
    Y = cols @ w.reshape(F, -1).T
    if b is not None:
        Y = Y + b
    y = Y.reshape(N, H_out, W_out, F).transpose(0, 3, 1, 2)
    return y, (x.shape, cols, w, stride, padding)


def conv2d_backward(dout, cache):
    """Returns ``(dx, dw, db)``; use your col2im."""
    x_shape, cols, w, stride, padding = cache
    # BEGIN SOLUTION
    F, _, k, _ = w.shape
    dY = dout.transpose(0, 2, 3, 1).reshape(-1, F)
    dw = (dY.T @ cols).reshape(w.shape)
    db = dY.sum(axis=0)
    dx = col2im(dY @ w.reshape(F, -1), x_shape, k, stride, padding)
    return dx, dw, db
    # END SOLUTION

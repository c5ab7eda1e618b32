"""Exercise 7 -- a residual block and its skip connection (He et al.'s BasicBlock).

Forward (given below), with an identity shortcut (stride 1, same channel count):

    a = relu(bn1(conv1(x)))                 the branch F(x) ...
    f = bn2(conv2(a))                       ... ends here
    s = f + x                               the add: branch + shortcut
    y = relu(s)

The layers' own backward passes are given (minires.nn.functional: the same math as your
exercises 1, 5 and 6). Your job is the wiring, in particular the two places where the
gradient forks and joins:

  * The add s = f + x: ds/df = 1 and ds/dx = 1, so ds (the gradient at the add) is copied,
    unchanged, to BOTH operands: df = ds, and the shortcut's share of dx is ds itself.
  * x is used twice (by conv1 and by the add). Where paths meet, gradients ADD:
        dx = (gradient through the branch) + (gradient through the shortcut)
  * The final ReLU comes AFTER the add, so ds = relu_backward(dout, ...) feeds both paths.

Why it matters: even when the branch's gradient is tiny (a deep stack of convolutions and batch
norms), the shortcut hands ds on undiminished: that is what lets a 110-layer ResNet train.

Shapes: x, y, dout, dx (N, C, H, W); w1, w2 (C, C, 3, 3); gamma1, beta1, gamma2, beta2 (C,).
Return the gradients in the order of the forward's arguments:
    (dx, dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2)

Hints:
  * conv2d_backward returns (dx, dw, db); the convolutions here have no bias (db is None).
  * batch_norm_backward returns (dx, dgamma, dbeta); relu_backward returns dx.
  * Go through the forward pass from the bottom up; name each gradient after the variable
    it belongs to (ds, df, da, ...).
"""
from minires.nn.functional import (batch_norm_backward, batch_norm_forward, conv2d_backward, conv2d_forward,
                                   relu_backward, relu_forward)


def basic_block_forward(x, w1, gamma1, beta1, w2, gamma2, beta2):
    """Returns ``(y, cache)``; batch norms in training mode (batch statistics)."""
    c1, conv1_cache = conv2d_forward(x, w1, None, padding=1)
    b1, bn1_cache = batch_norm_forward(c1, gamma1, beta1)
    a, relu1_cache = relu_forward(b1)
    c2, conv2_cache = conv2d_forward(a, w2, None, padding=1)
    f, bn2_cache = batch_norm_forward(c2, gamma2, beta2)
    s = f + x
    y, relu2_cache = relu_forward(s)
    return y, (conv1_cache, bn1_cache, relu1_cache, conv2_cache, bn2_cache, relu2_cache)


def basic_block_backward(dout, cache):
    """Returns ``(dx, dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2)``."""
    conv1_cache, bn1_cache, relu1_cache, conv2_cache, bn2_cache, relu2_cache = cache
    # BEGIN SOLUTION
    ds = relu_backward(dout, relu2_cache)
    df = ds                                     # the add copies ds to the branch ...
    dx_shortcut = ds                            # ... and to the shortcut
    dc2, dgamma2, dbeta2 = batch_norm_backward(df, bn2_cache)
    da, dw2, _ = conv2d_backward(dc2, conv2_cache)
    db1 = relu_backward(da, relu1_cache)
    dc1, dgamma1, dbeta1 = batch_norm_backward(db1, bn1_cache)
    dx_branch, dw1, _ = conv2d_backward(dc1, conv1_cache)
    dx = dx_branch + dx_shortcut                # the two paths meet at x
    return dx, dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2
    # END SOLUTION

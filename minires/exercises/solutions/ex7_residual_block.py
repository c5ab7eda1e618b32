"""Exercise 7 -- a residual block and its skip connection (He et al.'s BasicBlock), built from your layers.

Forward (given below):

    a = relu(bn1(conv1(x)))                 the branch F(x) ...
    f = bn2(conv2(a))                       ... ends here
    s = f + S(x)                            the add: branch + shortcut
    y = relu(s)

with one of two shortcuts S:

    identity     S(x) = x                   when the block keeps the shape (stride 1, same channels)
    projection   S(x) = bn_s(conv_s(x))     when it halves the resolution and changes the channel
                                            count: conv_s is a 1x1 convolution with stride 2, and
                                            conv1 has stride 2 too (option B, torchvision's
                                            ``downsample``)

The layers are YOURS: ``layers`` holds the ReLU, batch norm and convolution of your exercises 1,
5 and 6 when they pass (the grader puts them in; for those that do not pass yet it uses minires'
functions with the same contract and says so). Their backward passes are done; what is left is
the wiring: where the gradient forks and where it joins.

To derive, on paper first (the grader shows the result after a failed attempt):

  1. The add s = f + S(x). What are ds/df and ds/dS? So which gradient reaches the branch's
     output, and which the shortcut's output, when dL/ds is given?
  2. The final ReLU comes after the add. Is dL/ds the upstream gradient dout, or what?
  3. x is used twice: by conv1 and by the shortcut. With the multivariate chain rule, how do
     the gradient that comes back through the branch and the one through the shortcut combine
     at x?
  4. The identity shortcut: what is its backward? The projection: which backward passes does
     the shortcut's gradient go through, in which order, and which shape has it at the end?

Why it matters: the branch's gradient passes through two convolutions and two batch norms and
may come out small; the identity shortcut hands its gradient on untouched. This is what lets a
110-layer ResNet train (demos/skip_connections.py, and notebook 1 in demos/notebooks/).

Shapes: identity block: x, y, dout, dx (N, C, H, W); w1, w2 (C, C, 3, 3); gamma1, beta1, gamma2,
        beta2 (C,). Projection block: x, dx (N, C_in, H, W); y, dout (N, C_out, H/2, W/2);
        w1 (C_out, C_in, 3, 3), w2 (C_out, C_out, 3, 3), w_s (C_out, C_in, 1, 1); the gammas
        and betas (C_out,).
Return the gradients in the order of the forward's arguments, ``dx`` first.

Hints:
  * Write ``branch_backward`` first; both blocks use it.
  * Go through the forward pass from the bottom up; name each gradient after the variable it
    belongs to (ds, df, da, ...).
  * conv2d_backward returns (dx, dw, db); the convolutions here have no bias: ignore db.
    batch_norm_backward returns (dx, dgamma, dbeta); relu_backward returns dx.
"""
from minires.exercises.layers import toolbox

layers = toolbox()  # minires' layers; the grader replaces them by yours (exercises 1, 5, 6) when these pass


def branch_forward(x, w1, gamma1, beta1, w2, gamma2, beta2, stride=1):
    """``F(x) = bn2(conv2(relu(bn1(conv1(x)))))``, conv1 with ``stride``; returns ``(f, cache)``.

    Batch norms in training mode (batch statistics).
    """
    c1, conv1_cache = layers.conv2d_forward(x, w1, None, stride=stride, padding=1)
    b1, bn1_cache = layers.batch_norm_forward(c1, gamma1, beta1)
    a, relu1_cache = layers.relu_forward(b1)
    c2, conv2_cache = layers.conv2d_forward(a, w2, None, padding=1)
    f, bn2_cache = layers.batch_norm_forward(c2, gamma2, beta2)
    return f, (conv1_cache, bn1_cache, relu1_cache, conv2_cache, bn2_cache)


def branch_backward(df, cache):
    """From ``df = dL/df``: returns ``(dx, dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2)``."""
    conv1_cache, bn1_cache, relu1_cache, conv2_cache, bn2_cache = cache
    # BEGIN SOLUTION
    dc2, dgamma2, dbeta2 = layers.batch_norm_backward(df, bn2_cache)
    da, dw2, _ = layers.conv2d_backward(dc2, conv2_cache)
    db1 = layers.relu_backward(da, relu1_cache)
    dc1, dgamma1, dbeta1 = layers.batch_norm_backward(db1, bn1_cache)
    dx, dw1, _ = layers.conv2d_backward(dc1, conv1_cache)
    return dx, dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2
    # END SOLUTION


def basic_block_forward(x, w1, gamma1, beta1, w2, gamma2, beta2):
    """The block with an identity shortcut; returns ``(y, cache)``."""
    f, branch_cache = branch_forward(x, w1, gamma1, beta1, w2, gamma2, beta2)
    y, relu2_cache = layers.relu_forward(f + x)
    return y, (branch_cache, relu2_cache)


def basic_block_backward(dout, cache):
    """Returns ``(dx, dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2)``."""
    branch_cache, relu2_cache = cache
    # BEGIN SOLUTION
    ds = layers.relu_backward(dout, relu2_cache)
    dx_branch, *dparameters = branch_backward(ds, branch_cache)   # the add copies ds to the branch ...
    dx_shortcut = ds                                              # ... and to the shortcut
    return (dx_branch + dx_shortcut, *dparameters)                # the two paths meet at x
    # END SOLUTION


def projection_block_forward(x, w1, gamma1, beta1, w2, gamma2, beta2, w_s, gamma_s, beta_s):
    """The block with a projection shortcut ``bn_s(conv_s(x))``, stride 2; returns ``(y, cache)``."""
    f, branch_cache = branch_forward(x, w1, gamma1, beta1, w2, gamma2, beta2, stride=2)
    c_s, conv_s_cache = layers.conv2d_forward(x, w_s, None, stride=2)
    shortcut, bn_s_cache = layers.batch_norm_forward(c_s, gamma_s, beta_s)
    y, relu2_cache = layers.relu_forward(f + shortcut)
    return y, (branch_cache, conv_s_cache, bn_s_cache, relu2_cache)


def projection_block_backward(dout, cache):
    """Returns ``(dx, dw1, dgamma1, dbeta1, dw2, dgamma2, dbeta2, dw_s, dgamma_s, dbeta_s)``."""
    branch_cache, conv_s_cache, bn_s_cache, relu2_cache = cache
    # BEGIN SOLUTION
    ds = layers.relu_backward(dout, relu2_cache)
    dx_branch, *dparameters = branch_backward(ds, branch_cache)
    dc_s, dgamma_s, dbeta_s = layers.batch_norm_backward(ds, bn_s_cache)
    dx_shortcut, dw_s, _ = layers.conv2d_backward(dc_s, conv_s_cache)
    return (dx_branch + dx_shortcut, *dparameters, dw_s, dgamma_s, dbeta_s)
    # END SOLUTION

"""Exercise 5 -- batch normalisation (training mode).

Forward, for x of shape (N, C, H, W). Each channel c is normalised over its M = N*H*W values
(sums and means below run over the axes (0, 2, 3), i.e. over those M values):

    mu      = mean(x)                       per channel
    var     = mean((x - mu)^2)              the biased variance (divide by M)
    inv_std = 1 / sqrt(var + eps)
    x_hat   = (x - mu) * inv_std
    y       = gamma * x_hat + beta          gamma, beta: (C,), one per channel

To derive, given dout = dL/dy (on paper first; the grader shows the result after a failed
attempt):

  * dbeta and dgamma: beta and gamma[c] touch every y of channel c. Which sums do you get?
  * dx_hat = dL/dx_hat: one line.
  * The hard part: mu and var are functions of EVERY x of the channel, so x_hat_j depends on
    every x_i, not only on x_j. Derive, one after the other,
        d mu / d x_i                  (you should find 1/M)
        d var / d x_i                 (2 (x_i - mu) / M: the term through mu vanishes. Why?)
        d x_hat_j / d x_i             (product rule on (x_j - mu) * inv_std; delta_ij for i == j)
    then contract: dx_i = sum_j dx_hat_j * d x_hat_j / d x_i, and write the result with two
    per-channel sums, sum(dx_hat) and sum(dx_hat * x_hat), and no loop.
  * Check your formula before you code it: shifting all x of a channel by a constant, or
    scaling them, does not change x_hat. So over each channel sum(dx) = 0 and, up to the eps
    in inv_std, sum(dx * x_hat) = 0 must hold. Do they, with your formula?

Shapes: x, dout, dx (N, C, H, W); gamma, beta, dgamma, dbeta (C,).

Hints:
  * Treating mu and var as constants gives dx = gamma * inv_std * dout: right in evaluation
    mode (running statistics), wrong here.
  * Keep the 1/M of the means: it is easy to lose on the way.
  * A check with an all-ones dout cannot find mistakes in dx: its exact answer is zero, so
    "return np.zeros_like(x)" would pass. The grader uses a random dout.
  * gamma.reshape(1, -1, 1, 1) broadcasts a per-channel vector against (N, C, H, W);
    keepdims=True in the sums does the same for the per-channel sums.
"""
import numpy as np


def batch_norm_forward(x, gamma, beta, eps=1e-5):
    """Returns ``(y, cache)`` with ``cache = (x_hat, gamma, inv_std)``; inv_std is (1, C, 1, 1)."""
    mu = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x - mu) * inv_std
    y = gamma.reshape(1, -1, 1, 1) * x_hat + beta.reshape(1, -1, 1, 1)
    return y, (x_hat, gamma, inv_std)


def batch_norm_backward(dout, cache):
    """Returns ``(dx, dgamma, dbeta)``."""
    x_hat, gamma, inv_std = cache
    # BEGIN SOLUTION
    axes = (0, 2, 3)
    M = x_hat.size // x_hat.shape[1]
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * x_hat).sum(axis=axes)
    dx_hat = dout * gamma.reshape(1, -1, 1, 1)
    dx = inv_std / M * (M * dx_hat - dx_hat.sum(axis=axes, keepdims=True)
                        - x_hat * (dx_hat * x_hat).sum(axis=axes, keepdims=True))
    return dx, dgamma, dbeta
    # END SOLUTION

"""Exercise 3 -- softmax and cross-entropy loss.

Forward, for logits z of shape (N, C) and integer labels t of shape (N,):

    p[n, c] = exp(z[n, c]) / sum_k exp(z[n, k])              (softmax, row by row)
    L       = -(1/N) sum_n log p[n, t[n]]                     (the MEAN over the batch)

To derive: dz = dL/dz, times the upstream gradient dloss (a scalar: 1 when L is the final
loss, anything else when L is scaled or summed with other terms).

  * For one row, with l = -log p[t] = -z[t] + log sum_k exp(z[k]):
        dl/dz[c] = p[c] - [c == t]
    (the derivative of log-sum-exp is the softmax; the first term gives -1 at c == t).
  * L is the mean of N such terms: each row's gradient gets a factor 1/N.
  * Then multiply by dloss.

Shapes: z (N, C), t (N,) int, L a 0-d array, dloss a scalar (or 0-d array), dz (N, C).

Hints:
  * The cache already holds p; copy it before changing it.
  * p[np.arange(N), t] picks p[n, t[n]] for every row n at once.
  * Forgetting the 1/N of the mean makes the gradient N times too large: with a learning
    rate tuned for the mean, training then diverges.
"""
import numpy as np


def softmax_cross_entropy_forward(z, t):
    """Returns ``(L, cache)``: the mean loss and ``cache = (p, t)``.

    Stable: subtracting each row's maximum changes no p but keeps every exp() <= 1.
    """
    shifted = z - z.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    N = z.shape[0]
    loss = -log_p[np.arange(N), t].mean()
    return np.asarray(loss), (np.exp(log_p), t)


def softmax_cross_entropy_backward(dloss, cache):
    """Returns ``dz``, shape (N, C)."""
    p, t = cache
    # BEGIN SOLUTION
    N = p.shape[0]
    dz = p.copy()
    dz[np.arange(N), t] -= 1
    return dz * (dloss / N)
    # END SOLUTION

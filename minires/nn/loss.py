"""Cross-entropy loss of a softmax classifier, with PyTorch's label smoothing.

Forward, for logits ``z`` of shape (N, C) and integer class labels ``t`` of shape (N,):

    log p_ic = z_ic - logsumexp_c(z_i)                   (log-softmax over the classes)
    q_ic     = (1 - ls) [c == t_i] + ls / C              (the smoothed target distribution)
    loss     = -(1/N) sum_i sum_c q_ic log p_ic          (the mean over the batch)

With ``ls = 0`` this is the familiar ``-mean_i log p_{i, t_i}``.

Numerical stability: ``logsumexp(z) = m + log sum_c exp(z_c - m)`` with ``m = max_c z_c``.
Every exponent is then <= 0 (nothing overflows) and the largest term is exp(0) = 1 (the
log never sees 0). ``log p`` is computed as ``(z - m) - log(sum ...)``, never as the log of
the softmax, which would be log(0) = -inf for a logit 1e4 below the largest one.

Backward: the derivative of ``-sum_c q_ic log p_ic`` with respect to ``z_ij`` is
``sum_c q_ic (p_ij - [c == j]) = p_ij - q_ij``, because the ``q_ic`` sum to 1. So

    dz = dloss * (softmax(z) - q) / N                    (N, C)

Memory: the cache holds the softmax probabilities (N, C), in the dtype of the logits, and
the labels; ``q`` is never built (backward subtracts its two terms in place).
"""
import numbers
from dataclasses import dataclass

from ..backend import get_array_module
from . import checks
from .checks import check_array, check_float, check_rank, check_same_shape
from .module import Module


def _label_smoothing(layer, value):
    """The validated smoothing as a Python float (a NumPy float64 would promote float32 math)."""
    if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{checks.layer_name(layer)}: label_smoothing must be between 0.0 and 1.0, got {value}")
    return float(value)


def _check_inputs(layer, logits, targets):
    check_float(layer, logits, "logits")
    check_rank(layer, logits, 2, "(N, C)", "logits")
    check_array(layer, targets, "targets")
    if targets.dtype.kind not in "iu":
        raise TypeError(f"{checks.layer_name(layer)}: expected integer class labels as targets (e.g. int64), "
                        f"got dtype {targets.dtype}")
    check_rank(layer, targets, 1, "(N,)", "targets")
    check_same_shape(layer, targets, logits.shape[:1], "targets (one label per row of logits)")
    get_array_module(logits, targets)  # raises on mixed devices
    classes = logits.shape[1]
    out_of_range = (targets < 0) | (targets >= classes)
    if bool(out_of_range.any()):  # one scalar comes back to the host
        bad = int(targets[out_of_range][0])
        raise ValueError(f"{checks.layer_name(layer)}: expected class labels in [0, {classes}) for {classes} classes, "
                         f"got label {bad}")


@dataclass
class CrossEntropyCache:
    """What ``cross_entropy_backward`` needs: softmax(logits) (N, C), the targets, the smoothing."""
    probs: object
    targets: object
    label_smoothing: float


def _cross_entropy(logits, targets, label_smoothing):
    xp = get_array_module(logits, targets)
    n, classes = logits.shape
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = xp.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    log_probs = shifted  # computed in place, as is probs below: no more (N, C) temporaries
    log_probs -= xp.log(sum_exp)
    per_sample = -(1 - label_smoothing) * log_probs[xp.arange(n), targets]
    if label_smoothing:
        per_sample -= label_smoothing / classes * log_probs.sum(axis=1)
    probs = exp
    probs /= sum_exp
    return xp.asarray(per_sample.mean()), CrossEntropyCache(probs, targets, label_smoothing)


def cross_entropy_forward(logits, targets, label_smoothing=0.0):
    """Mean cross-entropy of ``logits`` (N, C) against integer ``targets`` (N,).

    Returns ``(loss, cache)``; ``loss`` is a 0-d array of the logits' dtype.
    """
    label_smoothing = _label_smoothing("cross_entropy_forward", label_smoothing)
    _check_inputs("cross_entropy_forward", logits, targets)
    return _cross_entropy(logits, targets, label_smoothing)


def cross_entropy_backward(dloss, cache):
    """``dlogits = dloss * (softmax(logits) - q) / N``; ``dloss`` is a scalar (1.0 for the loss itself)."""
    probs, targets, label_smoothing = cache.probs, cache.targets, cache.label_smoothing
    if getattr(dloss, "ndim", 0) != 0:
        raise ValueError(f"cross_entropy_backward: expected a scalar upstream gradient (the loss is a scalar), "
                         f"got shape {tuple(dloss.shape)}")
    xp = get_array_module(probs, targets)
    n, classes = probs.shape
    dlogits = probs.copy()
    dlogits[xp.arange(n), targets] -= 1 - label_smoothing
    if label_smoothing:
        dlogits -= label_smoothing / classes
    dlogits *= dloss / max(n, 1)  # in place: a float64 dloss does not promote float32 logits
    return dlogits


def softmax_cross_entropy(logits, targets, label_smoothing=0.0):
    """``(loss, dlogits)`` in one call: the forward and the backward of ``dloss = 1``."""
    loss, cache = cross_entropy_forward(logits, targets, label_smoothing)
    return loss, cross_entropy_backward(1.0, cache)


class CrossEntropyLoss(Module):
    """``loss = criterion(logits, targets)`` (the mean loss), then ``dlogits = criterion.backward()``.

    ``backward(dloss=1.0)`` takes an optional upstream gradient, e.g. to scale the loss.
    """

    def __init__(self, label_smoothing=0.0):
        super().__init__()
        self.label_smoothing = _label_smoothing("CrossEntropyLoss", label_smoothing)

    def forward(self, logits, targets):
        _check_inputs(self, logits, targets)
        loss, cache = _cross_entropy(logits, targets, self.label_smoothing)
        self._save_for_backward(cache)
        return loss

    def backward(self, dloss=1.0):
        return cross_entropy_backward(dloss, self._saved_for_backward())

    def extra_repr(self):
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""


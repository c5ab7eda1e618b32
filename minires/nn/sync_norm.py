"""Synchronised batch norm: the statistics of the global batch, over every process of a data-parallel run.

In a run of K processes (``minires.distributed``) each rank holds a shard of the global batch. A
plain ``BatchNorm2d`` normalises each shard with the shard's own statistics; ``SyncBatchNorm``
normalises every shard with the statistics of the whole global batch, so that K processes compute
what one process computes on that batch (PyTorch's ``nn.SyncBatchNorm``). Shapes as for batch norm:
``x`` is (N, C), (N, C, L) or (N, C, H, W), and rank ``r`` holds ``M_r`` values of each channel
(``n_r * H * W``); shards may differ in size.

Forward. One all-reduce of ``1 + 2C`` float64 numbers per layer gives the global count and sums

    M = sum_r M_r,     S = sum over all ranks of x,     Q = sum over all ranks of x^2   (per channel)

    mu  = S / M,       var = Q / M - mu^2        (the biased variance, which normalises)

and each rank normalises its own shard: ``x_hat = (x - mu) / sqrt(var + eps)``, ``y = gamma * x_hat
+ beta``. The running statistics are updated on every rank alike, ``running_var`` with the
unbiased ``var * M / (M - 1)`` of the *global* count, as PyTorch does.

Precision. ``Q / M - mu^2`` cancels when the mean is large against the spread: its error is about
``1e-16 * mu^2``, i.e. ``1e-16 * (mu / std)^2`` relative to ``var``. The sums accumulate in float64
(squares of float32 values are exact in float64), so for float32 activations this stays far below
float32's own rounding (6e-8) unless ``|mu| / std`` exceeds about 1e4. One process avoids the
cancellation with a second pass over ``x - mu`` (see norm.py); here that would cost a second
all-reduce per layer.

Backward. The derivation in norm.py holds unchanged with ``M`` the global count and the sums over
the global batch: ``x_hat`` of every rank depends on the ``x`` of every rank through ``mu`` and
``var``, and with ``s = 1 / sqrt(var + eps)``

    dx = gamma * s / M * (M * dy - sum(dy) - x_hat * sum(dy * x_hat))     (sums over all ranks)

so one all-reduce of ``2C`` numbers, ``sum(dy)`` and ``sum(dy * (x - mu))`` per channel (the latter
is ``sum(dy * x_hat) / s``), gives every rank its ``dx``. The parameter gradients are the rank's
own sums, ``dgamma_r = s * sum_r(dy * (x - mu))`` and ``dbeta_r = sum_r(dy)``: the training loop's
``allreduce_gradients`` adds them over the ranks, as it does for every parameter. For the ``dy`` of
all ranks to be gradients of one loss, each rank scales its ``dlogits`` by its share ``n_r / N``
of the global batch (see ``minires.distributed``).

When it synchronises: in training mode with more than one process. Otherwise it *is* batch norm
(evaluation uses the running statistics; one process has nothing to share), as in PyTorch. The pure
functions take the process group (default: ``minires.distributed``'s); with world size 1 they run
the synchronised arithmetic in one process, which is how the tests compare it with PyTorch.
"""
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import distributed
from ..backend import get_array_module
from .checks import check_same_shape, layer_name
from .norm import (_LAYOUT, BatchNormCache, _BatchNorm, _affine_gradients, _batch_stats_input_gradient,
                   _channel_dot, _channel_sum, _check_inputs, _per_channel, _scale_and_shift,
                   _update_running_stats, _values_per_channel)


@dataclass
class SyncBatchNormCache(BatchNormCache):
    """What ``sync_batch_norm_backward`` needs: batch norm's cache, the global count and the group."""
    count: int = 0          # M, the values per channel over all ranks
    group: Any = None       # the process group the forward pass reduced over


def _sync_batch_norm(layer, x, gamma, beta, running_mean, running_var, momentum, eps, group):
    """The forward pass proper (inputs already checked), in training mode."""
    xp = get_array_module(x)
    channels = x.shape[1]
    local = xp.concatenate([xp.full(1, _values_per_channel(x), dtype=np.float64), _channel_sum(x),
                            _channel_dot(x, x)])
    totals = group.all_reduce(local)                   # [M, S (C values), Q (C values)]
    count = int(totals[0])
    if count < 2:
        raise ValueError(f"{layer_name(layer)}: expected more than 1 value per channel when training, "
                         f"got {count} over all {group.world_size} processes (input of shape "
                         f"{tuple(x.shape)} on rank {group.rank})")
    mean = totals[1:channels + 1] / count
    var = xp.maximum(totals[channels + 1:] / count - mean * mean, 0.0)   # rounding may dip below 0
    if running_mean is not None:
        _update_running_stats(running_mean, running_var, mean, var, count, momentum)
    centred = _per_channel(xp.subtract, x, mean)
    y, inv_std = _scale_and_shift(centred, var, gamma, beta, eps)
    return y, SyncBatchNormCache(centred, inv_std, gamma, beta is not None, True, count, group)


def sync_batch_norm_forward(x, gamma, beta, *, running_mean=None, running_var=None, momentum=0.1, eps=1e-5,
                            group=None):
    """Batch norm of this rank's shard ``x`` with the global batch's statistics; ``(y, cache)``.

    Training mode only (evaluation needs no synchronisation: ``batch_norm_forward``). Arguments as
    in ``batch_norm_forward`` (keyword-only after ``beta``); the running statistics, when given,
    are updated in place. ``group`` defaults to ``minires.distributed.get_group()``.
    """
    _check_inputs("sync_batch_norm_forward", x, gamma, beta, running_mean, running_var, False)
    group = distributed.get_group() if group is None else group
    return _sync_batch_norm("sync_batch_norm_forward", x, gamma, beta, running_mean, running_var, momentum,
                            eps, group)


def sync_batch_norm_backward(dy, cache):
    """``(dx, dgamma, dbeta)`` of this rank; ``dgamma``/``dbeta`` are its own share (see above)."""
    check_same_shape("sync_batch_norm_backward", dy, cache.centred.shape, "upstream gradient")
    xp = get_array_module(dy, cache.centred)
    sum_dy, sum_dy_centred = _channel_sum(dy), _channel_dot(dy, cache.centred)
    totals = cache.group.all_reduce(xp.concatenate([sum_dy, sum_dy_centred]))
    channels = sum_dy.shape[0]
    dx = _batch_stats_input_gradient(dy, cache, totals[:channels], totals[channels:], cache.count)
    return (dx, *_affine_gradients(cache, sum_dy, sum_dy_centred))


class SyncBatchNorm(_BatchNorm):
    """Batch norm over the global batch of all processes; ``BatchNorm2d``'s arguments and state.

    Build it directly or swap it in with ``convert_sync_batchnorm(model)``. In evaluation mode and
    in a run of one process it computes exactly what ``BatchNorm2d`` computes.
    """

    _ranks = (2, 3, 4)
    _layout = _LAYOUT

    def forward(self, x):
        group = distributed.get_group()
        if not (self.training and group.world_size > 1):
            return super().forward(x)
        self._check(x, uses_batch_stats=False)  # the count that matters is the global one
        y, cache = _sync_batch_norm(self, x, *self._affine_arrays(), self.running_mean, self.running_var,
                                    self._momentum_of_this_batch(), self.eps, group)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        if not isinstance(self._cache, SyncBatchNormCache):  # the forward pass was batch norm's
            return super().backward(grad_output)
        dx, dgamma, dbeta = sync_batch_norm_backward(grad_output, self._saved_for_backward())
        self._accumulate_affine_grads(dgamma, dbeta)
        return dx

    @staticmethod
    def convert_sync_batchnorm(module):
        """PyTorch's spelling of ``convert_sync_batchnorm(module)``."""
        return convert_sync_batchnorm(module)


def convert_sync_batchnorm(module):
    """Every ``BatchNorm1d``/``BatchNorm2d`` in ``module`` replaced by a ``SyncBatchNorm``, in place.

    The new layer keeps the name, the hyper-parameters, the mode, the very ``Parameter`` objects
    (an optimizer built before still updates them, as in PyTorch) and the buffers, so that
    ``state_dict()`` is unchanged. Returns ``module``, or the new layer when ``module`` itself is a
    batch norm.
    """
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        sync = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats, bias=module.bias is not None)
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            setattr(sync, name, getattr(module, name))
        return sync.train(module.training)
    for name, child in list(module.named_children()):
        module.add_module(name, convert_sync_batchnorm(child))  # same key, same place in the order
    return module

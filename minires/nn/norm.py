"""Batch normalisation: normalise each channel over the batch, then scale and shift.

Where the plain version is. The formulas below are computed as written -- float64 reductions
over every axis but the channel, (C,) vectors broadcast over the channel axis -- inside
``with minires.nn.reference_kernels():``; exercise 5 (``minires/exercises/solutions/ex5_batch_norm.py``)
derives the same backward. Outside that block, channels-last inputs take the blocked sums and
tiled broadcasts of ``_channel_rows`` (same results to rounding).

Forward. For an input ``x`` of shape (N, C, H, W) -- or (N, C) and (N, C, L) -- each channel
``c`` is normalised over its ``M = N*H*W`` values (the batch and every spatial position):

    mu    = mean(x)                   over the M values of the channel
    var   = mean((x - mu)^2)          the *biased* variance (divide by M)
    x_hat = (x - mu) / sqrt(var + eps)
    y     = gamma * x_hat + beta      gamma, beta: (C,), learned (``affine=True``)

Training mode uses the statistics of the batch (``mu``, ``var``) and updates running averages,
exactly as PyTorch does:

    running_mean = (1 - momentum) * running_mean + momentum * mu
    running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (the *unbiased* one)

starting from ``running_mean = 0``, ``running_var = 1``. An empty batch has no statistics: its output
is empty and the running statistics stay as they are (``num_batches_tracked`` still counts it), as in
PyTorch. Evaluation mode normalises with the running statistics instead, so y is then an affine map
of x, channel by channel. (Without running
statistics -- ``track_running_stats=False`` -- the batch statistics are used in both modes.)

Backward. Write ``s = 1 / sqrt(var + eps)`` and sums over the M values of a channel as ``sum``.
Trivially ``dbeta = sum(dy)``, ``dgamma = sum(dy * x_hat)`` and ``dx_hat = gamma * dy``.
In evaluation mode mu and s are constants, so ``dx = gamma * s * dy``. In training mode they depend
on every x of the channel: from ``d mu / d x_i = 1/M`` and ``d var / d x_i = 2 (x_i - mu) / M``,

    d x_hat_j / d x_i = s * (delta_ij - 1/M - x_hat_i * x_hat_j / M),

and contracting with ``dx_hat_j`` gives the compact formula

    dx = gamma * s / M * (M * dy - sum(dy) - x_hat * sum(dy * x_hat)).

(The two sums remove from ``dy`` its components along the constant vector and along ``x_hat``:
shifting or scaling x within a channel does not change x_hat.)

Precision. The statistics sum M values per channel (131,072 at batch 128 on 32x32): summed in
float32 a mean of 1000 + N(0, 1) would lose several digits. The sums therefore accumulate in
float64 (channels-last inputs: float64 across blocks of 256 values, see ``_SUM_BLOCK_ROWS``)
while the big tensors stay in the input's dtype, and the variance is computed in two passes, from
the centred values ``x - mu``, so it never suffers the cancellation of ``E[x^2] - mu^2``. The
per-channel quantities (mu, var, s, the backward sums) are float64 vectors of length C, cast to
the input's dtype only where they meet the big tensors: float32 stays float32.

Memory. The cache keeps the centred input ``x - mu`` (one array of the input's size and dtype) and
the per-channel vectors. ``x_hat`` is not stored: it is ``(x - mu) * s``, folded into the per-channel
coefficients of the backward pass. Forward makes one new array besides the output.

Layout. Nothing assumes C-contiguity: a channels-last input (the NCHW view of NHWC memory that
``conv2d_forward`` returns) stays channels-last through the elementwise operations.
"""
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import get_array_module
from .checks import check_dim, check_float, check_matching, check_rank, check_same_shape, layer_name
from .module import Module, Parameter
from .reference import uses_reference_kernels

_LAYOUT = "(N, C), (N, C, L) or (N, C, H, W)"


# -- per-channel helpers: C is axis 1, every other axis is reduced ---------------------------
def _values_per_channel(x):
    return x.size // x.shape[1]


def _channel_sum(a):
    """``sum(a)`` over every axis but the channel axis, accumulated in float64: shape (C,)."""
    rows = _channel_rows(a)
    if rows is not None:
        return get_array_module(a).einsum("kbc->kc", rows).sum(axis=0, dtype=np.float64)
    return a.sum(axis=(0, *range(2, a.ndim)), dtype=np.float64)


def _channel_dot(a, b):
    """``sum(a * b)`` per channel, accumulated in float64, without a product temporary."""
    xp = get_array_module(a, b)
    rows_a, rows_b = _channel_rows(a), _channel_rows(b)
    if rows_a is not None and rows_b is not None:
        return xp.einsum("kbc,kbc->kc", rows_a, rows_b).sum(axis=0, dtype=np.float64)
    axes = "ncxyz"[:a.ndim]  # "nchw"-like subscripts: every axis but c is summed
    return xp.einsum(f"{axes},{axes}->c", a, b, dtype=np.float64)


# The fast path of the two sums above (the float64 one is the reference): a float64 accumulator
# converts every float32 value, a third of a batch norm's time. When the channel is the innermost
# axis in memory (channels-last images, (N, C) batches), the values form rows of C: blocks of up
# to 256 rows are summed in the input's dtype (a few ulp of error per block), the block sums in
# float64. Speed and error measured in benchmarks/README.md.
_SUM_BLOCK_ROWS = 256


def _channel_rows(a):
    """``a`` as (blocks, rows per block, C), a view, when its channels are the innermost axis; else
    None (always None inside ``reference_kernels``: the plain reductions and broadcasts then)."""
    channels_last = a.transpose(0, *range(2, a.ndim), 1)
    if uses_reference_kernels() or not channels_last.flags.c_contiguous:
        return None
    count = _values_per_channel(a)
    return channels_last.reshape(-1, math.gcd(count, _SUM_BLOCK_ROWS), a.shape[1])


def _broadcastable(vector, like):
    """A (C,) vector as a (C, 1, 1) array (for a 4-D ``like``) in ``like``'s dtype."""
    return vector.astype(like.dtype, copy=False).reshape((like.shape[1],) + (1,) * (like.ndim - 2))


def _per_channel(ufunc, a, vector, out=None):
    """``ufunc(a, vector)`` with the (C,) ``vector`` broadcast along the channel axis of ``a``.

    The fast path of ``ufunc(a, _broadcastable(vector, a))``. On channels-last memory that
    broadcast makes NumPy run its inner loop over only C values at a time (16 on ResNet-20's
    first stage); viewing the values as rows of 256 pixels x C channels, against the vector
    tiled 256 times, runs it over 256*C (faster: benchmarks/README.md).
    The result (or ``out``) keeps the layout of ``a``.
    """
    xp = get_array_module(a)
    vector = vector.astype(a.dtype, copy=False)
    out = xp.empty_like(a) if out is None else out
    rows_a, rows_out = _channel_rows(a), _channel_rows(out)
    if rows_a is None or rows_out is None:
        return ufunc(a, _broadcastable(vector, a), out=out)
    blocks, pixels, channels = rows_a.shape
    ufunc(rows_a.reshape(blocks, pixels * channels), xp.tile(vector, pixels),
          out=rows_out.reshape(blocks, pixels * channels))
    return out


# -- checks -------------------------------------------------------------------------------------
def _check_inputs(layer, x, gamma, beta, running_mean, running_var, uses_batch_stats,
                  ranks=(2, 3, 4), layout=_LAYOUT, channels=None):
    """``channels=None``: whatever axis 1 of ``x`` holds (the pure function); a module says."""
    check_float(layer, x)
    check_rank(layer, x, ranks, layout)
    channels = x.shape[1] if channels is None else channels
    check_dim(layer, x, 1, channels, "channels")
    for what, array in (("weight", gamma), ("bias", beta), ("running_mean", running_mean),
                        ("running_var", running_var)):
        if array is not None:
            check_float(layer, array, what)
            check_same_shape(layer, array, (channels,), what)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"{layer_name(layer)}: running_mean and running_var must be given together "
                         "(or both be None)")
    check_matching(layer, x, gamma, beta, running_mean, running_var)
    if uses_batch_stats and _values_per_channel(x) == 1:
        raise ValueError(f"{layer_name(layer)}: expected more than 1 value per channel when training, "
                         f"got input of shape {tuple(x.shape)}")


# -- the operation ---------------------------------------------------------------------------
@dataclass
class BatchNormCache:
    """What ``batch_norm_backward`` needs from the forward pass."""
    centred: Any            # x - mu, the input's shape and dtype
    inv_std: Any            # s = 1 / sqrt(var + eps), float64 (C,)
    gamma: Any              # (C,) or None
    has_beta: bool
    batch_stats: bool       # True: mu and var came from this batch (the training-mode backward)


def _update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """PyTorch's rule, in place: ``running = (1 - momentum) * running + momentum * batch``."""
    unbiased_var = var * (count / (count - 1))
    running_mean[...] = (1 - momentum) * running_mean.astype(np.float64) + momentum * mean
    running_var[...] = (1 - momentum) * running_var.astype(np.float64) + momentum * unbiased_var


def _batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """The forward pass proper (inputs already checked)."""
    xp = get_array_module(x)
    if x.size == 0:  # no values, no statistics: an empty output, running statistics untouched (PyTorch)
        no_statistics = xp.zeros(x.shape[1], dtype=np.float64)
        return xp.empty_like(x), BatchNormCache(x, no_statistics, gamma, beta is not None, batch_stats=False)
    batch_stats = training or running_mean is None
    if batch_stats:
        count = _values_per_channel(x)
        mean = _channel_sum(x) / count
        centred = _per_channel(xp.subtract, x, mean)
        var = _channel_dot(centred, centred) / count          # two-pass: no cancellation
        if training and running_mean is not None:
            _update_running_stats(running_mean, running_var, mean, var, count, momentum)
    else:
        centred = _per_channel(xp.subtract, x, running_mean)
        var = running_var.astype(np.float64)
    inv_std = 1.0 / xp.sqrt(var + eps)
    scale = inv_std if gamma is None else inv_std * gamma       # y = (x - mu) * scale + beta
    y = _per_channel(xp.multiply, centred, scale)
    if beta is not None:
        _per_channel(xp.add, y, beta, out=y)
    return y, BatchNormCache(centred, inv_std, gamma, beta is not None, batch_stats)


def batch_norm_forward(x, gamma, beta, *, running_mean=None, running_var=None, training=True,
                       momentum=0.1, eps=1e-5):
    """Batch norm of ``x`` (N, C[, H, W]); returns ``(y, cache)``.

    Everything after ``beta`` is keyword-only: gamma, beta and the running statistics all have
    shape (C,), so a positional mix-up would run and give garbage.

    ``gamma``, ``beta``: (C,) arrays, or ``None`` for no scale / no shift (``affine=False``).
    ``running_mean``, ``running_var``: (C,) arrays or both ``None``. With ``training=True`` the
    batch statistics normalise ``x`` and, when running statistics are given, they are **updated
    in place** with weight ``momentum`` (a number: the module turns ``momentum=None`` into
    ``1 / num_batches_tracked``), as ``torch.nn.functional.batch_norm`` does. With
    ``training=False`` the running statistics normalise ``x``; without them the batch
    statistics are used in both modes (``track_running_stats=False``).
    """
    uses_batch_stats = training or running_mean is None
    _check_inputs("batch_norm_forward", x, gamma, beta, running_mean, running_var, uses_batch_stats)
    return _batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps)


def batch_norm_backward(dy, cache):
    """``(dx, dgamma, dbeta)``; ``dgamma``/``dbeta`` are ``None`` when gamma/beta were ``None``."""
    centred, inv_std = cache.centred, cache.inv_std
    check_same_shape("batch_norm_backward", dy, centred.shape, "upstream gradient")
    xp = get_array_module(dy, centred)
    scale = inv_std if cache.gamma is None else inv_std * cache.gamma        # gamma * s
    sum_dy = _channel_sum(dy) if cache.batch_stats or cache.has_beta else None
    sum_dy_centred = _channel_dot(dy, centred) if cache.batch_stats or cache.gamma is not None else None

    if cache.batch_stats:
        # dx = gamma*s * (dy - sum(dy)/M - (x - mu) * s^2 * sum(dy*(x - mu))/M), with x_hat = (x - mu)*s
        count = _values_per_channel(centred)
        dx = _per_channel(xp.multiply, centred, inv_std ** 2 * sum_dy_centred / count)
        _per_channel(xp.add, dx, sum_dy / count, out=dx)
        xp.subtract(dy, dx, out=dx)
        _per_channel(xp.multiply, dx, scale, out=dx)
    else:
        dx = _per_channel(xp.multiply, dy, scale)

    dtype = centred.dtype
    dgamma = None if cache.gamma is None else (inv_std * sum_dy_centred).astype(dtype)
    dbeta = sum_dy.astype(dtype) if cache.has_beta else None
    return dx, dgamma, dbeta


# -- modules ---------------------------------------------------------------------------------
class _BatchNorm(Module):
    """Parameters, buffers and modes shared by ``BatchNorm1d`` and ``BatchNorm2d``."""

    _ranks = ()
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 *, bias=True):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                or num_features < 1:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive integer, "
                             f"got {num_features!r}")
        self.num_features = int(num_features)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:  # PyTorch 2.13: affine=True, bias=False learns gamma only
            self.weight = Parameter(np.empty(self.num_features, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
        if affine and bias:
            self.bias = Parameter(np.empty(self.num_features, dtype=np.float32))
        else:
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.empty(self.num_features, dtype=np.float32))
            self.register_buffer("running_var", np.empty(self.num_features, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.reset_parameters()

    def reset_running_stats(self):
        """``running_mean = 0``, ``running_var = 1``, ``num_batches_tracked = 0``."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self):
        """Running statistics reset; ``weight = 1``, ``bias = 0`` (PyTorch's initialisation)."""
        self.reset_running_stats()
        if self.weight is not None:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def forward(self, x):
        gamma = None if self.weight is None else self.weight.data
        beta = None if self.bias is None else self.bias.data
        uses_batch_stats = self.training or self.running_mean is None
        _check_inputs(self, x, gamma, beta, self.running_mean, self.running_var, uses_batch_stats,
                      self._ranks, self._layout, self.num_features)
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if momentum is None:  # a cumulative moving average: every batch weighs the same
                momentum = 1.0 / float(self.num_batches_tracked)
        y, cache = _batch_norm(x, gamma, beta, self.running_mean, self.running_var, self.training,
                               momentum, self.eps)
        self._save_for_backward(cache)
        return y

    def backward(self, grad_output):
        dx, dgamma, dbeta = batch_norm_backward(grad_output, self._saved_for_backward())
        if self.weight is not None:
            self.weight.accumulate_grad(dgamma)
        if self.bias is not None:
            self.bias.accumulate_grad(dbeta)
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W): statistics per channel over N, H and W."""

    _ranks = (4,)
    _layout = "(N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L): statistics per channel over N (and L)."""

    _ranks = (2, 3)
    _layout = "(N, C) or (N, C, L)"

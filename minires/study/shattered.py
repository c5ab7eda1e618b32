"""Shattered gradients (Balduzzi, Frean, Leary, Lewis, Ma, McWilliams 2017): how the gradient of a
network from R to R changes from one input to the next, feed-forward against residual.

The networks, at initialisation, with ``width`` (200) ReLU units per layer and ``depth`` L:

    feed-forward:            h_0 = x,  h_l = relu(W_l h_{l-1} + b_l)                      l = 1..L
    feed-forward with BN:    h_l = relu(BN_l(W_l h_{l-1} + b_l))
    residual with BN:        h_0 = W_0 x + b_0,  h_l = h_{l-1} + W_l relu(BN_l(h_{l-1})) + b_l
    and for all three        y = w_out . h_L + b_out

(the residual block is the full pre-activation unit of He et al. 2016, with one weight layer). Every
``W`` is He-normal, N(0, 2 / fan_in), every ``b`` uniform in ±1/sqrt(fan_in) (PyTorch's default for
a bias); without biases a net from R to R would be linear on each side of 0.

What is measured: the derivative ``g_i = dy/dx`` at n = 256 evenly spaced inputs ``x_i`` in [-2, 2],
from the hand-written backward of minires' ``Linear``, ``ReLU`` and ``BatchNorm1d``. Then

    autocorrelation   rho(k) = sum_i (g_i - mean g)(g_{i+k} - mean g) / sum_i (g_i - mean g)^2
    neighbour correlation       rho(1)

A shallow net's g is a random walk over x (each ReLU that switches on adds a step: "brown noise",
rho(1) near 1; ``relu_switches`` counts the steps, layer by layer); Balduzzi et al. show that in a deep feed-forward net the correlation between the
gradients at nearby inputs falls like 2^-L (white noise, rho(1) near 0: the gradient is "shattered"),
and in a residual net with batch norm only like 1/sqrt(L).

Batch norm in training mode couples the inputs: its mean and variance are taken over the batch, so
``y_i`` depends on every ``x_j`` (``dy_i/dx_j != 0``) and a backward pass of ones would return
``sum_j dy_j/dx_i``, not the derivative of the function at ``x_i``. We do what the paper's setting
means: the statistics are computed over the 256 inputs (a training-mode forward), then held fixed,
and ``dy_i/dx_i`` is taken with them fixed. In code: each BN's running mean and variance are set to
the batch's mean and biased variance, and the net runs in evaluation mode, where BN is the affine
map ``gamma (h - mean) / sqrt(var + eps) + beta`` of each input on its own; one backward pass of
ones then gives every ``dy_i/dx_i`` at once. Everything runs in float64.
"""
import numpy as np

import math

from .. import nn
from ..grad_mode import no_grad
from ..nn import init

KINDS = ("feedforward", "feedforward_bn", "residual_bn")


class ResidualLayer(nn.Module):
    """``h + W relu(BN(h)) + b``: the gradient at the output reaches the input twice, through the
    identity unchanged and through the branch."""

    def __init__(self, width):
        super().__init__()
        self.bn = nn.BatchNorm1d(width)
        self.relu = nn.ReLU()
        self.linear = nn.Linear(width, width)

    def forward(self, h):
        self._save_for_backward(True)
        return h + self.linear(self.relu(self.bn(h)))

    def backward(self, grad_output):
        self._saved_for_backward()
        grad_branch = self.bn.backward(self.relu.backward(self.linear.backward(grad_output)))
        return grad_output + grad_branch   # the identity's copy plus the branch's


def make_net(kind, depth, width=200, seed=0):
    """A float64 net from R to R (see the module docstring) whose weights depend on ``seed`` alone: every
    Linear is initialised again from a generator of its own (whatever minires' global one holds)."""
    if kind not in KINDS:
        raise ValueError(f"shattered.make_net: kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if depth < 1:
        raise ValueError(f"shattered.make_net: depth must be at least 1, got {depth}")
    if kind == "residual_bn":
        layers = [nn.Linear(1, width)] + [ResidualLayer(width) for _ in range(depth)]
    else:
        layers = []
        for index in range(depth):
            layers.append(nn.Linear(1 if index == 0 else width, width))
            layers += [nn.BatchNorm1d(width)] if kind == "feedforward_bn" else []
            layers.append(nn.ReLU())
    net = nn.Sequential(*layers, nn.Linear(width, 1)).double()
    rng = np.random.default_rng(seed)
    for module in net.modules():
        if isinstance(module, nn.Linear):
            init.kaiming_normal_(module.weight, nonlinearity="relu", generator=rng)
            bound = 1 / math.sqrt(module.in_features)
            init.uniform_(module.bias, -bound, bound, generator=rng)
    return net


def evenly_spaced_inputs(n=256, low=-2.0, high=2.0):
    """The inputs, as a batch ``(n, 1)``."""
    return np.linspace(low, high, n).reshape(n, 1)


def freeze_batch_statistics(net, x):
    """One training-mode forward of ``x``; then every BatchNorm1d's running mean and variance are the
    batch's mean and *biased* variance (what the training-mode forward normalised with), and the net
    is in evaluation mode: its forward is the training-mode forward of ``x`` with the statistics
    held fixed. Returns the training-mode output."""
    seen = {}
    norms = [module for module in net.modules() if isinstance(module, nn.BatchNorm1d)]
    handles = [bn.register_forward_hook(lambda module, inputs, output: seen.__setitem__(module, inputs[0]))
               for bn in norms]
    try:
        net.train()
        y = net(x)
    finally:
        for handle in handles:
            handle.remove()
    for bn in norms:
        bn.running_mean[...] = seen[bn].mean(axis=0)
        bn.running_var[...] = seen[bn].var(axis=0)
    net.eval()
    return y


def input_gradients(net, x):
    """``dy_i/dx_i`` for every input of the batch ``x`` (n, 1), batch statistics held fixed; shape (n,)."""
    freeze_batch_statistics(net, x)
    y = net(x)
    return net.backward(np.ones_like(y)).reshape(-1)


def relu_switches(net, x):
    """Per ReLU layer, in forward order: how many times a unit's input changes sign between neighbouring
    inputs (summed over the units), statistics held fixed. A ReLU net is piecewise linear in x and
    ``dy/dx`` is constant between two switches: these are the kinks of the function, layer by layer."""
    freeze_batch_statistics(net, x)
    inputs = []
    handles = [m.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
               for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with no_grad():
            net(x)
    finally:
        for handle in handles:
            handle.remove()
    return [int(np.count_nonzero(np.diff(h > 0, axis=0))) for h in inputs]  # diff of booleans: !=


def autocorrelation(g, max_lag):
    """``rho(k)`` for k = 0..max_lag (``rho(0) = 1``), as in the module docstring."""
    g = np.asarray(g, dtype=np.float64)
    if not 0 <= max_lag < len(g):
        raise ValueError(f"shattered.autocorrelation: max_lag must be in [0, {len(g) - 1}], got {max_lag}")
    centred = g - g.mean()
    variance = centred @ centred
    if variance == 0:
        raise ValueError("shattered.autocorrelation: the gradients are all equal (a linear function): "
                         "no correlation is defined")
    return np.array([centred[:len(g) - k] @ centred[k:] for k in range(max_lag + 1)]) / variance


def neighbour_correlation(g):
    """``rho(1)``: the correlation between the gradients at neighbouring inputs."""
    return float(autocorrelation(g, 1)[1])


def correlation_vs_depth(kind, depths, nets=10, width=200, n=256, seed=0):
    """``rho(1)`` of ``nets`` independently initialised nets (seeds ``seed .. seed + nets - 1``) at
    each depth: an array (len(depths), nets)."""
    x = evenly_spaced_inputs(n)
    return np.array([[neighbour_correlation(input_gradients(make_net(kind, depth, width, seed + k), x))
                      for k in range(nets)] for depth in depths])

"""Residual networks as ensembles of paths, and how much gradient each path length carries
(Veit, Wilber, Belongie 2016, "Residual networks behave like ensembles of relatively shallow
networks", Sec. 5 and Fig. 6).

Unrolled. A block maps ``x`` to ``y = relu(F(x) + S(x))``. At a given input, its Jacobian is
``D (F' + S')``, with ``D`` the 0/1 mask of the ReLU after the add, ``F'`` the branch's Jacobian
and ``S'`` the shortcut's (the identity, or option A's subsampling). The input gradient of n
blocks in a row is the transposed product of their Jacobians applied to the gradient at the top,
and the product of n sums expands into 2^n terms:

    dL/dx = J_1^T ... J_n^T g = sum over paths P of  g_P,    J_b = D_b (F_b' + S_b')
    g_P   = (D_1 T_1)^T ... (D_n T_n)^T g,                   T_b = F_b' if b is in P, else S_b'

A path P picks, in every block, the branch or the shortcut; its length k is the number of
branches it goes through. Of the 2^n paths, C(n, k) have length k (a binomial distribution:
most paths have length about n/2, and sum_k C(n, k) = 2^n).

Measured. ``block.route`` (``minires.models.resnet.GradientRouting``) makes a block's backward
keep one term of its sum, after the ReLU's mask, so a backward pass with every block routed
returns exactly one ``g_P``; the stem before the blocks and the pooling and classifier after
them are shared by every path. For each length k, sets of k blocks are drawn uniformly at
random (all C(n, k) of them when there are at most ``samples``); those blocks are routed
through the branch, the others through the shortcut, and the norm of the input gradient is
recorded: ``||g_P||``, the Euclidean norm over the batch's (N, 3, H, W) gradient of the mean
cross-entropy loss. Over the batches and draws:

    mean_norm[k] = mean of ||g_P|| over the sampled paths of length k   (Fig. 6b: one path)
    total[k]     = C(n, k) * mean_norm[k]                               (Fig. 6c: all of them)

``total`` is a sum of sizes, not the size of a sum: the g_P of different paths can cancel.

A forward for every backward. A backward pass uses up its forward's cache (a convolution drops
its saved input as soon as its backward has read it, to free memory), so each routing gets its
own forward of the same batch. The model must be in eval mode, where the forward is
deterministic and leaves the running statistics alone: repeating it costs time, nothing else.
"""
import contextlib
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from ..inspect import array_norm, named_blocks
from ..nn import CrossEntropyLoss


def path_counts(n):
    """``[C(n, 0), ..., C(n, n)]``: how many of the 2^n paths of n blocks have each length k."""
    return [math.comb(n, k) for k in range(n + 1)]


def routable_blocks(model):
    """The residual blocks of ``model`` (a plain block has no add to route), in forward order."""
    return [block for _, block in named_blocks(model) if block.residual]


@contextlib.contextmanager
def routed(blocks, through_branch):
    """Inside the block, ``blocks[i]`` backpropagates through its branch only if ``i`` is in
    ``through_branch``, else through its shortcut only; every route is reset to None afterwards."""
    try:
        for index, block in enumerate(blocks):
            block.route = "branch" if index in through_branch else "shortcut"
        yield
    finally:
        for block in blocks:
            block.route = None


def input_gradient(model, x, y):
    """``dL/dx`` of the mean cross-entropy loss on one batch: a forward and a backward pass."""
    criterion = CrossEntropyLoss()
    criterion(model(x), y)
    return model.backward(criterion.backward())


def _choices(n, k, samples, rng):
    """``samples`` random k-subsets of range(n), or all of them when there are at most that many."""
    if math.comb(n, k) <= samples:
        return [set(chosen) for chosen in itertools.combinations(range(n), k)]
    return [set(rng.choice(n, size=k, replace=False).tolist()) for _ in range(samples)]


@dataclass
class PathGradients:
    """The measurement: per path length k, the norms ``||g_P||`` of the sampled paths."""
    blocks: int
    norms: dict = field(default_factory=dict)        # k -> list of ||g_P||
    full_norms: list = field(default_factory=list)   # ||dL/dx|| of the ordinary backward, per batch

    @property
    def lengths(self):
        return sorted(self.norms)

    @property
    def counts(self):
        return [math.comb(self.blocks, k) for k in self.lengths]

    @property
    def mean_norm(self):
        return [float(np.mean(self.norms[k])) for k in self.lengths]

    @property
    def total(self):
        return [count * mean for count, mean in zip(self.counts, self.mean_norm)]

    def carrying(self, fraction):
        """``(k_min, k_max, share_of_paths)``: the narrowest window of lengths around the largest
        ``total`` that holds ``fraction`` of the summed total, grown towards the larger neighbour,
        and the fraction of all 2^n paths it contains."""
        total, lengths = self.total, self.lengths
        low = high = int(np.argmax(total))
        while sum(total[low:high + 1]) < fraction * sum(total):
            left = total[low - 1] if low > 0 else -1.0
            right = total[high + 1] if high + 1 < len(total) else -1.0
            low, high = (low - 1, high) if left >= right else (low, high + 1)
        return lengths[low], lengths[high], sum(self.counts[low:high + 1]) / 2 ** self.blocks

    def as_dict(self):
        return {"blocks": self.blocks, "lengths": self.lengths, "paths": self.counts,
                "mean_norm": self.mean_norm, "total": self.total,
                "norms": {str(k): self.norms[k] for k in self.lengths}, "full_norms": self.full_norms}


def path_gradients(model, batches, samples=8, lengths=None, seed=0):
    """Measure ``||g_P||`` for sampled paths of each length (see the module docstring).

    ``batches``: ``(x, y)`` pairs (normalised float images, integer labels); ``samples``: paths
    drawn per length and batch; ``lengths``: the k to measure (default 0..n). The model must be in
    eval mode; its parameters' ``.grad`` are reset to None at the end.
    """
    if model.training:
        raise ValueError("path_gradients: put the model in eval mode first (model.eval()); a forward "
                         "in training mode would use batch statistics and change the running ones")
    blocks = routable_blocks(model)
    n = len(blocks)
    if n == 0:
        raise ValueError(f"path_gradients: {type(model).__name__} has no residual blocks to route")
    lengths = list(range(n + 1) if lengths is None else lengths)
    if any(not 0 <= k <= n for k in lengths):
        raise ValueError(f"path_gradients: lengths must lie in 0..{n} (the model has {n} residual "
                         f"blocks), got {lengths}")
    rng = np.random.default_rng(seed)
    result = PathGradients(n, {k: [] for k in lengths})
    for x, y in batches:
        result.full_norms.append(array_norm(input_gradient(model, x, y)))
        for k in lengths:
            for through_branch in _choices(n, k, samples, rng):
                with routed(blocks, through_branch):
                    result.norms[k].append(array_norm(input_gradient(model, x, y)))
    model.zero_grad()
    return result

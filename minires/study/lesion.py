"""Deleting blocks of a trained network at test time (Veit, Wilber, Belongie 2016, Sec. 4).

A residual block computes ``y = relu(F(x) + S(x))``. A lesion deletes its branch F and keeps
the shortcut S:

    y = relu(S(x))

For an identity shortcut that is ``x`` itself (``x >= 0``: it is the output of the previous
ReLU); for He et al.'s option A, the subsampled ``x`` with zero channels padded on (a
downsampling block still downsamples); for option B, ``relu(BN(conv1x1(x)))``. Nothing is
retrained, and the network runs in eval mode (running statistics).

A plain block (``residual=False``) has no shortcut. It can be deleted where its output has the
shape of its input (stride 1, as many channels out as in): then ``y = relu(x) = x``, its two
conv-BN layers replaced by the identity. Its downsampling blocks cannot be deleted.

Measured: the test error in percent, ``100 * (1 - accuracy)`` (``evaluate_accuracy``), of the
intact network; with each deletable block deleted alone; and with k blocks deleted at once,
for k = 1 ... m (the m deletable blocks), the k blocks drawn uniformly without replacement,
several draws per k. Seen as an ensemble of 2^n paths (``paths.py``), deleting one residual
block removes the 2^(n-1) paths through its branch and leaves the other half intact, and
deleting k leaves 2^(n-k); a plain network is a single path, and any deletion breaks it.
"""
import contextlib
import functools

import numpy as np

from ..backend import get_array_module
from ..inspect import named_blocks
from ..models.weights import evaluate_accuracy
from ..nn import Conv2d


def _shortcut_only(block, x):
    """The deleted block's forward: ``relu(S(x))``."""
    shortcut = x if block.downsample is None else block.downsample(x)
    return get_array_module(shortcut).maximum(shortcut, 0)


def can_delete(block):
    """A residual block always; a plain block when its branch keeps the shape of its input."""
    if block.residual:
        return True
    convs = [m for name, m in block.named_modules() if isinstance(m, Conv2d) and not name.startswith("downsample")]
    return convs[0].in_channels == convs[-1].out_channels and all(c.stride == (1, 1) for c in convs)


def deletable_blocks(model):
    """``(name, block)`` of every block of ``model`` that ``can_delete``, in forward order."""
    return [(name, block) for name, block in named_blocks(model) if can_delete(block)]


@contextlib.contextmanager
def deleted(blocks):
    """Inside the ``with``, every block in ``blocks`` computes ``relu(S(x))`` (forward only)."""
    for block in blocks:
        if not can_delete(block):
            raise ValueError(f"deleted: a plain {type(block).__name__} that changes the shape of its "
                             "input has no shortcut to keep; it cannot be deleted")
    try:
        for block in blocks:
            block.forward = functools.partial(_shortcut_only, block)  # shadows the class's forward
        yield
    finally:
        for block in blocks:
            block.__dict__.pop("forward", None)


def lesion_error(model, images, labels, blocks=(), batch_size=500):
    """Test error (%) of ``model`` (in eval mode) on uint8 ``images`` with ``blocks`` deleted."""
    with deleted(blocks):
        return 100 * (1 - evaluate_accuracy(model, images, labels, batch_size))


def lesion_study(model, images, labels, counts=None, draws=5, seed=0, batch_size=500):
    """The intact error, each deletable block deleted alone, and k random blocks deleted at once.

    Returns ``{"intact": error, "single": [{"block", "index", "downsampling", "error"}, ...],
    "random": {k: [error of each draw]}}``; ``counts``: the k to try (default 1..m, m deletable
    blocks); ``draws``: random sets of k blocks per k (one when k = m). Errors in percent.
    """
    candidates = deletable_blocks(model)
    all_blocks = [block for _, block in named_blocks(model)]
    counts = range(1, len(candidates) + 1) if counts is None else counts
    if any(not 1 <= k <= len(candidates) for k in counts):
        raise ValueError(f"lesion_study: counts must lie in 1..{len(candidates)} (the deletable blocks), "
                         f"got {list(counts)}")
    rng = np.random.default_rng(seed)
    single = [{"block": name, "index": all_blocks.index(block), "downsampling": block.downsample is not None,
               "error": lesion_error(model, images, labels, [block], batch_size)}
              for name, block in candidates]
    random = {}
    for k in counts:
        random[k] = [lesion_error(model, images, labels,
                                  [candidates[i][1] for i in rng.choice(len(candidates), k, replace=False)],
                                  batch_size)
                     for _ in range(1 if k == len(candidates) else draws)]
    return {"intact": lesion_error(model, images, labels, (), batch_size), "single": single, "random": random}

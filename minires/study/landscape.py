"""Loss landscapes (Li, Xu, Taylor, Studer, Goldstein 2018): the loss of trained weights along
filter-normalised random directions.

Around the trained weights theta*, with one or two directions delta, eta:

    1-D:  L(a)    = loss(theta* + a delta)                a in [-1, 1]      (the paper: 51 points)
    2-D:  L(a, b) = loss(theta* + a delta + b eta)        on a grid in [-1, 1]^2  (21 x 21)

Filter normalisation. A direction starts as ``d ~ N(0, I)`` in the shape of every weight and is
rescaled filter by filter,

    delta_j = d_j * ||theta_j|| / ||d_j||

for each filter j: one output channel of a convolution (``weight[j]``, shape (C_in, kh, kw)), one
output neuron of a linear layer (``weight[j]``, shape (in,)). Why: with batch norm after it, a
convolution's output does not change when its filter is scaled (the norm divides the scale out), so
a step of size 1 means nothing until it is measured against the filter's own size. With filter
normalisation ``a = 1`` moves every filter by its own norm, and landscapes of different networks
can be compared. Parameters with one dimension (biases, batch norm's weight and bias) get a zero
direction, and batch norm's running statistics, which are buffers, stay as trained (the paper's
``--xnorm filter --xignore biasbn --dir_type weights``). Two random directions in a space of 850,000
dimensions are nearly orthogonal; like the paper, we do not orthogonalise them.

The loss: the mean cross-entropy (and the accuracy) in evaluation mode (batch norm with its running
statistics, so that the loss is a function of the weights alone), on a fixed set of training images
without augmentation, given as a ``data.DataLoader`` (``shuffle=False``, no random transform).

Weights are restored after a sweep by copying back the arrays saved before it, not by subtracting
the last step (``theta + a delta - a delta`` is not ``theta`` in floating point). At ``a = b = 0`` the
weights are ``theta* + 0 * delta``, bit for bit the trained ones.

Long sweeps are chunked and resumable: with a ``path`` the directions, the axes, fingerprints
(SHA-256) of the weights and of the images, and the values computed so far are written to an
``.npz`` file after every ``save_every`` points (atomically); a later call with the same path goes
on with the missing points, after checking that everything else is the same. ``max_points`` stops a
call after that many new points, to split a sweep over several sessions.
"""
import hashlib
import itertools
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..backend import asnumpy, get_array_module
from ..io import atomic_write
from ..train import evaluate


def filter_normalized_direction(model, rng):
    """A random direction ``name -> array`` over the model's parameters (see the module docstring),
    drawn from the ``numpy.random.Generator`` ``rng``, on each parameter's device and in its dtype."""
    direction = OrderedDict()
    for name, p in model.named_parameters():
        xp = get_array_module(p.data)
        if p.data.ndim <= 1:  # biases and batch norm's weight and bias: no move
            direction[name] = xp.zeros_like(p.data)
            continue
        d = rng.standard_normal(p.shape)
        filters, weight = d.reshape(len(d), -1), asnumpy(p.data).astype(np.float64).reshape(len(d), -1)
        d = filters * (np.linalg.norm(weight, axis=1) / np.linalg.norm(filters, axis=1))[:, None]
        direction[name] = xp.asarray(d.reshape(p.shape), dtype=p.dtype)
    return direction


def random_directions(model, count, seed):
    """``count`` filter-normalised directions from one generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return [filter_normalized_direction(model, rng) for _ in range(count)]


def fingerprint(arrays):
    """SHA-256 of the names, shapes, dtypes and bytes of ``arrays`` (a dict or a list of arrays)."""
    digest = hashlib.sha256()
    items = arrays.items() if isinstance(arrays, dict) else enumerate(arrays)
    for name, array in items:
        array = np.ascontiguousarray(asnumpy(array))
        digest.update(f"{name}{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def set_weights(model, origin, directions, coefficients):
    """``theta = origin + sum_k c_k * direction_k`` for every parameter, written in place."""
    for name, p in model.named_parameters():
        value = origin[name].copy()
        for direction, c in zip(directions, coefficients):
            value += c * direction[name]
        p.data[...] = value


def sweep(model, directions, axes, loader, path=None, save_every=10, max_points=None, device="cpu",
          on_progress=None):
    """Loss and accuracy at every point of the grid ``axes[0] x axes[1] ...`` (one axis per direction).

    Returns ``{"axes": [...], "loss": array, "accuracy": array, "complete": bool}``, the arrays shaped
    like the grid (NaN where a point is not computed yet, when ``max_points`` stopped the call).
    ``on_progress(done, total)`` is called after every point. The model's parameters and its mode are
    restored exactly afterwards, also after an error or an interrupt; its buffers are never changed.
    """
    axes = [np.asarray(axis, dtype=np.float64) for axis in axes]
    if len(axes) != len(directions) or not axes:
        raise ValueError(f"landscape.sweep: one axis per direction, got {len(axes)} axes for "
                         f"{len(directions)} directions")
    if loader.shuffle:
        raise ValueError("landscape.sweep: the loader shuffles; the loss must be measured on fixed images "
                         "(shuffle=False, and no random transform)")
    state = _SweepState(path, model, directions, axes, loader)
    origin = OrderedDict((name, p.data.copy()) for name, p in model.named_parameters())
    was_training, new_points = model.training, 0
    try:
        for index in itertools.product(*(range(len(axis)) for axis in axes)):
            if not np.isnan(state.loss[index]):
                continue
            if max_points is not None and new_points >= max_points:
                break
            set_weights(model, origin, directions, [axis[i] for axis, i in zip(axes, index)])
            result = evaluate(model, loader, device=device, progress=False)
            state.loss[index], state.accuracy[index] = result["loss"], result["accuracy"]
            new_points += 1
            if new_points % save_every == 0:
                state.save()
            if on_progress is not None:
                on_progress(state.done(), state.loss.size)
    finally:
        for name, p in model.named_parameters():
            p.data[...] = origin[name]
        model.train(was_training)
        state.save()
    return {"axes": axes, "loss": state.loss, "accuracy": state.accuracy, "complete": state.done() == state.loss.size}


class _SweepState:
    """The values of a sweep, and the file that lets it resume (when a path is given)."""

    def __init__(self, path, model, directions, axes, loader):
        self.path = None if path is None else Path(path)
        self.record = {f"axis{k}": axis for k, axis in enumerate(axes)}
        for k, direction in enumerate(directions):
            self.record.update({f"direction{k}/{name}": asnumpy(d) for name, d in direction.items()})
        self.record["weights_sha256"] = np.array(fingerprint(model.state_dict()))
        self.record["images_sha256"] = np.array(fingerprint([loader.dataset.data, loader.dataset.targets]))
        shape = tuple(len(axis) for axis in axes)
        self.loss, self.accuracy = np.full(shape, np.nan), np.full(shape, np.nan)
        if self.path is not None and self.path.exists():
            self._resume()

    def _resume(self):
        with np.load(self.path, allow_pickle=False) as saved:
            different = [key for key, value in self.record.items()
                         if key not in saved.files or saved[key].shape != value.shape
                         or not np.array_equal(saved[key], value)]
            different += [key for key in saved.files if key not in self.record and key not in ("loss", "accuracy")]
            if different:
                raise ValueError(f"landscape.sweep: {self.path} holds a sweep of other {_what_differs(different)}; "
                                 "delete it or choose another path")
            self.loss[...], self.accuracy[...] = saved["loss"], saved["accuracy"]

    def done(self):
        return int(np.count_nonzero(~np.isnan(self.loss)))

    def save(self):
        if self.path is not None:
            with atomic_write(self.path) as f:
                np.savez(f, loss=self.loss, accuracy=self.accuracy, **self.record)


def _what_differs(keys):
    kinds = {"axis": "axes", "direction": "directions", "weights_sha256": "weights", "images_sha256": "images"}
    return " and ".join(sorted({kind for prefix, kind in kinds.items() for key in keys if key.startswith(prefix)}))

"""Input checks shared by the layers: each error names the layer, what it expected and what came.

``layer`` is a string (``"conv2d_forward"``) or a module (its ``repr`` is used), so that
both the pure functions and the modules report where the bad input arrived.
"""
import operator

import numpy as np

from ..backend import get_array_module


def layer_name(layer):
    return layer if isinstance(layer, str) else layer.extra_name()


def check_array(layer, x, what="input"):
    """An array with a shape and a NumPy dtype: not a list, not a torch tensor (whose dtype is torch's)."""
    if not (hasattr(x, "shape") and hasattr(x, "ndim") and isinstance(getattr(x, "dtype", None), np.dtype)):
        raise TypeError(f"{layer_name(layer)}: expected the {what} to be a NumPy or CuPy array, "
                        f"got {type(x).__module__}.{type(x).__name__}")


def check_float(layer, x, what="input"):
    """A floating-point array (float16/32/64)."""
    check_array(layer, x, what)
    if x.dtype.kind != "f":
        raise TypeError(f"{layer_name(layer)}: expected a floating-point {what} (float32 or float64), "
                        f"got dtype {x.dtype}")


def check_rank(layer, x, ranks, layout, what="input"):
    """``x.ndim`` is one of ``ranks``; ``layout`` names the axes, e.g. ``"(N, C, H, W)"``."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if x.ndim not in ranks:
        expected = " or ".join(f"{r}-D" for r in ranks)
        raise ValueError(f"{layer_name(layer)}: expected a {expected} {what} {layout}, "
                         f"got shape {tuple(x.shape)} ({x.ndim}-D)")


def check_dim(layer, x, axis, size, meaning, what="input"):
    """``x.shape[axis] == size``, e.g. the channel count."""
    if x.shape[axis] != size:
        raise ValueError(f"{layer_name(layer)}: expected {what} with {size} {meaning} (axis {axis}), "
                         f"got shape {tuple(x.shape)}")


def check_matching(layer, x, *params):
    """Parameters on the same device and of the same dtype as the input."""
    get_array_module(x, *params)  # raises on mixed devices
    for p in params:
        if p is not None and p.dtype != x.dtype:
            raise TypeError(f"{layer_name(layer)}: input dtype {x.dtype} does not match parameter dtype "
                            f"{p.dtype}; convert the input or call module.to(dtype=...)")


def check_same_shape(layer, got, expected_shape, what):
    """A gradient or target: an array of exactly the expected shape (nothing silently broadcast)."""
    check_array(layer, got, what)
    if tuple(got.shape) != tuple(expected_shape):
        raise ValueError(f"{layer_name(layer)}: expected {what} of shape {tuple(expected_shape)}, "
                         f"got {tuple(got.shape)}")


def check_pair(layer, value, what, minimum):
    """An int or a pair of ints (each ``>= minimum``), returned as a pair: kernel sizes, strides, ..."""
    try:
        pair = tuple(operator.index(v) for v in value) if isinstance(value, (tuple, list)) \
            else (operator.index(value),) * 2
    except TypeError:
        pair = ()
    if len(pair) != 2 or min(pair) < minimum:
        raise ValueError(f"{layer_name(layer)}: {what} must be an int or a pair of ints >= {minimum}, "
                         f"got {value!r}")
    return pair

"""Weight initialisation, with ``torch.nn.init``'s names and formulas.

Kaiming (He) initialisation keeps the variance of activations (``mode="fan_in"``) or of
gradients (``mode="fan_out"``) constant from layer to layer through ReLUs:
``std = gain / sqrt(fan)``, ``gain = sqrt(2 / (1 + a^2))`` for a leaky ReLU of slope ``a``
(``sqrt(2)`` for ReLU). For a conv weight of shape ``(C_out, C_in/groups, kh, kw)``,
``fan_in = C_in/groups * kh * kw`` and ``fan_out = C_out * kh * kw``.

Values are drawn on the host from ``minires.random.default_generator()`` and written into
the parameter in place, on its device and in its dtype.
"""
import math

from ..backend import get_array_module
from ..random import default_generator


def calculate_fans(shape):
    """``(fan_in, fan_out)`` of a weight shaped ``(out, in, *kernel)``."""
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need a weight of at least 2 dimensions, got shape {tuple(shape)}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def calculate_gain(nonlinearity, param=None):
    """PyTorch's recommended gains: 1 for linear/conv/sigmoid, sqrt(2) for ReLU, ..."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"init: unsupported nonlinearity {nonlinearity!r}")


def _write(param, values):
    xp = get_array_module(param.data)
    param.data[...] = xp.asarray(values, dtype=param.data.dtype)
    return param


def uniform_(param, a=0.0, b=1.0, generator=None):
    return _write(param, (generator or default_generator()).uniform(a, b, param.shape))


def normal_(param, mean=0.0, std=1.0, generator=None):
    return _write(param, (generator or default_generator()).normal(mean, std, param.shape))


def constant_(param, value):
    param.data[...] = value
    return param


def zeros_(param):
    return constant_(param, 0)


def ones_(param):
    return constant_(param, 1)


def _kaiming_std(shape, a, mode, nonlinearity):
    fan_in, fan_out = calculate_fans(shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(param, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    bound = math.sqrt(3.0) * _kaiming_std(param.shape, a, mode, nonlinearity)
    return uniform_(param, -bound, bound, generator)


def kaiming_normal_(param, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return normal_(param, 0.0, _kaiming_std(param.shape, a, mode, nonlinearity), generator)

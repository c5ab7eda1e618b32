"""Max, average and adaptive average pooling against PyTorch: overlapping windows, padding,
dilation, ceil_mode, odd sizes, stride 2 on even sizes, batch 1, 3-D input, ties, NaN and
infinities, negative inputs under padding, non-contiguous input; gradient checks; bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minires import gradcheck, nn
from minires.backend import is_channels_last
from minires.nn.functional import (adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward,
                                   avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward,
                                   max_pool2d_forward)

from tests.support.torch_helpers import assert_close, to_torch

TOLERANCES = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}


def _compare(layer, torch_fn, x, dy_seed=0, xp=np, exact_output=False):
    """Forward and backward of a minires module and of ``torch_fn``; returns nothing, asserts."""
    dtype = x.dtype.type
    tx = to_torch(x, requires_grad=True)
    ty = torch_fn(tx)
    dy = np.random.default_rng(dy_seed).standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(to_torch(dy))
    y = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    tol = dict(rtol=0, atol=0) if exact_output else TOLERANCES[dtype]
    assert_close(y, ty, what="output", **tol)
    assert_close(dx, tx.grad, what="input gradient", **TOLERANCES[dtype])


# (kernel_size, stride, padding, dilation, ceil_mode, input shape)
MAX_CASES = [
    (3, 2, 1, 1, False, (2, 3, 8, 8)),              # ResNet's stem pool: overlapping, stride 2 on even sizes
    (3, 2, 1, 1, False, (1, 2, 7, 9)),              # odd sizes, batch 1
    (2, None, 0, 1, False, (2, 3, 6, 7)),           # stride defaults to the kernel; odd width drops a column
    (3, 1, 1, 1, False, (2, 2, 5, 5)),              # stride 1: every position in up to 9 windows
    ((3, 2), (2, 1), (1, 0), (1, 2), False, (2, 2, 7, 8)),  # per-axis sizes, dilation
    (3, 2, 0, 1, True, (2, 2, 8, 8)),               # ceil_mode: a last, clipped window
    (2, 3, 1, 2, True, (1, 2, 9, 10)),              # stride > kernel (gaps), dilation, ceil_mode
    (4, 2, 2, 1, True, (1, 1, 5, 6)),               # padding = kernel/2 with ceil_mode
    (3, 2, 1, 1, False, (3, 7, 7)),                 # a 3-D (C, H, W) input
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel, stride, padding, dilation, ceil_mode, shape", MAX_CASES)
def test_max_pool_matches_torch(xp, dtype, kernel, stride, padding, dilation, ceil_mode, shape):
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    layer = nn.MaxPool2d(kernel, stride, padding, dilation, ceil_mode)
    _compare(layer, lambda t: F.max_pool2d(t, kernel, stride, padding, dilation, ceil_mode), x, xp=xp,
             exact_output=True)


@pytest.mark.parametrize("name, values", [
    ("all equal", np.zeros((2, 2, 6, 6))),
    ("after a ReLU", np.maximum(np.random.default_rng(2).standard_normal((2, 2, 7, 8)), 0)),
    ("few distinct values", np.random.default_rng(3).integers(-2, 3, (2, 2, 8, 7)).astype(np.float64)),
])
@pytest.mark.parametrize("kernel, stride, padding", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (2, 1, 0)])
def test_max_pool_ties_send_the_gradient_to_the_element_pytorch_picks(name, values, kernel, stride, padding):
    layer = nn.MaxPool2d(kernel, stride, padding)
    _compare(layer, lambda t: F.max_pool2d(t, kernel, stride, padding), values, exact_output=True)
    # and exactly one element per window receives it: the gradient sums to the sum of dy
    y, cache = max_pool2d_forward(values, kernel, stride, padding)
    dx = max_pool2d_backward(np.ones_like(y), cache)
    assert dx.sum() == y.size


def test_max_pool_nan_and_infinities_like_pytorch():
    rng = np.random.default_rng(4)
    for trial in range(20):
        x = rng.choice([0.0, 1.0, np.nan, -np.inf, np.inf], size=(2, 2, 6, 7), p=[.35, .25, .15, .2, .05])
        for kernel, stride, padding in ((3, 2, 1), (2, 2, 0), (3, 1, 1)):
            tx = to_torch(x, requires_grad=True)
            ty = F.max_pool2d(tx, kernel, stride, padding)
            dy = rng.standard_normal(tuple(ty.shape))
            ty.backward(to_torch(dy))
            y, cache = max_pool2d_forward(x, kernel, stride, padding)
            np.testing.assert_array_equal(y, ty.detach().numpy())  # NaN where PyTorch has NaN
            assert_close(max_pool2d_backward(dy, cache), tx.grad, what=f"trial {trial}")


def test_max_pool_pads_with_minus_infinity_not_zero():
    x = -1 - np.random.default_rng(5).random((2, 3, 6, 5))  # every value < -1
    y, cache = max_pool2d_forward(x, 3, 2, 1)
    assert (y < -1).all()
    _compare(nn.MaxPool2d(3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1), x, exact_output=True)
    windows_of_corner = x[:, :, :2, :2].reshape(2, 3, -1)
    np.testing.assert_array_equal(y[:, :, 0, 0], windows_of_corner.max(axis=-1))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kernel, stride, padding, ceil_mode, shape", [
    (3, 2, 1, False, (2, 3, 8, 8)), (3, 2, 1, True, (1, 2, 7, 9)), (2, None, 0, False, (2, 3, 6, 7)),
    ((3, 2), (1, 2), (1, 1), True, (2, 2, 5, 6)), (3, 3, 1, True, (1, 1, 7, 8)), (2, 1, 0, False, (3, 4, 5)),
])
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_matches_torch(xp, dtype, kernel, stride, padding, ceil_mode, shape, count_include_pad):
    x = np.random.default_rng(6).standard_normal(shape).astype(dtype)
    layer = nn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad)
    _compare(layer, lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad), x, xp=xp)


@pytest.mark.parametrize("divisor_override", [1, 5, -2])
def test_avg_pool_divisor_override_matches_torch(divisor_override):
    x = np.random.default_rng(7).standard_normal((2, 2, 7, 6))
    layer = nn.AvgPool2d(3, 2, 1, ceil_mode=True, divisor_override=divisor_override)
    _compare(layer, lambda t: F.avg_pool2d(t, 3, 2, 1, True, True, divisor_override), x)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, output_size", [
    ((2, 3, 7, 6), 1), ((2, 3, 4, 4), (1, 1)),          # global pooling (the fast path)
    ((2, 3, 8, 6), (4, 3)), ((1, 2, 6, 6), 2),          # divisible: disjoint blocks
    ((2, 3, 7, 6), (3, 4)), ((2, 2, 5, 9), (2, 4)),     # overlapping bins
    ((1, 2, 3, 4), (5, 7)), ((2, 2, 5, 7), (None, 3)),  # more bins than rows; None keeps a size
    ((2, 5, 5), (2, None)),                             # a 3-D (C, H, W) input
])
def test_adaptive_avg_pool_matches_torch(xp, dtype, shape, output_size):
    x = np.random.default_rng(8).standard_normal(shape).astype(dtype)
    _compare(nn.AdaptiveAvgPool2d(output_size), lambda t: F.adaptive_avg_pool2d(t, output_size), x, xp=xp)


@pytest.mark.parametrize("make_layer, torch_fn", [
    (lambda: nn.MaxPool2d(3, 2, 1), lambda t: F.max_pool2d(t, 3, 2, 1)),
    (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     lambda t: F.avg_pool2d(t, 3, 2, 1, count_include_pad=False)),
    (lambda: nn.AdaptiveAvgPool2d((3, 2)), lambda t: F.adaptive_avg_pool2d(t, (3, 2))),
    (lambda: nn.AdaptiveAvgPool2d(1), lambda t: F.adaptive_avg_pool2d(t, 1)),
], ids=["max", "avg", "adaptive", "global"])
@pytest.mark.parametrize("make_view", [
    lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),  # channels-last memory
    lambda a: a[:, ::2, 1:, ::-1],                                                  # strided, reversed
], ids=["channels_last", "strided"])
def test_non_contiguous_input_matches_torch_and_is_left_unmodified(make_layer, torch_fn, make_view):
    x = make_view(np.random.default_rng(9).standard_normal((2, 6, 8, 7)))
    assert not x.flags.c_contiguous
    before = x.copy()
    _compare(make_layer(), torch_fn, x)
    np.testing.assert_array_equal(x, before)


def test_float32_stays_float32():
    x = np.random.default_rng(10).standard_normal((2, 3, 8, 8)).astype(np.float32)
    for layer in (nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                  nn.AdaptiveAvgPool2d((3, 5)), nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d(4)):
        y = layer(x)
        assert y.dtype == np.float32 and layer.backward(np.ones_like(y)).dtype == np.float32, layer


def test_max_pool_cache_is_one_small_index_per_output():
    x = np.random.default_rng(11).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, cache = max_pool2d_forward(x, 3, 2, 1)
    argmax = cache.argmax
    assert argmax.dtype == np.int8 and argmax.shape == y.shape == (2, 3, 4, 4)
    windows = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    rows, cols = np.divmod(argmax, 3)
    o, q = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    np.testing.assert_array_equal(np.take_along_axis(windows.reshape(2, 3, -1),
                                                     ((2 * o + rows) * 10 + 2 * q + cols).reshape(2, 3, -1),
                                                     axis=-1).reshape(y.shape), y)


def test_reprs_match_torch():
    pairs = [(nn.MaxPool2d(3, 2, 1), torch.nn.MaxPool2d(3, 2, 1)),
             (nn.MaxPool2d((2, 3), dilation=2, ceil_mode=True), torch.nn.MaxPool2d((2, 3), dilation=2, ceil_mode=True)),
             (nn.AvgPool2d(2), torch.nn.AvgPool2d(2)), (nn.AvgPool2d(3, 1, 1), torch.nn.AvgPool2d(3, 1, 1)),
             (nn.AdaptiveAvgPool2d((1, 1)), torch.nn.AdaptiveAvgPool2d((1, 1))),
             (nn.AdaptiveAvgPool2d((None, 3)), torch.nn.AdaptiveAvgPool2d((None, 3)))]
    for ours, theirs in pairs:
        assert repr(ours) == repr(theirs)


# -- gradient checks (float64, random upstream gradient, distinct values: no near-ties) ---------------
def _distinct(shape, seed):
    """A random permutation of well-separated values: no two within a window differ by < 0.1."""
    values = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape)
    return values * 0.1 - 1.0


@pytest.mark.parametrize("layer", [
    nn.MaxPool2d(3, 2, 1), nn.MaxPool2d((3, 2), (1, 2), (1, 1), dilation=(1, 2), ceil_mode=True),
    nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), nn.AvgPool2d(2, 1),
    nn.AvgPool2d(3, 2, 1, divisor_override=4),
    nn.AdaptiveAvgPool2d((3, 4)), nn.AdaptiveAvgPool2d(1), nn.AdaptiveAvgPool2d((2, None)),
], ids=repr)
def test_gradcheck(layer):
    report = gradcheck.check_module(layer, _distinct((2, 2, 6, 5), 12), seed=13)
    assert report.ok, str(report)


def test_gradcheck_functions():
    x = _distinct((1, 2, 5, 7), 14)
    for forward, backward in ((lambda a: max_pool2d_forward(a, 2, 2, 1, ceil_mode=True), max_pool2d_backward),
                              (lambda a: avg_pool2d_forward(a, 3, 2, 1, count_include_pad=False), avg_pool2d_backward),
                              (lambda a: adaptive_avg_pool2d_forward(a, (4, 3)), adaptive_avg_pool2d_backward)):
        assert gradcheck.check_function(forward, backward, [x], seed=15).ok


# -- bad input ---------------------------------------------------------------------------------------
def test_kernel_larger_than_the_padded_input():
    x = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=6.*larger than the padded input.*"
                                         r"\(1, 2, 3, 3\) padded by \(1, 1\) gives output size \(0, 0\)"):
        nn.MaxPool2d(6, padding=1)(x)
    with pytest.raises(ValueError, match=r"AvgPool2d\(kernel_size=\(2, 4\).*larger than the padded input"):
        nn.AvgPool2d((2, 4))(x)
    with pytest.raises(ValueError, match=r"max_pool2d_forward: kernel \(3, 3\) \(dilation \(2, 2\)\) is larger"):
        max_pool2d_forward(x, 3, dilation=2)


def test_padding_at_most_half_the_kernel():
    x = np.zeros((1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=3, .*at most half.*padding=\(2, 2\)"):
        nn.MaxPool2d(3, padding=2)(x)
    with pytest.raises(ValueError, match=r"avg_pool2d_forward: padding should be at most half"):
        avg_pool2d_forward(x, 2, padding=(0, 2))


def test_bad_input_rank_and_dtype():
    for layer in (nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1)):
        name = type(layer).__name__
        with pytest.raises(ValueError, match=rf"{name}\(.*3-D or 4-D input.*got shape \(4, 4\)"):
            layer(np.zeros((4, 4)))
        with pytest.raises(ValueError, match=rf"{name}\(.*got shape \(1, 1, 1, 4, 4\)"):
            layer(np.zeros((1, 1, 1, 4, 4)))
        with pytest.raises(TypeError, match=rf"{name}\(.*floating-point input.*int32"):
            layer(np.zeros((1, 1, 4, 4), np.int32))
        with pytest.raises(RuntimeError, match=rf"{name}\(.*backward called before forward"):
            layer.backward(np.zeros((1, 1, 2, 2)))
        y = layer(np.zeros((1, 2, 4, 4)))
        with pytest.raises(ValueError, match=r"expected upstream gradient of shape .*got \(1, 2, 9\)"):
            layer.backward(np.zeros((1, 2, 9)))
        assert y.shape[:2] == (1, 2)


def test_bad_hyper_parameters():
    for bad in (0, -1, (2,), (2, 2, 2), 1.5, "2"):
        with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=.*\): kernel_size must be an int or a pair "
                                             r"of ints >= 1"):
            nn.MaxPool2d(bad)
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=2, stride=0.*\): stride must be"):
        nn.MaxPool2d(2, stride=0)
    with pytest.raises(ValueError, match=r"MaxPool2d\(.*dilation=0.*\): dilation must be"):
        nn.MaxPool2d(2, dilation=0)
    with pytest.raises(ValueError, match=r"AvgPool2d\(kernel_size=2, stride=2, padding=-1\): padding must be an "
                                         r"int or a pair of ints >= 0"):
        nn.AvgPool2d(2, padding=-1)
    with pytest.raises(ValueError, match="divisor_override must be a non-zero integer"):
        nn.AvgPool2d(2, divisor_override=0)(np.zeros((1, 1, 4, 4)))
    for bad in (0, (2, 0), (1, 2, 3), "a", 2.5, (-1, None)):
        with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d\(output_size=.*\): output_size must be a "
                                             r"positive int"):
            nn.AdaptiveAvgPool2d(bad)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d_forward: output_size must be"):
        adaptive_avg_pool2d_forward(np.zeros((1, 1, 4, 4)), (0, 1))


@pytest.mark.parametrize("output_size", [1, (2, 4)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_adaptive_avg_pool_gradient_keeps_the_input_layout(output_size, channels_last):
    """A channels-last input gets a channels-last gradient (the residual adds stay fast)."""
    x = np.random.default_rng(10).standard_normal((2, 3, 4, 8)).astype(np.float32)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    layer = nn.AdaptiveAvgPool2d(output_size)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert is_channels_last(dx) == channels_last
    bin_size = (4 // y.shape[2]) * (8 // y.shape[3])
    np.testing.assert_array_equal(dx, np.full(x.shape, 1 / bin_size, dtype=np.float32))

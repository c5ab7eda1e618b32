"""Dropout: statistics of the mask, PyTorch's scaling and edge cases, eval identity, gradient
checks with a fixed mask, dtypes, reproducibility and bad input."""
import numpy as np
import pytest
import torch

import minires
from minires import gradcheck, nn
from minires.backend import asnumpy
from minires.nn.functional import dropout_backward, dropout_forward

from tests.support.torch_helpers import to_torch


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_keeps_a_fraction_1_minus_p_scaled_like_pytorch(xp, p, dtype):
    minires.manual_seed(0)
    x = xp.ones((200, 500), dtype=dtype)  # 100,000 draws: the kept fraction is within +-0.008 (5 sigma)
    layer = nn.Dropout(p)
    y = layer(x)
    dy = xp.asarray(np.random.default_rng(0).standard_normal(x.shape).astype(dtype))
    dx = layer.backward(dy)
    y, dx, dy = asnumpy(y), asnumpy(dx), asnumpy(dy)
    kept = y != 0
    torch_y = torch.nn.functional.dropout(torch.ones(1000, dtype=to_torch(y).dtype), p)
    torch_scale = torch_y[torch_y != 0][0].item()

    assert y.dtype == dtype and dx.dtype == dtype
    assert abs(kept.mean() - (1 - p)) < 0.008
    np.testing.assert_array_equal(y[kept], np.asarray(torch_scale, dtype))  # 1 / (1 - p), as PyTorch
    np.testing.assert_allclose(y.mean(), 1.0, atol=0.03)  # inverted dropout keeps the expectation
    np.testing.assert_array_equal(dx, np.where(kept, dy * dtype(torch_scale), 0))


def test_dropout_is_the_identity_in_eval_mode_and_for_p_0(xp):
    x = xp.asarray(np.random.default_rng(1).standard_normal((3, 4)))
    dy = xp.ones((3, 4))
    layer = nn.Dropout(0.5).eval()
    assert layer(x) is x and layer.backward(dy) is dy
    zero = nn.Dropout(0.0)
    assert zero(x) is x and zero.backward(dy) is dy
    y, cache = dropout_forward(x, 0.5, training=False)
    assert y is x and dropout_backward(dy, cache) is dy


def test_dropout_p_1_gives_zeros_like_pytorch():
    x = np.array([np.nan, np.inf, -2.0, 3.0], np.float32)
    with np.errstate(invalid="ignore"):  # inf * 0
        y, cache = dropout_forward(x, 1.0)
    expected = torch.nn.functional.dropout(to_torch(x), 1.0).numpy()
    np.testing.assert_array_equal(y, expected)  # 0 * x: NaN and inf give NaN, as in PyTorch
    np.testing.assert_array_equal(dropout_backward(np.ones(4, np.float32), cache), np.zeros(4))
    assert y.dtype == np.float32


def test_dropout_gradcheck_with_a_fixed_mask():
    x = np.random.default_rng(2).standard_normal((3, 2, 5))

    def forward(x):  # the same seed each call: the numerical passes see the analytic pass's mask
        return dropout_forward(x, 0.4, training=True, generator=np.random.default_rng(7))

    report = gradcheck.check_function(forward, dropout_backward, [x])
    assert report.ok, report
    assert gradcheck.check_module(nn.Dropout(0.4).eval(), x).ok


def test_dropout_masks_follow_the_seed_and_the_generator():
    x = np.ones((4, 6), np.float32)
    minires.manual_seed(3)
    first = nn.Dropout(0.5)(x)
    second = nn.Dropout(0.5)(x)
    minires.manual_seed(3)
    np.testing.assert_array_equal(nn.Dropout(0.5)(x), first)
    assert not np.array_equal(first, second)  # a fresh mask per forward
    a, _ = dropout_forward(x, 0.5, generator=np.random.default_rng(5))
    b, _ = dropout_forward(x, 0.5, generator=np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_dropout_leaves_a_non_contiguous_input_unmodified():
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32).T
    before = x.copy()
    y, cache = dropout_forward(x, 0.3)
    keep, scale = cache.keep, cache.scale
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(y, np.where(keep, before * np.float32(scale), 0))
    assert keep.dtype == bool and keep.shape == x.shape


def test_dropout_under_no_grad_still_drops_but_keeps_nothing():
    layer = nn.Dropout(0.5)
    with minires.no_grad():
        y = layer(np.ones((10, 10), np.float32))
    assert (y == 0).any() and (y == 2).any()
    with pytest.raises(RuntimeError, match=r"Dropout\(p=0.5\): backward called after a forward under"):
        layer.backward(y)


def test_dropout_bad_input():
    with pytest.raises(ValueError, match="Dropout: dropout probability has to be between 0 and 1, but got 1.5"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="dropout_forward: dropout probability has to be "
                                         "between 0 and 1, but got -0.1"):
        dropout_forward(np.ones(3), -0.1)
    with pytest.raises(ValueError, match="dropout probability has to be between 0 and 1, but got 0.5"):
        nn.Dropout("0.5")
    with pytest.raises(TypeError, match=r"Dropout\(p=0.5\): expected a floating-point input.*int64"):
        nn.Dropout()(np.arange(4))
    with pytest.raises(RuntimeError, match=r"Dropout\(p=0.5\): backward called before forward"):
        nn.Dropout().backward(np.ones(3))
    _, cache = dropout_forward(np.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match=r"dropout_backward: expected upstream gradient of "
                                         r"shape \(2, 3\), got \(3, 2\)"):
        dropout_backward(np.ones((3, 2)), cache)

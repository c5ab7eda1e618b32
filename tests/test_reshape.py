"""Flatten and Identity: shapes and gradients against PyTorch, views, gradient checks, bad input."""
import numpy as np
import pytest
import torch

from minires import gradcheck, nn
from minires.nn.functional import flatten_backward, flatten_forward

from tests.support.torch_helpers import assert_close, to_torch


@pytest.mark.parametrize("shape,start_dim,end_dim", [
    ((2, 3, 4, 5), 1, -1), ((2, 3, 4, 5), 0, -1), ((2, 3, 4, 5), 1, 2), ((2, 3, 4, 5), -3, -2),
    ((2, 3, 4, 5), 2, 2), ((1, 3), 1, -1), ((4,), 0, -1), ((), 0, -1), ((3, 0, 2), 1, -1)])
def test_flatten_matches_torch(xp, shape, start_dim, end_dim):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    layer = nn.Flatten(start_dim, end_dim)
    y = layer(xp.asarray(x))
    ty = torch.nn.Flatten(start_dim, end_dim)(to_torch(x))
    dy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    dx = layer.backward(xp.asarray(dy))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert_close(y, ty, rtol=0, atol=0)
    assert_close(dx, dy.reshape(shape), rtol=0, atol=0)


def test_flatten_returns_a_view_when_it_can_and_handles_non_contiguous_input():
    x = np.random.default_rng(1).standard_normal((2, 3, 4))
    y, _ = flatten_forward(x)
    assert np.shares_memory(x, y)
    transposed = x.transpose(0, 2, 1)  # (2, 4, 3), not C-contiguous: the reshape copies
    before = transposed.copy()
    y, cache = flatten_forward(transposed)
    assert_close(y, torch.flatten(to_torch(before), 1))
    np.testing.assert_array_equal(transposed, before)
    np.testing.assert_array_equal(flatten_backward(y, cache), before)


def test_flatten_and_identity_gradcheck():
    x = np.random.default_rng(2).standard_normal((2, 3, 2))
    assert gradcheck.check_module(nn.Flatten(), x).ok
    assert gradcheck.check_module(nn.Flatten(0, 1), x).ok
    assert gradcheck.check_module(nn.Identity(), x).ok


def test_identity_passes_arrays_through():
    layer = nn.Identity(54, unused="argument")  # like PyTorch, arguments are ignored
    x, dy = np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)
    assert layer(x) is x and layer.backward(dy) is dy
    assert repr(layer) == repr(torch.nn.Identity())
    with pytest.raises(RuntimeError, match=r"Identity\(\): backward called before forward"):
        layer.backward(dy)


def test_flatten_bad_input():
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=1, end_dim=-1\): dimension out of range "
                                         r"\(expected to be in range of \[-1, 0\], but got 1\)"):
        nn.Flatten()(np.ones(5))
    with pytest.raises(ValueError, match=r"flatten_forward: start_dim \(2\) cannot come after end_dim \(1\) "
                                         r"for an input of shape \(5, 3, 2\)"):
        flatten_forward(np.ones((5, 3, 2)), 2, 1)
    with pytest.raises(TypeError, match=r"Flatten\(start_dim=1, end_dim=-1\): expected the input to "
                                        r"be a NumPy or CuPy array, got builtins.list"):
        nn.Flatten()([[1, 2]])
    with pytest.raises(RuntimeError, match=r"Flatten\(start_dim=1, end_dim=-1\): backward called before forward"):
        nn.Flatten().backward(np.ones((2, 6)))
    _, cache = flatten_forward(np.ones((2, 3, 2)))
    with pytest.raises(ValueError, match=r"flatten_backward: expected upstream gradient of "
                                         r"shape \(2, 6\), got \(6, 2\)"):
        flatten_backward(np.ones((6, 2)), cache)

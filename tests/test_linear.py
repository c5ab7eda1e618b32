"""Linear against PyTorch (1-D, 2-D and 3-D inputs, with and without bias), gradient checks,
initialisation, dtypes and bad input."""
import math

import numpy as np
import pytest
import torch

import minires
from minires import gradcheck, nn
from minires.nn.functional import linear_backward, linear_forward

from tests.support.torch_helpers import assert_close, copy_module_weights, to_torch

TOLERANCES = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7), (7,), (1, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(xp, dtype, shape, bias):
    rng = np.random.default_rng(0)
    layer = nn.Linear(7, 4, bias=bias).to(dtype=dtype)
    reference = torch.nn.Linear(7, 4, bias=bias, dtype=torch.float64 if dtype == np.float64 else torch.float32)
    copy_module_weights(layer, reference)
    layer.to("cpu" if xp is np else "cuda")
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal((*shape[:-1], 4)).astype(dtype)

    y = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dy))
    tx = to_torch(x, requires_grad=True)
    ty = reference(tx)
    ty.backward(to_torch(dy))

    tol = TOLERANCES[dtype]
    assert y.dtype == dtype and dx.dtype == dtype and layer.weight.grad.dtype == dtype
    assert_close(y, ty, what="output", **tol)
    assert_close(dx, tx.grad, what="input gradient", **tol)
    assert_close(layer.weight.grad, reference.weight.grad, what="weight gradient", **tol)
    if bias:
        assert layer.bias.grad.dtype == dtype
        assert_close(layer.bias.grad, reference.bias.grad, what="bias gradient", **tol)
    else:
        assert layer.bias is None and list(layer.state_dict()) == ["weight"]


def test_linear_non_contiguous_input_is_left_unmodified():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3, 5)).transpose(1, 0, 2)[:, ::2]  # (3, 3, 5), strided
    before = x.copy()
    w, b = rng.standard_normal((2, 5)), rng.standard_normal(2)
    y, cache = linear_forward(x, w, b)
    dx, dw, db = linear_backward(np.ones_like(y), cache)
    np.testing.assert_array_equal(x, before)
    tx, tw, tb = (to_torch(a, requires_grad=True) for a in (before, w, b))
    torch.nn.functional.linear(tx, tw, tb).sum().backward()
    for ours, theirs in ((y, torch.nn.functional.linear(tx, tw, tb)), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        assert_close(ours, theirs)


def test_linear_gradcheck():
    rng = np.random.default_rng(2)
    assert gradcheck.check_module(nn.Linear(5, 3), rng.standard_normal((2, 3, 5))).ok
    assert gradcheck.check_module(nn.Linear(4, 2, bias=False), rng.standard_normal((1, 4))).ok
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    assert gradcheck.check_function(linear_forward, linear_backward, [x, w, b]).ok
    assert gradcheck.check_function(linear_forward, linear_backward, [x, w, None]).ok


def test_linear_gradients_accumulate_over_two_backward_passes():
    layer = nn.Linear(3, 2)
    x = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    layer(x)
    layer.backward(np.ones((4, 2), np.float32))
    first = layer.weight.grad.copy()
    layer(x)
    layer.backward(np.ones((4, 2), np.float32))
    np.testing.assert_allclose(layer.weight.grad, 2 * first, rtol=1e-6)


def test_linear_initialisation_follows_pytorch():
    minires.manual_seed(0)
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p.data).max() <= bound
        assert np.abs(p.data).max() > 0.99 * bound  # uniform over the whole interval
    np.testing.assert_allclose(layer.weight.data.std(), bound / math.sqrt(3), rtol=0.02)  # U(-a, a): std a/sqrt(3)
    minires.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.data, layer.weight.data)
    assert repr(layer) == repr(torch.nn.Linear(400, 300))
    empty = nn.Linear(0, 3)
    assert empty.weight.shape == (3, 0)
    np.testing.assert_array_equal(empty.bias.data, 0)  # PyTorch: bound 0 when fan_in is 0
    np.testing.assert_array_equal(empty(np.ones((2, 0), np.float32)), np.zeros((2, 3)))


def test_linear_bad_input():
    layer = nn.Linear(4, 3)
    name = r"Linear\(in_features=4, out_features=3, bias=True\)"
    with pytest.raises(ValueError, match=name + r": expected input with 4 features \(axis -1\), got shape \(2, 5\)"):
        layer(np.ones((2, 5), np.float32))
    with pytest.raises(TypeError, match=name + r": expected a floating-point input.*int64"):
        layer(np.ones((2, 4), np.int64))
    with pytest.raises(ValueError, match=name + r": expected an input of shape \(\*, in_features\), got a 0-d array"):
        layer(np.ones((), np.float32))
    with pytest.raises(TypeError, match=name + r": input dtype float64 does not match parameter dtype float32"):
        layer(np.ones((2, 4)))
    with pytest.raises(RuntimeError, match=name + ": backward called before forward"):
        layer.backward(np.ones((2, 3), np.float32))
    layer(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"linear_backward: expected upstream gradient of "
                                         r"shape \(2, 3\), got \(3, 2\)"):
        layer.backward(np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"linear_forward: expected bias of shape \(3,\), got \(4,\)"):
        linear_forward(np.ones((2, 4)), np.ones((3, 4)), np.ones(4))
    with pytest.raises(ValueError, match=r"linear_forward: expected a 2-D weight \(out_features, "
                                         r"in_features\), got shape \(3, 4, 1\)"):
        linear_forward(np.ones((2, 4)), np.ones((3, 4, 1)))
    with pytest.raises(ValueError, match=r"Linear: in_features must be a non-negative integer, got -1"):
        nn.Linear(-1, 3)
    with pytest.raises(ValueError, match=r"Linear: out_features must be a non-negative integer, got 2.5"):
        nn.Linear(3, 2.5)

"""ReLU and Sigmoid against PyTorch, gradient checks, dtypes, and bad input."""
import numpy as np
import pytest
import torch

from minires import gradcheck, nn
from minires.backend import asnumpy
from minires.nn.functional import relu_backward, relu_forward, sigmoid_backward, sigmoid_forward

from tests.support.torch_helpers import assert_close, to_torch


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 0), (np.float32, 0)])
def test_relu_matches_torch(xp, dtype, rtol):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 7)).astype(dtype)
    x[0, 0, 0, :3] = 0.0  # the kink: PyTorch's gradient there is 0
    dy = rng.standard_normal(x.shape).astype(dtype)
    layer = nn.ReLU()
    y = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dy))
    tx = to_torch(x, requires_grad=True)
    ty = torch.relu(tx)
    ty.backward(to_torch(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, ty, rtol=rtol, atol=0)
    assert_close(dx, tx.grad, rtol=rtol, atol=0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_relu_nan_and_inf_follow_torch_bit_for_bit(xp, dtype):
    """A NaN output passes its gradient; a dropped gradient is 0 even when it is inf or NaN."""
    x = np.array([np.nan, -1, 0, -0.0, 2, 3, -4, 5], dtype=dtype)
    dy = np.array([1, np.nan, np.inf, 7, -np.inf, np.nan, -np.inf, -0.0], dtype=dtype)
    layer = nn.ReLU()
    layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dy))
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(dy))
    assert dx.dtype == dtype
    np.testing.assert_array_equal(asnumpy(dx).view(f"u{x.itemsize}"),
                                  tx.grad.numpy().view(f"u{x.itemsize}"))


def test_relu_gradcheck_and_non_contiguous_input_left_unmodified():
    x = np.random.default_rng(1).standard_normal((5, 4, 3)).transpose(2, 0, 1)
    before = x.copy()
    assert gradcheck.check_function(relu_forward, relu_backward, [x]).ok
    y, _ = relu_forward(x)
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(y, np.maximum(before, 0))


def test_relu_bad_input():
    with pytest.raises(TypeError, match=r"relu_forward: expected a floating-point input.*int64"):
        nn.ReLU()(np.arange(4))
    _, cache = relu_forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"relu_backward: expected upstream gradient of shape \(2, 3\), got \(3, 2\)"):
        relu_backward(np.ones((3, 2)), cache)


# float32: where y is near 1, a last-bit difference in y is a 1e-6 relative difference in 1 - y
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-14), (np.float32, 1e-5)])
def test_sigmoid_matches_torch(xp, dtype, rtol):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((2, 3, 4, 5)) * 8).astype(dtype)
    x[0, 0, 0, :4] = [0.0, -800.0, 800.0, -30.0]  # exp(800) overflows: the formula must not form it
    dy = rng.standard_normal(x.shape).astype(dtype)
    layer = nn.Sigmoid()
    with np.errstate(over="raise"):
        y = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(dy))
    tx = to_torch(x, requires_grad=True)
    ty = torch.sigmoid(tx)
    ty.backward(to_torch(dy))
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, ty, rtol=rtol, atol=0)
    assert_close(dx, tx.grad, rtol=rtol, atol=1e-300)


def test_sigmoid_gradcheck_and_bad_input():
    x = np.random.default_rng(3).standard_normal((4, 3, 2)) * 3
    assert gradcheck.check_function(sigmoid_forward, sigmoid_backward, [x]).ok
    assert gradcheck.check_module(nn.Sigmoid(), x).ok
    with pytest.raises(TypeError, match=r"sigmoid_forward: expected a floating-point input.*int64"):
        nn.Sigmoid()(np.arange(4))
    _, cache = sigmoid_forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"sigmoid_backward: expected upstream gradient of shape \(2, 3\)"):
        sigmoid_backward(np.ones((3, 2)), cache)

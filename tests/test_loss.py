"""CrossEntropyLoss against PyTorch (label smoothing, extreme logits, float32), gradient checks,
the upstream gradient, dtypes and bad input."""
import warnings

import numpy as np
import pytest
import torch

from minires import gradcheck, nn
from minires.nn.functional import cross_entropy_backward, cross_entropy_forward, softmax_cross_entropy

from tests.support.torch_helpers import assert_close, to_torch

TOLERANCES = {np.float64: dict(rtol=1e-10, atol=1e-14), np.float32: dict(rtol=1e-5, atol=1e-6)}


def torch_loss_and_grad(logits, targets, label_smoothing):
    tz = to_torch(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(tz, to_torch(targets).long(), label_smoothing=label_smoothing)
    loss.backward()
    return loss, tz.grad


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("target_dtype", [np.int64, np.int32, np.uint8])
def test_cross_entropy_matches_torch(xp, label_smoothing, dtype, target_dtype):
    rng = np.random.default_rng(0)
    logits = (3 * rng.standard_normal((7, 5))).astype(dtype)
    targets = rng.integers(0, 5, 7).astype(target_dtype)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    loss = criterion(xp.asarray(logits), xp.asarray(targets))
    dlogits = criterion.backward()
    expected_loss, expected_grad = torch_loss_and_grad(logits, targets, label_smoothing)
    assert loss.shape == () and loss.dtype == dtype and dlogits.dtype == dtype
    assert_close(loss, expected_loss, what="loss", **TOLERANCES[dtype])
    assert_close(dlogits, expected_grad, what="dlogits", **TOLERANCES[dtype])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cross_entropy_is_stable_for_extreme_logits(label_smoothing, dtype):
    logits = np.array([[1e4, -1e4, 0.0],      # confident and right
                       [-1e4, 1e4, 3.0],      # confident and wrong: loss 2e4
                       [1e4, 1e4, 1e4],       # a three-way tie at a huge value: log 3
                       [-1e4, -1e4, -1e4]], dtype=dtype)
    targets = np.array([0, 0, 2, 1])
    loss, dlogits = softmax_cross_entropy(logits, targets, label_smoothing)
    expected_loss, expected_grad = torch_loss_and_grad(logits, targets, label_smoothing)
    assert np.isfinite(loss) and np.isfinite(dlogits).all()
    assert loss.dtype == dtype and dlogits.dtype == dtype
    assert_close(loss, expected_loss, **TOLERANCES[dtype])
    assert_close(dlogits, expected_grad, **TOLERANCES[dtype])


@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_gradcheck(label_smoothing):
    rng = np.random.default_rng(1)
    logits, targets = rng.standard_normal((4, 6)), np.array([0, 5, 2, 2])
    report = gradcheck.check_function(lambda z: cross_entropy_forward(z, targets, label_smoothing),
                                      cross_entropy_backward, [logits])
    assert report.ok, report
    batch_of_one = gradcheck.check_function(lambda z: cross_entropy_forward(z, np.array([1]), label_smoothing),
                                            cross_entropy_backward, [rng.standard_normal((1, 3))])
    assert batch_of_one.ok, batch_of_one


def test_cross_entropy_upstream_gradient_scales_and_keeps_float32():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((3, 4)).astype(np.float32)
    targets = np.array([3, 0, 1])
    criterion = nn.CrossEntropyLoss()
    criterion(logits, targets)
    unit = criterion.backward()
    criterion(logits, targets)
    scaled = criterion.backward(np.array(2.5))  # a float64 0-d upstream gradient
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, 2.5 * unit, rtol=1e-6)
    loss, cache = cross_entropy_forward(logits, targets)
    np.testing.assert_array_equal(cross_entropy_backward(1.0, cache), unit)
    np.testing.assert_array_equal(softmax_cross_entropy(logits, targets)[1], unit)
    assert isinstance(loss, np.ndarray) and loss.dtype == np.float32 and loss.shape == ()


def test_cross_entropy_non_contiguous_logits_are_left_unmodified():
    logits = np.random.default_rng(3).standard_normal((5, 4)).T  # (4, 5), Fortran order
    before = logits.copy()
    targets = np.array([4, 0, 0, 2])
    loss, dlogits = softmax_cross_entropy(logits, targets, 0.1)
    np.testing.assert_array_equal(logits, before)
    expected_loss, expected_grad = torch_loss_and_grad(before, targets, 0.1)
    assert_close(loss, expected_loss)
    assert_close(dlogits, expected_grad)


def test_cross_entropy_of_an_empty_batch_is_nan_like_pytorch():
    logits, targets = np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy: "mean of empty slice"
        loss, dlogits = softmax_cross_entropy(logits, targets)
    expected_loss, expected_grad = torch_loss_and_grad(logits, targets, 0.0)
    assert np.isnan(loss) and np.isnan(expected_loss.item())
    assert dlogits.shape == tuple(expected_grad.shape) == (0, 3)


def test_cross_entropy_bad_input():
    criterion = nn.CrossEntropyLoss()
    logits = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): expected class labels in "
                                         r"\[0, 3\) for 3 classes, got label 3"):
        criterion(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): expected class labels in \[0, 3\).*got label -1"):
        criterion(logits, np.array([-1, 0]))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\): expected integer class labels.*got dtype float64"):
        criterion(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): expected a 1-D targets \(N,\), got shape \(2, 1\)"):
        criterion(logits, np.zeros((2, 1), np.int64))
    with pytest.raises(ValueError, match=r"expected targets \(one label per row of "
                                         r"logits\) of shape \(2,\), got \(3,\)"):
        criterion(logits, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss\(\): expected a 2-D logits "
                                         r"\(N, C\), got shape \(2, 3, 1\)"):
        criterion(np.zeros((2, 3, 1), np.float32), np.zeros(2, np.int64))
    with pytest.raises(TypeError, match=r"CrossEntropyLoss\(\): expected a floating-point logits.*int64"):
        criterion(np.zeros((2, 3), np.int64), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0, got 1.5"):
        nn.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy_forward: label_smoothing must be "
                                         r"between 0.0 and 1.0, got -0.1"):
        cross_entropy_forward(logits, np.zeros(2, np.int64), label_smoothing=-0.1)
    with pytest.raises(RuntimeError, match=r"CrossEntropyLoss\(label_smoothing=0.1\): backward called before forward"):
        nn.CrossEntropyLoss(label_smoothing=0.1).backward()
    _, cache = cross_entropy_forward(logits, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy_backward: expected a scalar "
                                         r"upstream gradient.*got shape \(2,\)"):
        cross_entropy_backward(np.ones(2), cache)

"""BatchNorm against PyTorch: training steps (outputs, all gradients, running statistics,
num_batches_tracked), evaluation mode, momentum=None, affine=False, track_running_stats=False,
float32 precision on a large batch with a big mean, awkward layouts, gradient checks, bad input."""
import warnings

import numpy as np
import pytest
import torch

import minires
from minires import gradcheck, nn
from minires.backend import asnumpy
from minires.nn.functional import batch_norm_backward, batch_norm_forward

from tests.support.torch_helpers import assert_close, copy_module_weights, to_torch

TOLERANCES = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-4, atol=2e-5)}
TORCH_DTYPES = {np.float64: torch.float64, np.float32: torch.float32}


def _pair_of_layers(cls, torch_cls, channels, dtype, xp, seed=0, **options):
    """A minires layer and a PyTorch one with the same random weight and bias."""
    layer = cls(channels, **options).to(dtype=dtype)
    reference = torch_cls(channels, dtype=TORCH_DTYPES[dtype], **options)
    rng = np.random.default_rng(seed)
    if layer.weight is not None:
        layer.weight.data[...] = rng.uniform(0.5, 2.0, channels)
    if layer.bias is not None:
        layer.bias.data[...] = rng.standard_normal(channels)
    copy_module_weights(layer, reference)
    return layer.to("cpu" if xp is np else "cuda"), reference


def _step(layer, reference, x, dy):
    """One forward and backward in both libraries; returns both sides' (y, dx)."""
    layer.zero_grad()
    reference.zero_grad()
    y = layer(x)
    dx = layer.backward(dy)
    tx = to_torch(x, requires_grad=True)
    ty = reference(tx)
    ty.backward(to_torch(dy))
    return (y, dx), (ty, tx.grad)


def _assert_step_matches(layer, reference, ours, theirs, dtype, step):
    tol = TOLERANCES[dtype]
    (y, dx), (ty, tdx) = ours, theirs
    assert y.dtype == dtype and dx.dtype == dtype
    assert_close(y, ty, what=f"output, {step}", **tol)
    assert_close(dx, tdx, what=f"input gradient, {step}", **tol)
    for name in ("weight", "bias"):
        ours, theirs = getattr(layer, name), getattr(reference, name)
        assert (ours is None) == (theirs is None)
        if ours is not None:
            assert ours.grad.dtype == dtype
            assert_close(ours.grad, theirs.grad, what=f"{name} gradient, {step}", **tol)


def _assert_buffers_match(layer, reference, dtype, step):
    if not layer.track_running_stats:
        assert layer.running_mean is None and reference.running_mean is None
        return
    tol = TOLERANCES[dtype]
    assert layer.running_mean.dtype == dtype and layer.running_var.dtype == dtype
    assert_close(layer.running_mean, reference.running_mean, what=f"running_mean, {step}", **tol)
    assert_close(layer.running_var, reference.running_var, what=f"running_var, {step}", **tol)
    assert layer.num_batches_tracked.dtype == np.int64 and layer.num_batches_tracked.shape == ()
    assert int(layer.num_batches_tracked) == int(reference.num_batches_tracked)


# Batches of different sizes with the same channel count: odd sizes, batch 1, 1x1 spatial.
BATCH_SHAPES = [(4, 3, 5, 7), (1, 3, 4, 3), (6, 3, 1, 1), (2, 3, 9, 2)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("options", [
    dict(), dict(momentum=None), dict(momentum=0.3, eps=1e-3), dict(affine=False), dict(bias=False),
    dict(track_running_stats=False), dict(affine=False, track_running_stats=False, momentum=None),
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_batchnorm2d_training_then_eval_matches_torch(xp, dtype, options):
    layer, reference = _pair_of_layers(nn.BatchNorm2d, torch.nn.BatchNorm2d, 3, dtype, xp, **options)
    rng = np.random.default_rng(1)
    for step, shape in enumerate(BATCH_SHAPES):
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        ours, theirs = _step(layer, reference, xp.asarray(x), xp.asarray(dy))
        _assert_step_matches(layer, reference, ours, theirs, dtype, f"training step {step}")
        _assert_buffers_match(layer, reference, dtype, f"after training step {step}")

    layer.eval()
    reference.eval()
    x, dy = rng.standard_normal((3, 3, 4, 5)).astype(dtype), rng.standard_normal((3, 3, 4, 5)).astype(dtype)
    ours, theirs = _step(layer, reference, xp.asarray(x), xp.asarray(dy))
    _assert_step_matches(layer, reference, ours, theirs, dtype, "eval")
    _assert_buffers_match(layer, reference, dtype, "after eval (unchanged)")


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 6), (1, 4, 7)])
@pytest.mark.parametrize("training", [True, False])
def test_batchnorm1d_matches_torch(xp, shape, training):
    layer, reference = _pair_of_layers(nn.BatchNorm1d, torch.nn.BatchNorm1d, 4, np.float64, xp)
    rng = np.random.default_rng(2)
    for step in range(2):  # fill the running statistics
        ours, theirs = _step(layer, reference, xp.asarray(rng.standard_normal(shape) + 1),
                             xp.asarray(rng.standard_normal(shape)))
    layer.train(training)
    reference.train(training)
    x, dy = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    ours, theirs = _step(layer, reference, xp.asarray(x), xp.asarray(dy))
    _assert_step_matches(layer, reference, ours, theirs, np.float64, f"training={training}")
    _assert_buffers_match(layer, reference, np.float64, f"training={training}")


@pytest.mark.parametrize("cls, torch_cls, shape", [
    (nn.BatchNorm2d, torch.nn.BatchNorm2d, (0, 3, 4, 5)), (nn.BatchNorm2d, torch.nn.BatchNorm2d, (2, 3, 0, 4)),
    (nn.BatchNorm1d, torch.nn.BatchNorm1d, (0, 3))], ids=["no images", "no pixels", "1d"])
@pytest.mark.parametrize("options", [dict(), dict(momentum=None), dict(track_running_stats=False)],
                         ids=["defaults", "momentum=None", "no running stats"])
def test_an_empty_batch_keeps_the_running_statistics_as_torch_does(xp, cls, torch_cls, shape, options):
    """PyTorch: an empty output, running statistics untouched (num_batches_tracked still counts the
    batch), zero gradients for weight and bias; nothing becomes NaN and nothing warns."""
    layer, reference = _pair_of_layers(cls, torch_cls, 3, np.float64, xp, **options)
    rng = np.random.default_rng(4)
    full = (4, 3, 2, 3) if len(shape) == 4 else (4, 3)
    _step(layer, reference, xp.asarray(rng.standard_normal(full)), xp.asarray(rng.standard_normal(full)))
    for step in ("training", "eval"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a 0/0 would warn
            ours, theirs = _step(layer, reference, xp.asarray(np.zeros(shape)), xp.asarray(np.zeros(shape)))
        _assert_step_matches(layer, reference, ours, theirs, np.float64, f"empty batch, {step}")
        _assert_buffers_match(layer, reference, np.float64, f"after the empty batch, {step}")
        layer.eval()
        reference.eval()


def test_eval_mode_is_an_affine_map_with_the_running_statistics():
    layer = nn.BatchNorm2d(2).to(dtype=np.float64)
    layer.running_mean[...] = [1.0, -2.0]
    layer.running_var[...] = [4.0, 0.25]
    layer.weight.data[...] = [3.0, 1.0]
    layer.bias.data[...] = [0.5, 0.0]
    layer.eval()
    x = np.random.default_rng(3).standard_normal((2, 2, 3, 3))
    y = layer(x)
    scale = np.array([3.0 / np.sqrt(4 + 1e-5), 1.0 / np.sqrt(0.25 + 1e-5)])[:, None, None]
    mean, shift = np.array([1.0, -2.0])[:, None, None], np.array([0.5, 0.0])[:, None, None]
    np.testing.assert_allclose(y, (x - mean) * scale + shift, rtol=1e-13)
    dy = np.ones_like(y)
    np.testing.assert_allclose(layer.backward(dy), dy * scale, rtol=1e-13)
    assert int(layer.num_batches_tracked) == 0  # evaluation never touches the statistics


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_float32_statistics_of_a_large_batch_with_a_big_mean(channels_last):
    """1000 + N(0, 1) over N*H*W = 102,400 values per channel: summed naively in float32 the mean
    and variance lose digits; we must agree with PyTorch computing in float64 on the same values.
    Channels-last memory takes the blocked sums (float32 blocks, float64 total), NCHW the float64 ones."""
    rng = np.random.default_rng(4)
    x = (1000 + rng.standard_normal((100, 2, 32, 32))).astype(np.float32)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    layer = nn.BatchNorm2d(2)
    reference = torch.nn.BatchNorm2d(2, dtype=torch.float64)
    y = layer(x)
    dx = layer.backward(dy)
    tx = to_torch(x.astype(np.float64), requires_grad=True)
    ty = reference(tx)
    ty.backward(to_torch(dy.astype(np.float64)))
    assert y.dtype == dx.dtype == layer.running_var.dtype == np.float32
    # x itself is only known to float32's resolution near 1000 (6e-5); the mean is rounded to it
    assert_close(y, ty, rtol=0, atol=1e-4, what="output")
    assert_close(dx, tx.grad, rtol=1e-3, atol=1e-4, what="input gradient")
    assert_close(layer.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-2, what="weight gradient")
    assert_close(layer.running_mean, reference.running_mean, rtol=1e-7, atol=0, what="running_mean")
    assert_close(layer.running_var, reference.running_var, rtol=1e-5, atol=0, what="running_var")


@pytest.mark.parametrize("make_view", [
    lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),  # channels-last memory
    lambda a: np.concatenate([a, a], axis=3)[:, :, ::-1, ::2],                      # reversed and strided
], ids=["channels_last", "strided"])
def test_non_contiguous_input_matches_torch_and_is_left_unmodified(make_view):
    rng = np.random.default_rng(5)
    x = make_view(rng.standard_normal((3, 4, 5, 6)))
    assert not x.flags.c_contiguous
    before = x.copy()
    layer, reference = _pair_of_layers(nn.BatchNorm2d, torch.nn.BatchNorm2d, 4, np.float64, np)
    dy = rng.standard_normal(x.shape)
    ours, theirs = _step(layer, reference, x, dy)
    np.testing.assert_array_equal(x, before)
    _assert_step_matches(layer, reference, ours, theirs, np.float64, "non-contiguous")
    _assert_buffers_match(layer, reference, np.float64, "non-contiguous")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dy_channels_last", [True, False], ids=["dy_channels_last", "dy_nchw"])
@pytest.mark.parametrize("affine", [True, False])
def test_channels_last_input_with_either_gradient_layout(xp, training, dy_channels_last, affine):
    """Channels-last memory takes the tiled per-channel passes; dy may come in either layout."""
    rng = np.random.default_rng(9)
    channels_last = lambda a: xp.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    x = channels_last(xp.asarray(rng.standard_normal((3, 5, 4, 7)) * 3 + 1))
    dy = xp.asarray(rng.standard_normal(x.shape))
    dy = channels_last(dy) if dy_channels_last else dy
    layer, reference = _pair_of_layers(nn.BatchNorm2d, torch.nn.BatchNorm2d, 5, np.float64, xp, affine=affine)
    for step in range(2):  # the second step normalises with updated running statistics in eval mode
        layer.train(training or step == 0)
        reference.train(training or step == 0)
        ours, theirs = _step(layer, reference, x, dy)
        _assert_step_matches(layer, reference, ours, theirs, np.float64, f"step {step}")
        _assert_buffers_match(layer, reference, np.float64, f"step {step}")
    y, _ = ours
    assert y.transpose(0, 2, 3, 1).flags.c_contiguous  # the layout of x is kept


def test_functional_updates_running_statistics_in_place(xp):
    rng = np.random.default_rng(6)
    x = xp.asarray(rng.standard_normal((4, 3, 2, 5)) + 2)
    running_mean, running_var = xp.zeros(3), xp.ones(3)
    y, cache = batch_norm_forward(x, None, None, running_mean=running_mean, running_var=running_var,
                                  training=True, momentum=0.5)
    x_host = asnumpy(x)
    mean, var = x_host.mean(axis=(0, 2, 3)), x_host.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(asnumpy(running_mean), 0.5 * mean, rtol=1e-12)
    np.testing.assert_allclose(asnumpy(running_var), 0.5 + 0.5 * var, rtol=1e-12)
    dx, dgamma, dbeta = batch_norm_backward(xp.ones_like(y), cache)
    assert dgamma is None and dbeta is None
    np.testing.assert_allclose(asnumpy(dx), 0, atol=1e-12)  # a constant gradient is projected out


def test_functional_without_running_statistics_uses_the_batch_in_eval_mode_too():
    rng = np.random.default_rng(7)
    x, gamma, beta = rng.standard_normal((5, 2, 3)), rng.standard_normal(2), rng.standard_normal(2)
    y_eval, cache = batch_norm_forward(x, gamma, beta, training=False)
    y_train, _ = batch_norm_forward(x, gamma, beta, training=True)
    np.testing.assert_array_equal(y_eval, y_train)
    assert cache.batch_stats
    expected = torch.nn.functional.batch_norm(to_torch(x), None, None, to_torch(gamma), to_torch(beta), training=True)
    assert_close(y_eval, expected)


def test_float32_stays_float32_everywhere():
    layer = nn.BatchNorm2d(3)
    x = np.random.default_rng(8).standard_normal((2, 3, 4, 4)).astype(np.float32)
    for training in (True, False):
        layer.train(training)
        y = layer(x)
        dx = layer.backward(np.ones_like(y))
        assert y.dtype == dx.dtype == np.float32
        assert layer.weight.grad.dtype == layer.bias.grad.dtype == np.float32
        assert layer.running_mean.dtype == layer.running_var.dtype == np.float32
    layer.to(dtype=np.float64)
    assert layer.running_var.dtype == np.float64 and layer.num_batches_tracked.dtype == np.int64


def test_state_dict_keys_and_defaults_match_torch():
    for options in (dict(), dict(affine=False), dict(bias=False), dict(track_running_stats=False)):
        layer, reference = nn.BatchNorm2d(5, **options), torch.nn.BatchNorm2d(5, **options)
        assert list(layer.state_dict()) == list(reference.state_dict())
        for name, value in reference.state_dict().items():
            np.testing.assert_array_equal(layer.state_dict()[name], value.numpy())
            assert layer.state_dict()[name].dtype == value.numpy().dtype
        assert repr(layer) == repr(reference)
    layer = nn.BatchNorm2d(2, affine=False, track_running_stats=False)
    assert layer.weight is None and layer.running_mean is None and layer.num_batches_tracked is None
    assert list(layer.parameters()) == [] and list(layer.buffers()) == []


def test_reset_running_stats():
    layer = nn.BatchNorm2d(2)
    layer(np.random.default_rng(9).standard_normal((3, 2, 2, 2)).astype(np.float32) + 5)
    layer.reset_running_stats()
    np.testing.assert_array_equal(layer.running_mean, 0)
    np.testing.assert_array_equal(layer.running_var, 1)
    assert int(layer.num_batches_tracked) == 0


def _seeded(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("make_layer", [
    lambda: nn.BatchNorm2d(3),
    lambda: nn.BatchNorm2d(3, affine=False, momentum=None),
    lambda: nn.BatchNorm2d(3, track_running_stats=False).eval(),
    lambda: nn.BatchNorm1d(3),
    lambda: nn.BatchNorm2d(3, bias=False),
], ids=["train", "affine=False", "no running stats, eval", "1d", "bias=False"])
def test_gradcheck_training(make_layer):
    layer = make_layer()
    if layer.weight is not None:
        layer.weight.data[...] = [0.5, 2.0, -1.5]
    if layer.bias is not None:
        layer.bias.data[...] = [0.1, -0.3, 2.0]
    shape = (5, 3) if isinstance(layer, nn.BatchNorm1d) else (3, 3, 2, 3)
    report = gradcheck.check_module(layer, _seeded(shape, 10) * 3 + 1, seed=11)
    assert report.ok, str(report)


def test_gradcheck_eval_mode_with_running_statistics():
    layer = nn.BatchNorm2d(3)
    for seed in range(3):
        layer(_seeded((4, 3, 2, 2), seed).astype(np.float32) * 2 + 1)
    layer.weight.data[...] = [0.5, 2.0, -1.5]
    report = gradcheck.check_module(layer.eval(), _seeded((2, 3, 3, 2), 12), seed=13)
    assert report.ok, str(report)


def test_gradcheck_functional_with_random_gamma_and_beta():
    inputs = [_seeded((3, 4, 2, 3), 14), _seeded(4, 15), _seeded(4, 16)]
    assert gradcheck.check_function(batch_norm_forward, batch_norm_backward, inputs, seed=17).ok
    running = dict(running_mean=_seeded(4, 18), running_var=_seeded(4, 19) ** 2 + 0.1)
    eval_forward = lambda x, g, b: batch_norm_forward(x, g, b, **running, training=False)  # noqa: E731
    assert gradcheck.check_function(eval_forward, batch_norm_backward, inputs, seed=17).ok


# -- bad input ---------------------------------------------------------------------------------------
def test_bad_inputs_name_the_layer_and_the_shapes():
    layer = nn.BatchNorm2d(3)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, .*3 channels.*got shape \(2, 4, 5, 5\)"):
        layer(np.zeros((2, 4, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, .*4-D input \(N, C, H, W\), got shape \(2, 3, 5\)"):
        layer(np.zeros((2, 3, 5), np.float32))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3, .*2-D or 3-D.*got shape \(2, 3, 4, 4\)"):
        nn.BatchNorm1d(3)(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(TypeError, match=r"BatchNorm2d\(3, .*floating-point input.*int64"):
        layer(np.zeros((2, 3, 4, 4), np.int64))
    with pytest.raises(TypeError, match=r"BatchNorm2d\(3, .*input dtype float64 does not match"):
        layer(np.zeros((2, 3, 4, 4)))
    with pytest.raises(TypeError, match="BatchNorm2d.*NumPy or CuPy array"):
        layer([[1.0, 2.0, 3.0]])


def test_a_single_value_per_channel_is_an_error_in_training_only():
    layer = nn.BatchNorm2d(3)
    x = np.ones((1, 3, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3, .*more than 1 value per channel.*\(1, 3, 1, 1\)"):
        layer(x)
    assert int(layer.num_batches_tracked) == 0
    layer.eval()
    np.testing.assert_allclose(layer(x), x / np.sqrt(1 + 1e-5), rtol=1e-6)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm2d(3, track_running_stats=False).eval()(x)  # eval uses the batch: still one value
    with pytest.raises(ValueError, match=r"batch_norm_forward: expected more than 1 value per channel"):
        batch_norm_forward(np.ones((1, 2)), None, None)


def test_backward_errors():
    layer = nn.BatchNorm2d(2)
    with pytest.raises(RuntimeError, match="BatchNorm2d.*backward called before forward"):
        layer.backward(np.ones((2, 2, 3, 3), np.float32))
    y = layer(np.random.default_rng(20).standard_normal((2, 2, 3, 3)).astype(np.float32))
    with pytest.raises(ValueError, match=r"batch_norm_backward: expected upstream gradient of shape "
                                         r"\(2, 2, 3, 3\), got \(2, 2, 3\)"):
        layer.backward(np.ones((2, 2, 3), np.float32))
    with minires.no_grad():
        layer(np.ones_like(y))
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones_like(y))


def test_bad_arguments():
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="BatchNorm2d: num_features must be a positive integer"):
            nn.BatchNorm2d(bad)
    x = np.ones((2, 3, 2))
    with pytest.raises(ValueError, match="batch_norm_forward: running_mean and running_var must be given together"):
        batch_norm_forward(x, None, None, running_mean=np.zeros(3))
    with pytest.raises(ValueError, match=r"batch_norm_forward: expected weight of shape \(3,\), got \(4,\)"):
        batch_norm_forward(x, np.ones(4), None)
    with pytest.raises(ValueError, match=r"batch_norm_forward: expected a 2-D or 3-D or 4-D input"):
        batch_norm_forward(np.ones(3), None, None)

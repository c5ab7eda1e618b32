"""minires.study.shattered: the per-input derivative with batch statistics held fixed, the residual
layer's backward, the autocorrelation, and the nets' construction."""
import numpy as np
import pytest

import minires
from minires import gradcheck
from minires.study import shattered


@pytest.mark.parametrize("kind", shattered.KINDS)
def test_input_gradients_are_the_derivatives_with_the_batch_statistics_held_fixed(kind):
    net = shattered.make_net(kind, depth=3, width=8, seed=1)
    x = shattered.evenly_spaced_inputs(16)
    trained = shattered.freeze_batch_statistics(net, x)
    np.testing.assert_allclose(net(x), trained, rtol=1e-12, atol=1e-12)  # the frozen net is the same function on x
    g = shattered.input_gradients(net, x)
    assert g.shape == (16,)
    eps = 1e-6
    with minires.no_grad():  # each input on its own through the frozen (evaluation-mode) net
        numerical = (net(x + eps) - net(x - eps)).reshape(-1) / (2 * eps)
    np.testing.assert_allclose(g, numerical, rtol=1e-6, atol=1e-8)


def test_with_batch_norm_the_training_mode_backward_would_mix_the_inputs():
    """Why the statistics are frozen: in training mode a backward of ones returns sum_j dy_j/dx_i."""
    x = shattered.evenly_spaced_inputs(16)
    for kind, coupled in (("feedforward", False), ("residual_bn", True)):
        net = shattered.make_net(kind, depth=2, width=8, seed=2)
        per_input = shattered.input_gradients(net, x)
        net.train()
        mixed = net.backward(np.ones_like(net(x))).reshape(-1)
        assert np.allclose(mixed, per_input, rtol=1e-12, atol=1e-12) != coupled, kind


def test_residual_layer_passes_the_gradient_check_and_adds_the_identity():
    minires.manual_seed(0)
    layer = shattered.ResidualLayer(5)
    x = np.random.default_rng(0).standard_normal((6, 5))
    report = gradcheck.check_module(layer, x)
    assert report.ok, str(report)
    layer.eval()
    layer.linear.weight.data[...] = 0
    layer.linear.bias.data[...] = 0
    np.testing.assert_array_equal(layer(x), x)
    dy = np.random.default_rng(1).standard_normal((6, 5))
    np.testing.assert_array_equal(layer.backward(dy), dy)  # a zero branch: the gradient passes unchanged


def test_relu_switches_are_the_kinks_of_the_first_layer_by_hand():
    net = shattered.make_net("feedforward", depth=2, width=30, seed=4)
    x = shattered.evenly_spaced_inputs(64)
    w, b = net[0].weight.data[:, 0], net[0].bias.data
    kinks = -b / w  # where unit j of the first layer switches
    switches = shattered.relu_switches(net, x)
    assert len(switches) == 2 and switches[0] == np.count_nonzero((kinks > -2) & (kinks < 2)) > 0
    assert shattered.relu_switches(shattered.make_net("residual_bn", 3, width=8), x)[2] > 0


def test_autocorrelation_by_hand_and_of_known_noises():
    g = np.array([1.0, 3.0, 2.0, 5.0, 4.0])
    c = g - g.mean()
    expected = [1.0, (c[:-1] @ c[1:]) / (c @ c), (c[:-2] @ c[2:]) / (c @ c)]
    np.testing.assert_allclose(shattered.autocorrelation(g, 2), expected, rtol=1e-15)
    rng = np.random.default_rng(0)
    white = rng.standard_normal(4096)
    assert abs(shattered.neighbour_correlation(white)) < 0.05
    assert shattered.neighbour_correlation(np.cumsum(white)) > 0.95          # brown noise
    assert shattered.neighbour_correlation((-1.0) ** np.arange(64)) == pytest.approx(-1, abs=0.02)
    with pytest.raises(ValueError, match="max_lag must be in \\[0, 4\\], got 5"):
        shattered.autocorrelation(g, 5)
    with pytest.raises(ValueError, match="all equal"):
        shattered.autocorrelation(np.ones(5), 1)


def test_nets_their_initialisation_and_bad_arguments():
    minires.manual_seed(0)
    a = shattered.make_net("residual_bn", 4, width=6, seed=3)
    minires.manual_seed(1)  # the weights depend on the seed argument alone
    b = shattered.make_net("residual_bn", 4, width=6, seed=3)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
        assert p.dtype == np.float64
    assert sum(isinstance(m, shattered.ResidualLayer) for m in a.modules()) == 4
    feedforward = shattered.make_net("feedforward_bn", 3, width=6)
    assert [type(m).__name__ for m in feedforward] == ["Linear", "BatchNorm1d", "ReLU"] * 3 + ["Linear"]
    wide = shattered.make_net("feedforward", 2, width=400, seed=0)[2].weight.data
    assert wide.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)  # He-normal
    with pytest.raises(ValueError, match="kind must be one of feedforward, feedforward_bn, residual_bn; got 'plain'"):
        shattered.make_net("plain", 3)
    with pytest.raises(ValueError, match="depth must be at least 1, got 0"):
        shattered.make_net("feedforward", 0)


def test_deep_feedforward_gradients_shatter_and_residual_ones_do_not():
    """Depth 20, two nets each, the paper's 200 units and 256 inputs."""
    feedforward = shattered.correlation_vs_depth("feedforward_bn", [1, 20], nets=2)
    residual = shattered.correlation_vs_depth("residual_bn", [20], nets=2)
    assert feedforward.shape == (2, 2) and (feedforward[0] > 0.9).all()
    assert (np.abs(feedforward[1]) < 0.2).all() and (residual > 0.6).all()

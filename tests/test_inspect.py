"""minires.inspect: per-layer norms, the shortcut/branch split of each residual block, hooks removed."""
import numpy as np
import pytest

import minires
from minires import models, nn
from minires.inspect import GradientFlow, array_norm, record_gradient_flow
from minires.models.preact import PRE_ACTIVATION_ORDERS, PreActResNet
from minires.models.resnet import BasicBlock, Bottleneck, ResNet


def tiny_resnet(residual=True, shortcut="A", block=BasicBlock, layers=(2, 2), widths=(4, 8)):
    minires.manual_seed(0)
    return ResNet(block, list(layers), num_classes=3, residual=residual, widths=widths, stem="cifar",
                  shortcut=shortcut).double()


def batch(xp, n=2, size=6, seed=0):
    rng = np.random.default_rng(seed)
    return xp.asarray(rng.standard_normal((n, 3, size, size))), xp.asarray(rng.integers(0, 3, size=n))


def all_hooks(model):
    return [h for m in model.modules() for h in (*m._forward_hooks.values(), *m._backward_hooks.values())]


@pytest.mark.parametrize("shortcut,block", [("A", BasicBlock), ("B", BasicBlock), ("B", Bottleneck)])
def test_block_input_gradient_is_shortcut_part_plus_branch_part_exactly(xp, shortcut, block):
    model = tiny_resnet(shortcut=shortcut, block=block, layers=(2,), widths=(4,)) if block is Bottleneck \
        else tiny_resnet(shortcut=shortcut)
    model.to("cpu" if xp is np else "cuda")
    flow = record_gradient_flow(model, *batch(xp), keep_gradients=True)
    kinds = {stats.shortcut for stats in flow.blocks}
    assert "identity" in kinds and kinds - {"identity"}  # both kinds of block are covered
    for stats in flow.blocks:
        parts = stats.gradients
        assert (parts["input"] == parts["branch"] + parts["shortcut"]).all(), stats.name
        assert stats.input_grad_norm == array_norm(parts["input"])
        assert stats.branch_norm == array_norm(parts["branch"]) > 0
        assert stats.shortcut_norm == array_norm(parts["shortcut"]) > 0
        assert stats.shortcut_share == stats.shortcut_norm / (stats.shortcut_norm + stats.branch_norm)
        assert 0 < stats.shortcut_share < 1
        assert all(isinstance(v, float) for v in (stats.input_grad_norm, stats.branch_norm, stats.shortcut_norm))


def test_identity_shortcut_part_is_the_gradient_at_the_add():
    model = tiny_resnet()
    block = model.layer1[1]
    at_add = {}
    block.relu2.register_backward_hook(lambda m, grad_input, grad_output: at_add.setdefault("g", grad_input.copy()))
    flow = record_gradient_flow(model, *batch(np), keep_gradients=True)
    stats = {s.name: s for s in flow.blocks}["layer1.1"]
    assert stats.shortcut == "identity"
    np.testing.assert_array_equal(stats.gradients["shortcut"], at_add["g"])


def test_plain_blocks_have_no_shortcut_part():
    flow = record_gradient_flow(tiny_resnet(residual=False), *batch(np), keep_gradients=True)
    assert len(flow.blocks) == 4
    for stats in flow.blocks:
        assert stats.shortcut == "none" and not stats.residual
        assert stats.shortcut_norm == 0.0 and stats.shortcut_share == 0.0
        np.testing.assert_array_equal(stats.gradients["input"], stats.gradients["branch"])
        assert stats.input_grad_norm == stats.branch_norm > 0


def test_per_layer_norms_equal_norms_computed_by_hand():
    rng = np.random.default_rng(1)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    x, targets = rng.standard_normal((6, 5)), np.array([0, 2, 1, 1, 0, 2])
    (w1, b1), (w2, b2) = [(layer.weight.data, layer.bias.data) for layer in (model[0], model[2])]
    # forward and backward by hand
    h = x @ w1.T + b1
    a = np.maximum(h, 0)
    z = a @ w2.T + b2
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    dz = (p - np.eye(3)[targets]) / len(targets)
    da = dz @ w2
    dh = da * (h > 0)
    dx = dh @ w1

    flow = record_gradient_flow(model, x, targets)
    assert [s.name for s in flow.layers] == ["0", "1", "2"]
    assert [s.kind for s in flow.layers] == ["Linear", "ReLU", "Linear"]
    expected = [(h, dh, dx), (a, da, dh), (z, dz, da)]
    for stats, (activation, grad, grad_input) in zip(flow.layers, expected):
        assert stats.activation_norm == pytest.approx(np.linalg.norm(activation), rel=1e-12)
        assert stats.grad_norm == pytest.approx(np.linalg.norm(grad), rel=1e-12)
        assert stats.grad_input_norm == pytest.approx(np.linalg.norm(grad_input), rel=1e-12)
    assert flow.loss == pytest.approx(-np.mean(np.log(p[np.arange(6), targets])), rel=1e-12)
    assert flow.blocks == []


def test_hooks_are_removed_afterwards_even_after_an_error():
    model = tiny_resnet()
    x, targets = batch(np)
    with GradientFlow(model) as flow:
        assert len(all_hooks(model)) > 0
        model(x)
    assert all_hooks(model) == []
    assert flow.layers[0].activation_norm > 0 and np.isnan(flow.layers[0].grad_norm)  # no backward ran
    with pytest.raises(ValueError, match="Conv2d"):
        with GradientFlow(model):
            model(x[:, :2])  # wrong channel count
    assert all_hooks(model) == []
    record_gradient_flow(model, x, targets)
    assert all_hooks(model) == []


def test_record_gradient_flow_leaves_the_model_as_it_was():
    model = tiny_resnet()
    x, targets = batch(np)
    model.fc.weight.grad = np.full(model.fc.weight.shape, 7.0)
    before = {name: value.copy() for name, value in model.state_dict().items()}
    flow = record_gradient_flow(model, x, targets)
    assert flow.layers and flow.blocks
    assert (model.fc.weight.grad == 7.0).all()
    assert all(p.grad is None for name, p in model.named_parameters() if name != "fc.weight")
    for name, value in model.state_dict().items():  # weights and running statistics
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_float32_model_gives_python_floats_and_a_table():
    minires.manual_seed(0)
    model = models.resnet20(width=4)
    x, targets = batch(np, size=8)
    flow = record_gradient_flow(model, x.astype(np.float32), targets)
    assert len(flow.layers) == len([m for m in model.modules() if next(m.children(), None) is None])
    assert all(type(s.grad_norm) is float and s.grad_norm > 0 for s in flow.layers)
    assert len(flow.blocks) == 9
    text = flow.table()
    assert "layer3.2" in text and "ShortcutA" in text and "identity" in text
    header = [line for line in text.splitlines() if line.startswith("block")][0]
    assert header.split()[1:] == ["shortcut", "||dL/dx||", "||shortcut", "part||", "||branch", "part||", "shortcut",
                                  "share"]  # the names the README and the module docstring use


def test_runs_on_a_gpu_and_gives_numpys_numbers(gpu_xp):
    """The stand-in (minires.testing.fake_cupy) refuses what CuPy refuses: no host round trips."""
    x, targets = batch(np)
    on_numpy = record_gradient_flow(tiny_resnet(), x, targets)
    device_model = tiny_resnet().to("cuda")
    on_device = record_gradient_flow(device_model, gpu_xp.asarray(x), gpu_xp.asarray(targets))
    assert all(type(s.grad_norm) is float for s in on_device.layers)
    for ours, reference in zip(on_device.layers + on_device.blocks, on_numpy.layers + on_numpy.blocks):
        for field in ("activation_norm", "grad_norm", "grad_input_norm", "branch_norm", "shortcut_norm"):
            if hasattr(ours, field):
                assert getattr(ours, field) == pytest.approx(getattr(reference, field), rel=1e-12)
    assert all(isinstance(b, gpu_xp.ndarray) for b in device_model.buffers())


@pytest.mark.parametrize("options", [{}, {"order": "relu_preact"}, {"gating": "exclusive"},
                                     {"gating": "shortcut_only", "gate_bias": -2.0},
                                     {"shortcut_scale": 0.5, "branch_scale": 0.5}, {"shortcut": "conv1x1"},
                                     {"order": "original", "shortcut": "dropout"}, {"bottleneck": True, "depth": 11}])
def test_pre_activation_units_split_into_shortcut_and_branch_parts_exactly(options):
    """No ReLU after the add, a branch that starts with a batch norm, gates and scales: the parts still
    add up bit for bit, to dL/dx, or, where the unit activates before the split, to the gradient there."""
    minires.manual_seed(0)
    model = PreActResNet(**{"depth": 8, "width": 4, "num_classes": 3, **options}).double()
    at_split = {}
    for name, unit in model.named_modules():
        if getattr(unit, "pre_names", None):  # activated before the split: dL/dr is what its last part receives
            last = getattr(unit, unit.pre_names[-1])
            last.register_backward_hook(lambda m, gin, gout, name=name: at_split.__setitem__(name, gout.copy()))
    flow = record_gradient_flow(model, *batch(np, size=8), keep_gradients=True)
    assert len(flow.blocks) == 3
    assert bool(at_split) == (options.get("order", "full_preact") in PRE_ACTIVATION_ORDERS)
    for stats in flow.blocks:
        parts = stats.gradients
        expected = at_split.get(stats.name, parts["input"])
        assert (expected == parts["branch"] + parts["shortcut"]).all(), stats.name
        assert stats.branch_norm > 0 and stats.shortcut_norm > 0 and 0 < stats.shortcut_share < 1
    assert "layer1.0" in flow.table()

"""Pre-activation ResNets and the identity-mapping variants (He et al. 2016): parameter counts and
state-dict names, equality with a PyTorch reference (tests/support/torch_preact.py) in float64, a gradient
check of every ordering and shortcut variant, the identity's exact gradient path, and bad options."""
import numpy as np
import pytest
import torch

import minires
from minires import gradcheck, models, nn
from minires.models.preact import ORDERS, PreActResNet, ResidualUnit, unit_layout

from tests.support import torch_preact
from tests.test_models import _compare_end_to_end

SHORTCUT_VARIANTS = {
    "identity": {},
    "scaling 0.5 on the shortcut": {"shortcut_scale": 0.5},
    "scaling 0.5 on both": {"shortcut_scale": 0.5, "branch_scale": 0.5},
    "exclusive gating b_g=0": {"gating": "exclusive"},
    "exclusive gating b_g=-6": {"gating": "exclusive", "gate_bias": -6.0},
    "shortcut-only gating b_g=-6": {"gating": "shortcut_only", "gate_bias": -6.0},
    "shortcut-only gating b_g=0": {"gating": "shortcut_only"},
    "1x1 conv shortcut": {"shortcut": "conv1x1"},
}


def count(model):
    return sum(p.size for p in model.parameters())


@pytest.mark.parametrize("factory,depth,bottleneck,expected", [
    (models.preact_resnet20, 20, False, 272_282), (models.preact_resnet56, 56, False, 855_578),
    (models.preact_resnet110, 110, False, 1_730_522), (models.preact_resnet164, 164, True, 1_703_258),
])
def test_parameter_counts_and_state_dict_equal_the_reference(factory, depth, bottleneck, expected):
    """1.7M parameters for ResNet-110 and -164, as in the paper's Table 3."""
    model = factory()
    assert count(model) == expected
    reference = torch_preact.Net(depth, bottleneck=bottleneck)
    assert sum(p.numel() for p in reference.parameters()) == expected
    mine = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert mine == [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]


def test_documented_state_dict_names():
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    names = list(models.preact_resnet20().state_dict())
    unit = [f"layer2.0.{n}" for n in [*(f"bn1.{b}" for b in bn), "conv1.weight", *(f"bn2.{b}" for b in bn),
                                       "conv2.weight", "shortcut.weight"]]
    assert names[names.index("layer2.0.bn1.weight"):][:len(unit)] == unit
    assert names[0] == "conv1.weight" and names[-2:] == ["fc.weight", "fc.bias"]
    assert names[-7:-2] == [f"final_bn.{b}" for b in bn]
    gated = list(ResidualUnit(4, 4, gating="exclusive").state_dict())
    assert gated[-2:] == ["gate.weight", "gate.bias"]
    bottleneck = list(models.preact_resnet164().state_dict())
    assert "layer1.0.conv3.weight" in bottleneck and "layer1.0.shortcut.weight" in bottleneck
    assert models.preact_resnet164().layer1[0].conv1.stride == (1, 1)
    assert models.preact_resnet164().layer2[0].conv1.stride == (2, 2)  # the stride on the first 1x1


@pytest.mark.parametrize("name,options,shape", [
    ("preact_resnet20", {}, (4, 3, 8, 8)),
    ("preact ResNet-11 bottleneck", {"depth": 11, "bottleneck": True}, (4, 3, 8, 8)),
    ("preact ResNet-8, option A", {"depth": 8, "downsample": "A"}, (4, 3, 8, 8)),
    *[(f"ResNet-8, {order}", {"depth": 8, "order": order}, (4, 3, 8, 8)) for order in ORDERS],
    *[(f"ResNet-11 bottleneck, {order}", {"depth": 11, "bottleneck": True, "order": order}, (3, 3, 6, 6))
      for order in ("original", "bn_after_add", "relu_preact")],
    *[(f"ResNet-8 (original), {name}", {"depth": 8, "order": "original", **variant}, (4, 3, 8, 8))
      for name, variant in SHORTCUT_VARIANTS.items()],
    ("ResNet-8 (full preact), exclusive gating", {"depth": 8, "gating": "exclusive", "gate_bias": -2.0}, (4, 3, 8, 8)),
])
def test_end_to_end_equal_to_pytorch_in_float64(name, options, shape):
    """Loss, input gradient, every parameter gradient, running statistics and the eval output."""
    options = {"depth": 20, **options}
    minires.manual_seed(0)
    _compare_end_to_end(PreActResNet(**options), torch_preact.Net(**options), shape, rtol=1e-7, atol=1e-9)


def test_dropout_shortcut_in_eval_mode_equals_pytorch_and_scales_by_1_minus_p():
    minires.manual_seed(0)
    options = {"depth": 8, "order": "original", "shortcut": "dropout", "dropout": 0.25}
    ours, reference = PreActResNet(**options).double().eval(), torch_preact.Net(**options).double().eval()
    reference.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    with minires.no_grad(), torch.no_grad():
        np.testing.assert_allclose(ours(x), reference(torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-12)
    unit = ResidualUnit(4, 4, order="full_preact", shortcut="dropout", dropout=0.25).double().eval()
    unit.conv2.weight.data[...] = 0  # F = 0: the output is the shortcut alone
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 5))
    np.testing.assert_array_equal(unit(x), 0.75 * x)


UNIT_CASES = [  # (name, options, stride): stride 2 changes the shape (a projection shortcut)
    *[(f"basic, {order}", {"order": order}, stride) for order in ORDERS for stride in (1, 2)],
    *[(f"bottleneck, {order}", {"order": order, "bottleneck": True}, 2) for order in ORDERS],
    *[(f"{order}, activated before the split", {"order": order, "activate_before_split": True}, 2)
      for order in ("relu_preact", "full_preact")],
    *[(f"original, {name}", {"order": "original", **variant}, 1) for name, variant in SHORTCUT_VARIANTS.items()],
    ("original, exclusive gating, stride 2", {"order": "original", "gating": "exclusive"}, 2),
    ("full preact, scaling 0.5 on both", {"shortcut_scale": 0.5, "branch_scale": 0.5}, 1),
    ("full preact, shortcut-only gating", {"gating": "shortcut_only"}, 1),
    ("full preact, 1x1 conv shortcut", {"shortcut": "conv1x1"}, 1),
    ("full preact, option A", {"downsample": "A"}, 2),
]


@pytest.mark.parametrize("name,options,stride", UNIT_CASES, ids=[case[0] for case in UNIT_CASES])
def test_every_unit_passes_the_gradient_check(name, options, stride):
    """Input and every parameter, float64, random upstream gradient."""
    minires.manual_seed(0)
    planes = 2 if options.get("bottleneck") else 4
    unit = ResidualUnit(4, planes, stride, **options)
    if "gate_bias" in options:  # b_g = -6 makes g ~ 0.0025: the gate's gradients are tiny; check them at -1
        unit.gate.bias.data[...] = -1.0
    x = np.random.default_rng(1).standard_normal((2, 4, 4, 4))
    report = gradcheck.check_module(unit, x, title=name)
    # BN after the add (train mode) cancels a per-channel constant: the projection's BN bias has a zero
    # gradient, which both passes give only to rounding (1e-15 and 1e-9), a relative error of 1 for the check
    exactly_zero = {"shortcut.1.bias"} if options.get("order") == "bn_after_add" else set()
    for entry in report.entries:
        if entry.name in exactly_zero:
            assert max(entry.numerical_norm, entry.analytic_norm) < 1e-7, str(report)
        else:
            assert entry.ok, str(report)


class Reseeded(nn.Module):
    """``module`` with ``minires.manual_seed(seed)`` before each forward: the same dropout mask in
    every one of the gradient check's forward passes."""

    def __init__(self, module, seed=0):
        super().__init__()
        self.module, self.seed = module, seed

    def forward(self, x):
        minires.manual_seed(self.seed)
        return self.module(x)

    def backward(self, grad_output):
        return self.module.backward(grad_output)


@pytest.mark.parametrize("order,stride", [("original", 1), ("full_preact", 2)])
def test_dropout_shortcut_passes_the_gradient_check_in_training_mode(order, stride):
    minires.manual_seed(0)
    unit = ResidualUnit(4, 4, stride, order=order, shortcut="dropout", dropout=0.5)
    report = gradcheck.check_module(Reseeded(unit), np.random.default_rng(2).standard_normal((2, 4, 5, 5)))
    assert report.ok, str(report)


def test_identity_unit_passes_the_upstream_gradient_unchanged_to_its_input():
    """Full pre-activation, identity shortcut: x_next = x + F(x), so dL/dx = dL/dx_next + F'(x)^T dL/dx_next,
    bit for bit the sum of the upstream gradient and the branch part."""
    minires.manual_seed(0)
    unit = ResidualUnit(4, 4).double()
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 4, 5, 5)), rng.standard_normal((2, 4, 5, 5))
    seen = {}
    unit.bn1.register_backward_hook(lambda m, grad_input, grad_output: seen.setdefault("branch", grad_input))
    unit(x)
    np.testing.assert_array_equal(unit.backward(dy), seen["branch"] + dy)


def test_layout_table_and_gate_initialisation():
    assert unit_layout("full_preact", 2) == (["bn1", "relu1"], ["conv1", "bn2", "relu2", "conv2"], [])
    assert unit_layout("original", 3) == ([], ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3"],
                                          ["relu_out"])
    assert unit_layout("bn_after_add", 2) == ([], ["conv1", "bn1", "relu1", "conv2"], ["bn2", "relu_out"])
    assert unit_layout("relu_before_add", 2)[1][-1] == "relu2"
    assert unit_layout("relu_preact", 2)[0] == ["relu_in"]
    minires.manual_seed(0)
    net = PreActResNet(20, gating="shortcut_only", gate_bias=-6.0)
    gates = [m.gate for m in net.modules() if isinstance(m, ResidualUnit)]
    assert len(gates) == 9 and all((g.bias.data == -6).all() for g in gates)
    assert all(g.weight.data.std() > 0 for g in gates)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="ResidualUnit: order must be one of original, .*; got 'preact'"):
        ResidualUnit(4, 4, order="preact")
    with pytest.raises(ValueError, match="ResidualUnit: shortcut must be one of identity, conv1x1, dropout; got 'gate'"):
        ResidualUnit(4, 4, shortcut="gate")
    with pytest.raises(ValueError, match="ResidualUnit: gating must be None, 'exclusive' or 'shortcut_only'"):
        ResidualUnit(4, 4, gating="both")
    with pytest.raises(ValueError, match="a gated shortcut takes no constant scaling"):
        ResidualUnit(4, 4, gating="exclusive", shortcut_scale=0.5)
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\); got 1"):
        ResidualUnit(4, 4, shortcut="dropout", dropout=1)
    with pytest.raises(ValueError, match="downsample must be 'A' or 'B'; got 'C'"):
        ResidualUnit(4, 8, 2, downsample="C")
    with pytest.raises(ValueError, match="PreActResNet: depth must be 9n\\+2 with bottleneck units, got 57"):
        PreActResNet(57, bottleneck=True)
    with pytest.raises(ValueError, match="PreActResNet: depth must be 6n\\+2 with basic units, got 21"):
        PreActResNet(21)

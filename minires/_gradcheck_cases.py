"""The layers and blocks that ``python -m minires.gradcheck`` checks, on small awkward shapes."""
import numpy as np

from . import nn
from .models import preact, resnet
from .random import manual_seed
from .gradcheck import check_function, check_module


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def all_cases():
    """A list of zero-argument callables, each returning a ``gradcheck.Report``."""
    return [
        lambda: check_module(nn.ReLU(), _x(2, 3, 5, 4)),
        lambda: check_module(nn.Sigmoid(), _x(2, 3, 5, 4) * 3),
        lambda: check_module(nn.Linear(5, 3), _x(2, 3, 5)),
        lambda: check_module(nn.Linear(4, 2, bias=False), _x(1, 4)),
        lambda: check_module(nn.Flatten(), _x(2, 3, 2, 2)),
        lambda: check_function(lambda x: nn.functional.dropout_forward(x, 0.4, True, np.random.default_rng(0)),
                               nn.functional.dropout_backward, [_x(3, 5)], title="dropout_forward (p=0.4, one fixed mask)"),
        lambda: check_function(lambda z: nn.functional.cross_entropy_forward(z, np.array([0, 4, 2]), 0.1),
                               nn.functional.cross_entropy_backward, [_x(3, 5)],
                               title="cross_entropy_forward (label_smoothing=0.1)"),
        lambda: check_module(nn.Conv2d(3, 4, 3, stride=2, padding=1), _x(2, 3, 6, 6)),
        lambda: check_module(nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1), groups=2),
                             _x(1, 4, 7, 5)),
        lambda: check_module(nn.Conv2d(4, 8, 1, stride=2, bias=False), _x(2, 4, 6, 6)),
        lambda: check_module(nn.Conv2d(3, 3, (2, 3), padding="same", groups=3), _x(2, 3, 5, 4)),
        lambda: check_module(nn.BatchNorm2d(3), _x(4, 3, 3, 2, seed=5) * 2 + 1),  # seed 0 is gradcheck's dy
        lambda: check_module(nn.BatchNorm2d(3, momentum=None, affine=False), _x(2, 3, 2, 3, seed=1)),
        lambda: check_module(nn.BatchNorm1d(3), _x(5, 3, seed=2)),
        lambda: check_function(nn.functional.batch_norm_forward, nn.functional.batch_norm_backward,
                               [_x(3, 4, 2, 3, seed=5), _x(4, seed=1), _x(4, seed=2)], names=["x", "gamma", "beta"],
                               title="batch_norm_forward (training, random gamma and beta)"),
        lambda: check_function(lambda x, g, b: nn.functional.batch_norm_forward(
                                   x, g, b, running_mean=_x(4, seed=3), running_var=_x(4, seed=4) ** 2 + 0.5,
                                   training=False),
                               nn.functional.batch_norm_backward,
                               [_x(3, 4, 2, 3, seed=5), _x(4, seed=1), _x(4, seed=2)],
                               names=["x", "gamma", "beta"], title="batch_norm_forward (eval, running statistics)"),
        lambda: check_module(nn.MaxPool2d(3, stride=2, padding=1), _x(2, 2, 7, 6)),
        lambda: check_module(nn.MaxPool2d(2, stride=1, padding=1, dilation=2, ceil_mode=True), _x(1, 2, 5, 6)),
        lambda: check_module(nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                             _x(2, 2, 6, 7)),
        lambda: check_module(nn.AvgPool2d(2, stride=1), _x(1, 3, 4, 5)),
        lambda: check_module(nn.AdaptiveAvgPool2d((3, 4)), _x(2, 2, 7, 6)),
        lambda: check_module(nn.AdaptiveAvgPool2d(1), _x(2, 3, 4, 5)),
        lambda: check_module(nn.Identity(), _x(2, 3)),
        lambda: check_module(resnet.BasicBlock(4, 4), _x(2, 4, 5, 5, seed=3), title="BasicBlock (identity shortcut)"),
        lambda: check_module(resnet.BasicBlock(3, 4, 2, resnet.make_shortcut("B", 3, 4, 2)), _x(2, 3, 6, 6, seed=3),
                             title="BasicBlock (stride 2, projection shortcut B)"),
        lambda: check_module(resnet.BasicBlock(3, 6, 2, resnet.make_shortcut("A", 3, 6, 2)), _x(2, 3, 5, 5, seed=3),
                             title="BasicBlock (stride 2, zero-padding shortcut A)"),
        lambda: check_module(resnet.BasicBlock(4, 4, residual=False), _x(2, 4, 5, 5, seed=3),
                             title="BasicBlock (plain: no skip connection)"),
        lambda: check_module(resnet.Bottleneck(8, 2), _x(2, 8, 4, 4, seed=3), title="Bottleneck (identity shortcut)"),
        lambda: check_module(resnet.Bottleneck(4, 4, 2, resnet.make_shortcut("B", 4, 16, 2), groups=2, base_width=32),
                             _x(2, 4, 5, 5, seed=3), title="Bottleneck (stride 2, groups 2, projection shortcut)"),
        lambda: check_module(resnet.ShortcutA(3, 6, 2), _x(2, 3, 5, 4, seed=3)),
        *[lambda order=order: check_module(preact.ResidualUnit(3, 3, order=order), _x(2, 3, 4, 4, seed=3),
                                           title=f"ResidualUnit ({order}, identity shortcut)") for order in preact.ORDERS],
        lambda: check_module(preact.ResidualUnit(3, 4, 2, activate_before_split=True), _x(2, 3, 5, 5, seed=3),
                             title="ResidualUnit (full pre-activation before the split, stride 2, projection)"),
        lambda: check_module(preact.ResidualUnit(4, 2, 2, bottleneck=True), _x(2, 4, 4, 4, seed=3),
                             title="ResidualUnit (pre-activation bottleneck, stride 2)"),
        *[lambda name=name, options=options: check_module(
              preact.ResidualUnit(3, 3, order="original", **options), _x(2, 3, 4, 4, seed=3),
              title=f"ResidualUnit (original, {name})") for name, options in _SHORTCUT_VARIANTS.items()],
        _check_dropout_shortcut,  # last: it reseeds the generator
    ]


# the shortcut variants of He et al. (2016); the gates' bias at -1 rather than the paper's -6, where
# g ~ 0.0025 would leave the gate's own gradients too small to check
_SHORTCUT_VARIANTS = {
    "shortcut scaled by 0.5": {"shortcut_scale": 0.5}, "both scaled by 0.5": {"shortcut_scale": 0.5, "branch_scale": 0.5},
    "exclusive gating": {"gating": "exclusive", "gate_bias": -1.0},
    "shortcut-only gating": {"gating": "shortcut_only", "gate_bias": -1.0}, "1x1 conv shortcut": {"shortcut": "conv1x1"},
}


def _check_dropout_shortcut():
    """The input gradient of a dropout-shortcut unit in training mode, the generator reseeded before
    each forward so that every pass of the check draws the same mask."""
    unit = preact.ResidualUnit(3, 3, order="original", shortcut="dropout").double()

    def forward(x):
        manual_seed(1)
        return unit(x), None

    return check_function(forward, lambda dy, _: unit.backward(dy), [_x(2, 3, 4, 4, seed=3)],
                          title="ResidualUnit (original, dropout shortcut, one fixed mask)")

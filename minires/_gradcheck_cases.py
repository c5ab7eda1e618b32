"""What ``python -m minires.gradcheck`` checks: every layer and block on small awkward shapes, and,
for ``--demo-failure``, three backward passes with a classic mistake each."""
import numpy as np

from . import nn
from .distributed import SingleProcessGroup
from .models import preact, resnet
from .random import manual_seed
from .gradcheck import check_function, check_module


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _dropout_with_one_mask(x):
    return nn.functional.dropout_forward(x, 0.4, True, np.random.default_rng(0))


def _cross_entropy_smoothed(z):
    return nn.functional.cross_entropy_forward(z, np.array([0, 4, 2]), 0.1)


def _batch_norm_eval(x, gamma, beta):
    return nn.functional.batch_norm_forward(x, gamma, beta, running_mean=_x(4, seed=3),
                                            running_var=_x(4, seed=4) ** 2 + 0.5, training=False)


def _sync_batch_norm_one_process(x, gamma, beta):
    return nn.functional.sync_batch_norm_forward(x, gamma, beta, group=SingleProcessGroup())


def _batch_norm_inputs():
    return [_x(3, 4, 2, 3, seed=5), _x(4, seed=1), _x(4, seed=2)]


def all_cases():
    """``(name, check)`` pairs: ``name`` is the layer's (``--only NAME``), ``check()`` returns a
    ``gradcheck.Report``."""
    F = nn.functional
    shortcut = resnet.make_shortcut
    return [
        ("ReLU", lambda: check_module(nn.ReLU(), _x(2, 3, 5, 4))),
        ("Sigmoid", lambda: check_module(nn.Sigmoid(), _x(2, 3, 5, 4) * 3)),
        ("Linear", lambda: check_module(nn.Linear(5, 3), _x(2, 3, 5))),
        ("Linear", lambda: check_module(nn.Linear(4, 2, bias=False), _x(1, 4))),
        ("Flatten", lambda: check_module(nn.Flatten(), _x(2, 3, 2, 2))),
        ("dropout", lambda: check_function(_dropout_with_one_mask, F.dropout_backward, [_x(3, 5)],
                                           title="dropout_forward (p=0.4, one fixed mask)")),
        ("cross_entropy", lambda: check_function(_cross_entropy_smoothed, F.cross_entropy_backward, [_x(3, 5)],
                                                 title="cross_entropy_forward (label_smoothing=0.1)")),
        ("Conv2d", lambda: check_module(nn.Conv2d(3, 4, 3, stride=2, padding=1), _x(2, 3, 6, 6))),
        ("Conv2d", lambda: check_module(nn.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(2, 1),
                                                  groups=2), _x(1, 4, 7, 5))),
        ("Conv2d", lambda: check_module(nn.Conv2d(4, 8, 1, stride=2, bias=False), _x(2, 4, 6, 6))),
        ("Conv2d", lambda: check_module(nn.Conv2d(3, 3, (2, 3), padding="same", groups=3), _x(2, 3, 5, 4))),
        # seed 5, not 0: seed 0 is gradcheck's upstream gradient
        ("BatchNorm2d", lambda: check_module(nn.BatchNorm2d(3), _x(4, 3, 3, 2, seed=5) * 2 + 1)),
        ("BatchNorm2d", lambda: check_module(nn.BatchNorm2d(3, momentum=None, affine=False), _x(2, 3, 2, 3, seed=1))),
        ("BatchNorm1d", lambda: check_module(nn.BatchNorm1d(3), _x(5, 3, seed=2))),
        ("batch_norm", lambda: check_function(F.batch_norm_forward, F.batch_norm_backward, _batch_norm_inputs(),
                                              names=["x", "gamma", "beta"],
                                              title="batch_norm_forward (training, random gamma and beta)")),
        ("batch_norm", lambda: check_function(_batch_norm_eval, F.batch_norm_backward, _batch_norm_inputs(),
                                              names=["x", "gamma", "beta"],
                                              title="batch_norm_forward (eval, running statistics)")),
        ("sync_batch_norm", lambda: check_function(_sync_batch_norm_one_process, F.sync_batch_norm_backward,
                                                   [_x(3, 4, 3, 2, seed=5) * 3 - 1, _x(4, seed=1), _x(4, seed=2)],
                                                   names=["x", "gamma", "beta"],
                                                   title="sync_batch_norm_forward (the arithmetic in one process)")),
        ("MaxPool2d", lambda: check_module(nn.MaxPool2d(3, stride=2, padding=1), _x(2, 2, 7, 6))),
        ("MaxPool2d", lambda: check_module(nn.MaxPool2d(2, stride=1, padding=1, dilation=2, ceil_mode=True),
                                           _x(1, 2, 5, 6))),
        ("AvgPool2d", lambda: check_module(nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True,
                                                        count_include_pad=False), _x(2, 2, 6, 7))),
        ("AvgPool2d", lambda: check_module(nn.AvgPool2d(2, stride=1), _x(1, 3, 4, 5))),
        ("AdaptiveAvgPool2d", lambda: check_module(nn.AdaptiveAvgPool2d((3, 4)), _x(2, 2, 7, 6))),
        ("AdaptiveAvgPool2d", lambda: check_module(nn.AdaptiveAvgPool2d(1), _x(2, 3, 4, 5))),
        ("Identity", lambda: check_module(nn.Identity(), _x(2, 3))),
        ("BasicBlock", lambda: check_module(resnet.BasicBlock(4, 4), _x(2, 4, 5, 5, seed=3),
                                            title="BasicBlock (identity shortcut)")),
        ("BasicBlock", lambda: check_module(resnet.BasicBlock(3, 4, 2, shortcut("B", 3, 4, 2)), _x(2, 3, 6, 6, seed=3),
                                            title="BasicBlock (stride 2, projection shortcut B)")),
        ("BasicBlock", lambda: check_module(resnet.BasicBlock(3, 6, 2, shortcut("A", 3, 6, 2)), _x(2, 3, 5, 5, seed=3),
                                            title="BasicBlock (stride 2, zero-padding shortcut A)")),
        ("BasicBlock", lambda: check_module(resnet.BasicBlock(4, 4, residual=False), _x(2, 4, 5, 5, seed=3),
                                            title="BasicBlock (plain: no skip connection)")),
        ("Bottleneck", lambda: check_module(resnet.Bottleneck(8, 2), _x(2, 8, 4, 4, seed=3),
                                            title="Bottleneck (identity shortcut)")),
        ("Bottleneck", lambda: check_module(resnet.Bottleneck(4, 4, 2, shortcut("B", 4, 16, 2), groups=2,
                                                              base_width=32), _x(2, 4, 5, 5, seed=3),
                                            title="Bottleneck (stride 2, groups 2, projection shortcut)")),
        ("ShortcutA", lambda: check_module(resnet.ShortcutA(3, 6, 2), _x(2, 3, 5, 4, seed=3))),
        *[("ResidualUnit", lambda order=order: check_module(
              preact.ResidualUnit(3, 3, order=order), _x(2, 3, 4, 4, seed=3),
              title=f"ResidualUnit ({order}, identity shortcut)")) for order in preact.ORDERS],
        ("ResidualUnit", lambda: check_module(
            preact.ResidualUnit(3, 4, 2, activate_before_split=True), _x(2, 3, 5, 5, seed=3),
            title="ResidualUnit (full pre-activation before the split, stride 2, projection)")),
        ("ResidualUnit", lambda: check_module(preact.ResidualUnit(4, 2, 2, bottleneck=True), _x(2, 4, 4, 4, seed=3),
                                              title="ResidualUnit (pre-activation bottleneck, stride 2)")),
        *[("ResidualUnit", lambda name=name, options=options: check_module(
              preact.ResidualUnit(3, 3, order="original", **options), _x(2, 3, 4, 4, seed=3),
              title=f"ResidualUnit (original, {name})")) for name, options in _SHORTCUT_VARIANTS.items()],
        ("ResidualUnit", _check_dropout_shortcut),  # last: it reseeds the generator
    ]


# -- deliberately broken backward passes, for --demo-failure ---------------------------------------
class ReLUIgnoringUpstream(nn.ReLU):
    """Backward returns the mask (x > 0) itself: right only for an all-ones upstream gradient."""

    def backward(self, grad_output):
        return super().backward(np.ones_like(grad_output))


class LinearWithMeanBias(nn.Linear):
    """The bias gradient is the MEAN of the upstream gradient over the batch, where the sum belongs."""

    def backward(self, grad_output):
        grad_input = super().backward(grad_output)
        self.bias.grad = self.bias.grad / len(grad_output)
        return grad_input


class BlockForgettingItsSkip(resnet.BasicBlock):
    """Forward with the skip connection, backward as if there were none: the gradient that went
    around the branch is dropped where the two paths meet at x."""

    def backward(self, grad_output):
        self.residual = False  # the plain block's backward: the branch's gradient only
        try:
            return super().backward(grad_output)
        finally:
            self.residual = True


def broken_cases():
    """``(what is wrong and where the table shows it, check)`` pairs."""
    return [
        ("ReLU whose backward ignores the upstream gradient dy (it returns the mask x > 0). The input row "
         "fails; with dy = 1 everywhere the check would have passed, which is why dy is random.",
         lambda: check_module(ReLUIgnoringUpstream(), _x(2, 3, 5, 4), title="ReLUIgnoringUpstream")),
        ("Linear layer whose bias gradient is the mean over the batch instead of the sum: the bias row "
         "fails, the other two pass; ||analytic|| is N = 4 times smaller than ||numerical||.",
         lambda: check_module(LinearWithMeanBias(5, 3), _x(4, 5), title="LinearWithMeanBias")),
        ("Residual block whose backward forgets the skip path: the input row fails, every parameter row "
         "passes (their gradients depend only on the gradient at the add, not on what reaches x). "
         "A check of the parameters alone would not notice.",
         lambda: check_module(BlockForgettingItsSkip(4, 4), _x(2, 4, 5, 5, seed=3),
                              title="BlockForgettingItsSkip")),
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

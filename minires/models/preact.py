"""Identity mappings in deep residual networks (He, Zhang, Ren, Sun 2016): pre-activation units,
and the shortcut variants and activation orderings that the paper compares them with.

A residual unit computes

    s = alpha * h(r) + beta * F(r)          x_next = f(s)

where ``r`` is the unit's input ``x`` (or ``x`` after the unit's pre-activation, see "the split"
below), ``F`` the branch (two 3x3 convolutions, or the 1x1-3x3-1x1 bottleneck), ``h`` the
shortcut, ``alpha`` and ``beta`` the factors of the shortcut and of the branch, and ``f`` what
follows the add. Shapes: x is (N, inplanes, H, W), x_next (N, planes * expansion, H/stride, W/stride).

Why the identity. With ``h(r) = r``, ``alpha = beta = 1`` and ``f`` the identity, unit after unit,

    x_L = x_l + sum_{i=l}^{L-1} F(x_i)
    dL/dx_l = dL/dx_L * (1 + d/dx_l sum_{i=l}^{L-1} F(x_i))

the gradient at the top reaches every unit directly, through the "1", whatever the branches do.
Scale the shortcut, ``h(r) = lambda r``, and that direct term becomes ``lambda^(L-l) dL/dx_L``: it
vanishes (lambda < 1) or explodes (lambda > 1) exponentially in the number of units in between.
A gate ``1 - g`` or a dropout mask on the shortcut multiplies the same way, a 1x1 convolution
multiplies by a matrix, and a ReLU after the add (``f = relu``, the original ResNet) cuts the
direct path wherever ``s < 0``.

The activation orderings (the paper's Fig. 4) for the basic unit; the bottleneck's third
convolution follows the same pattern (``bn{i}``, ``relu{i}`` go with ``conv{i}``):

    order              pre-activation   branch F                          after the add f
    "original"         -                conv1 bn1 relu1 conv2 bn2         relu_out          (a)
    "bn_after_add"     -                conv1 bn1 relu1 conv2             bn2 relu_out      (b)
    "relu_before_add"  -                conv1 bn1 relu1 conv2 bn2 relu2   -                 (c)
    "relu_preact"      relu_in          conv1 bn1 relu1 conv2 bn2         -                 (d)
    "full_preact"      bn1 relu1        conv1 bn2 relu2 conv2             -                 (e)

The shortcut variants (the paper's Fig. 2), on any ordering:

    variant                                   h(r)                     alpha            beta
    identity                                  r                        1                1
    constant scaling (shortcut_scale, ...)    r                        shortcut_scale   branch_scale
    exclusive gating   (gating="exclusive")   r                        1 - g            g
    shortcut-only gating ("shortcut_only")    r                        1 - g            1
    1x1 conv shortcut  (shortcut="conv1x1")   W_s r (+ BN)             1                1
    dropout shortcut   (shortcut="dropout")   m * r / (1 - p)          1 - p            1

with the gate ``g = sigmoid(W_g r + b_g)`` (a 1x1 convolution with bias, ``gate``, the bias
initialised to ``gate_bias``: b_g = -6 starts the shortcut gate ``1 - g`` near 1) and ``m`` a
Bernoulli(1 - p) mask. The dropout shortcut is thus ``m * r`` in training and ``(1 - p) r`` in
evaluation: "a scale of expectation 1 - p" on the shortcut, as the paper describes it.

Where the shape changes (stride 2, more channels) the shortcut is a projection: ``downsample="B"``
a 1x1 convolution with the stride (followed by BN in the post-activation orderings, as torchvision's
``downsample``; alone in the pre-activation ones, as in He et al.'s code, since the next unit
normalises), ``"A"`` the parameter-free ``ShortcutA``. The 1x1 conv variant uses such a projection
in every unit.

The split. A pre-activation unit keeps its BN-ReLU (or ReLU) inside the branch, so the shortcut
carries x itself (``r = x``). The first unit of a network and every unit whose shape changes apply
it *before* the split instead (``activate_before_split=True``: ``r = relu(bn1(x))``), so that the
projection shortcut reads the activated input too (the paper's Sec. 4.1 and He et al.'s code).

Backward, with ``g_s = dL/ds`` (from ``f``'s backward):

    dL/dF = beta * g_s                    dL/dh = alpha * g_s
    gating:  dL/dg = g_s * (F - h)  (exclusive)      dL/dg = -g_s * h  (shortcut-only)
             dL/dz = dL/dg * g (1 - g)               (z = W_g r + b_g, through the sigmoid)
    dL/dr = F'(r)^T dL/dF  +  h'(r)^T dL/dh  +  W_g^T dL/dz       (the paths meet at r)

and ``dL/dx = dL/dr``, or ``dL/dr`` passed back through the pre-activation when it comes
before the split.

Networks (``PreActResNet``, CIFAR-10, He et al.'s layout): a 3x3 stem convolution ``conv1`` (with
``bn1`` and ``relu`` after it in the post-activation orderings), three stages ``layer1..layer3`` of
units with 16, 32, 64 ``planes`` (expansion 4 in the bottleneck: 64, 128, 256 channels), then for
the pre-activation orderings the extra activation after the last add (``final_bn`` and
``final_relu``; ``final_relu`` only for "relu_preact"), ``avgpool``, ``flatten``, ``fc``. Depth 6n+2
with basic units (``preact_resnet20/56/110``), 9n+2 with bottlenecks (``preact_resnet164``, n = 18;
the stride sits on the first 1x1 convolution, as in He et al.'s code, not on the 3x3 as in
torchvision's ResNet v1.5). State-dict names of a full pre-activation unit, in order:
``bn1.*, conv1.weight, bn2.*, conv2.weight[, bn3.*, conv3.weight], shortcut.weight`` (the last
only where a "B" projection is), and of the net: ``conv1.weight, layer{1,2,3}.{i}.*, final_bn.*,
fc.weight, fc.bias``; BN entries are ``weight, bias, running_mean, running_var,
num_batches_tracked``. Gated units add ``gate.weight, gate.bias`` after the shortcut.
"""
from collections import OrderedDict

from .. import nn
from ..nn import init
from ..nn.checks import check_same_shape
from .resnet import ShortcutA, conv1x1, conv3x3, initialise_like_torchvision, make_shortcut

ORDERS = ("original", "bn_after_add", "relu_before_add", "relu_preact", "full_preact")
PRE_ACTIVATION_ORDERS = ("relu_preact", "full_preact")
SHORTCUTS = ("identity", "conv1x1", "dropout")
GATINGS = (None, "exclusive", "shortcut_only")


def unit_layout(order, convs):
    """The unit's layer names in forward order: ``(pre-activation, branch, after the add)``.

    ``convs`` is 2 (basic unit) or 3 (bottleneck). See the table in the module docstring.
    """
    if order == "full_preact":
        rest = [f"{kind}{i}" for i in range(2, convs + 1) for kind in ("bn", "relu", "conv")]
        return ["bn1", "relu1"], ["conv1", *rest], []
    body = [f"{kind}{i}" for i in range(1, convs) for kind in ("conv", "bn", "relu")] + [f"conv{convs}", f"bn{convs}"]
    if order == "original":
        return [], body, ["relu_out"]
    if order == "bn_after_add":
        return [], body[:-1], [body[-1], "relu_out"]
    if order == "relu_before_add":
        return [], [*body, f"relu{convs}"], []
    if order == "relu_preact":
        return ["relu_in"], body, []
    raise ValueError(f"ResidualUnit: order must be one of {', '.join(ORDERS)}; got {order!r}")


def _scaled(array, factor):
    """``factor * array``; the array itself for a factor of 1 (the identity adds nothing to round)."""
    return array if factor == 1 else factor * array


class ResidualUnit(nn.Module):
    """One residual unit, ``x_next = f(alpha * h(r) + beta * F(r))``, in any of the paper's
    orderings and shortcut variants (see the module docstring for the formulas and the names).

    ``bottleneck=False``: two 3x3 convolutions (expansion 1); ``True``: 1x1 (with the stride),
    3x3, 1x1 to ``4 * planes`` channels.
    """

    def __init__(self, inplanes, planes, stride=1, bottleneck=False, order="full_preact", shortcut="identity",
                 gating=None, gate_bias=0.0, shortcut_scale=1.0, branch_scale=1.0, dropout=0.5, downsample="B",
                 activate_before_split=False):
        super().__init__()
        _check_options(shortcut, gating, shortcut_scale, branch_scale, dropout, downsample)
        self.expansion = 4 if bottleneck else 1
        out_planes = planes * self.expansion
        self.order, self.kind, self.gating = order, shortcut, gating
        self.branch_scale = branch_scale
        self.shortcut_factor = shortcut_scale * (1 - dropout) if shortcut == "dropout" else shortcut_scale
        pre, branch, post = unit_layout(order, 3 if bottleneck else 2)
        # the pre-activation belongs to the branch unless it comes before the split
        self.pre_names, self.branch_names = (pre, branch) if activate_before_split else ([], pre + branch)
        self.post_names = post

        convs = ([conv1x1(inplanes, planes, stride), conv3x3(planes, planes), conv1x1(planes, out_planes)]
                 if bottleneck else [conv3x3(inplanes, planes, stride), conv3x3(planes, planes)])
        for name in pre + branch:
            setattr(self, name, self._layer(name, convs, bn_before_conv=order == "full_preact"))
        self.shortcut = self._make_shortcut(inplanes, out_planes, stride, downsample, dropout)
        if gating is not None:
            self.gate = nn.Conv2d(inplanes, out_planes, 1, stride=stride, bias=True)
            init.constant_(self.gate.bias, gate_bias)
            self.gate_sigmoid = nn.Sigmoid()
        for name in post:
            setattr(self, name, self._layer(name, convs, bn_before_conv=False))

    @staticmethod
    def _layer(name, convs, bn_before_conv):
        """``conv{i}``, ``bn{i}`` (over conv i's input channels when it comes before the conv, else
        over its output channels) or a ReLU."""
        if name.startswith("relu"):
            return nn.ReLU()
        conv = convs[int(name[-1]) - 1]
        if name.startswith("conv"):
            return conv
        return nn.BatchNorm2d(conv.in_channels if bn_before_conv else conv.out_channels)

    def _make_shortcut(self, inplanes, out_planes, stride, downsample, dropout):
        """``h``: the identity, a projection where the shape changes (or everywhere for "conv1x1"),
        then the dropout of the dropout shortcut."""
        if self.kind == "conv1x1" or stride != 1 or inplanes != out_planes:
            if downsample == "A" and self.kind != "conv1x1":
                projection = ShortcutA(inplanes, out_planes, stride)
            elif self.order in PRE_ACTIVATION_ORDERS:
                projection = conv1x1(inplanes, out_planes, stride)
            else:
                projection = make_shortcut("B", inplanes, out_planes, stride)
        else:
            projection = nn.Identity()
        if self.kind != "dropout":
            return projection
        drop = nn.Dropout(dropout)
        return drop if isinstance(projection, nn.Identity) else nn.Sequential(projection, drop)

    def extra_repr(self):
        gate = "" if self.gating is None else f", gating={self.gating!r}"
        return f"order={self.order!r}, shortcut={self.kind!r}{gate}"

    # -- forward and backward ---------------------------------------------------------------------
    def _forward_through(self, names, x):
        for name in names:
            x = getattr(self, name)(x)
        return x

    def _backward_through(self, names, grad):
        for name in reversed(names):
            grad = getattr(self, name).backward(grad)
        return grad

    def forward(self, x):
        r = self._forward_through(self.pre_names, x)           # the split point
        branch = self._forward_through(self.branch_names, r)   # F(r)
        shortcut = self.shortcut(r)                            # h(r)
        if self.gating is None:
            total = _scaled(shortcut, self.shortcut_factor) + _scaled(branch, self.branch_scale)
            gated = None
        else:
            gate = self.gate_sigmoid(self.gate(r))             # g = sigmoid(W_g r + b_g)
            mixed_branch = gate * branch if self.gating == "exclusive" else branch
            total = (1 - gate) * shortcut + mixed_branch
            gated = (shortcut, branch, gate)
        output = self._forward_through(self.post_names, total)
        self._save_for_backward((output.shape, gated))
        return output

    def backward(self, grad_output):
        output_shape, gated = self._saved_for_backward()
        check_same_shape(self, grad_output, output_shape, "upstream gradient")  # before any layer uses its cache
        grad_sum = self._backward_through(self.post_names, grad_output)              # dL/ds
        grad_shortcut_out, grad_branch_out, grad_gate = self._split(grad_sum, gated)  # dL/dh, dL/dF, dL/dg
        grad_r_branch = self._backward_through(self.branch_names, grad_branch_out)
        grad_r_shortcut = self.shortcut.backward(grad_shortcut_out)
        if grad_gate is not None:                              # the gate reads r as well: a third path
            grad_r_shortcut = grad_r_shortcut + self.gate.backward(self.gate_sigmoid.backward(grad_gate))
        return self._backward_through(self.pre_names, grad_r_branch + grad_r_shortcut)  # the paths meet at r

    def _split(self, grad_sum, gated):
        """The add's backward: ``(dL/dh, dL/dF, dL/dg)`` from ``dL/ds`` (``dL/dg`` None without a gate)."""
        if self.gating is None:
            return _scaled(grad_sum, self.shortcut_factor), _scaled(grad_sum, self.branch_scale), None
        shortcut, branch, gate = gated
        grad_shortcut_out = (1 - gate) * grad_sum
        if self.gating == "exclusive":
            return grad_shortcut_out, gate * grad_sum, grad_sum * (branch - shortcut)
        return grad_shortcut_out, grad_sum, -(grad_sum * shortcut)

    def gradient_split(self):
        """For ``minires.inspect``: the module whose input gradient is the branch part, the modules
        whose input gradients add up to the shortcut part (in the order backward adds them), and a
        short description of the shortcut."""
        shortcut_modules = [self.shortcut] + ([self.gate] if self.gating is not None else [])
        description = self.kind if self.gating is None else f"{self.gating} gate"
        if self.shortcut_factor != 1 or self.branch_scale != 1:
            description += f" {self.shortcut_factor:g}/{self.branch_scale:g}"
        return getattr(self, self.branch_names[0]), shortcut_modules, description


def _check_options(shortcut, gating, shortcut_scale, branch_scale, dropout, downsample):
    if shortcut not in SHORTCUTS:
        raise ValueError(f"ResidualUnit: shortcut must be one of {', '.join(SHORTCUTS)}; got {shortcut!r}")
    if gating not in GATINGS:
        raise ValueError(f"ResidualUnit: gating must be None, 'exclusive' or 'shortcut_only'; got {gating!r}")
    if gating is not None and (shortcut_scale != 1 or branch_scale != 1):
        raise ValueError("ResidualUnit: a gated shortcut takes no constant scaling; got shortcut_scale="
                         f"{shortcut_scale}, branch_scale={branch_scale}")
    if not 0 <= dropout < 1:
        raise ValueError(f"ResidualUnit: the dropout shortcut's probability must be in [0, 1); got {dropout}")
    if downsample not in ("A", "B"):
        raise ValueError(f"ResidualUnit: downsample must be 'A' or 'B'; got {downsample!r}")


class PreActResNet(nn.Sequential):
    """He et al.'s CIFAR network of residual units (the module docstring lists its layout and names).

    ``order`` and the shortcut options (``shortcut``, ``gating``, ``gate_bias``, ``shortcut_scale``,
    ``branch_scale``, ``dropout``) are passed to every unit; ``order="original"`` gives the
    post-activation ResNet built from the same units, for the paper's comparisons. Initialised like
    torchvision's ResNets: Kaiming normal (fan_out, ReLU) for every convolution, BN weight 1 and
    bias 0 (the gates' biases keep ``gate_bias``).
    """

    def __init__(self, depth, num_classes=10, bottleneck=False, width=16, order="full_preact", downsample="B",
                 **unit_options):
        per_unit = 9 if bottleneck else 6
        if (depth - 2) % per_unit != 0 or depth < per_unit + 2:
            raise ValueError(f"PreActResNet: depth must be {per_unit}n+2 with "
                             f"{'bottleneck' if bottleneck else 'basic'} units, got {depth}")
        n = (depth - 2) // per_unit
        expansion = 4 if bottleneck else 1
        layers = OrderedDict(conv1=conv3x3(3, width))
        if order not in PRE_ACTIVATION_ORDERS:
            layers.update(bn1=nn.BatchNorm2d(width), relu=nn.ReLU())
        inplanes = width
        for stage in range(3):
            planes, stride = width * 2 ** stage, 1 if stage == 0 else 2
            units = []
            for index in range(n):
                changes_shape = index == 0 and (stride != 1 or inplanes != planes * expansion)
                units.append(ResidualUnit(inplanes, planes, stride if index == 0 else 1, bottleneck, order,
                                          downsample=downsample,
                                          activate_before_split=changes_shape or (stage == 0 and index == 0),
                                          **unit_options))
                inplanes = planes * expansion
            layers[f"layer{stage + 1}"] = nn.Sequential(*units)
        if order == "full_preact":
            layers["final_bn"] = nn.BatchNorm2d(inplanes)
        if order in PRE_ACTIVATION_ORDERS:
            layers["final_relu"] = nn.ReLU()
        layers.update(avgpool=nn.AdaptiveAvgPool2d((1, 1)), flatten=nn.Flatten(1), fc=nn.Linear(inplanes, num_classes))
        super().__init__(layers)
        self.order = order
        initialise_like_torchvision(self)  # weights only: the gates' biases keep gate_bias


def preact_resnet20(num_classes=10, **options):
    return PreActResNet(20, num_classes, **options)


def preact_resnet56(num_classes=10, **options):
    return PreActResNet(56, num_classes, **options)


def preact_resnet110(num_classes=10, **options):
    return PreActResNet(110, num_classes, **options)


def preact_resnet164(num_classes=10, **options):
    """The paper's bottleneck net: 18 units of 1x1-3x3-1x1 per stage, 1.7M parameters."""
    return PreActResNet(164, num_classes, bottleneck=True, **options)

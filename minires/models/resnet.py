"""Residual networks (He et al., 2015), with the gradient through each skip connection written out.

A residual block computes

    y = relu( F(x) + S(x) )

where F is the *branch* (conv-BN-ReLU-conv-BN, or the 1x1-3x3-1x1 bottleneck) and S the
*shortcut*: the identity when shapes agree, otherwise a projection (option B: 1x1 conv with
stride + BN, torchvision's ``downsample``) or He et al.'s parameter-free option A (take every
``stride``-th pixel, zero-pad the new channels, half in front and half behind).

Backward through the add. With ``s = F(x) + S(x)`` and ``g = dL/ds``:

    dL/dF = g        dL/dS = g          (an add copies its gradient to both operands)
    dL/dx = F'(x)^T g + S'(x)^T g       (two paths meet at x: their gradients add)

With an identity shortcut the second term is ``g`` itself: whatever the branch does, the
gradient reaches ``x`` undiminished. That is why a 110-layer ResNet trains and the same
network without the adds (``residual=False``, the paper's "plain" net) struggles.
``block.route`` (``GradientRouting``) sends the backward through one operand of the add only,
for the path analysis of ``minires.study.paths``.

Names follow torchvision (``conv1, bn1, layer1..layer4, fc``; in blocks ``conv1, bn1, conv2,
bn2[, conv3, bn3], downsample``), so ``state_dict()`` keys are exactly torchvision's.
"""
from .. import nn
from ..backend import get_array_module, is_channels_last
from ..nn import init
from .weights import find_weights


def conv3x3(in_planes, out_planes, stride=1, groups=1):
    """3x3 convolution with padding 1 and no bias (BN follows it)."""
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, groups=groups, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    """1x1 convolution without bias."""
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class ShortcutA(nn.Module):
    """Option A: ``S(x) = zero-pad-channels(x[:, :, ::stride, ::stride])``, no parameters.

    Backward: the pixels that were taken get the gradient of their copies; the skipped pixels
    and the padded channels get nothing: ``dx[:, :, ::s, ::s] = dy[:, front:front + C_in]``.
    """

    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        if out_planes < in_planes:
            raise ValueError(f"ShortcutA: cannot pad {in_planes} channels down to {out_planes}")
        self.in_planes, self.out_planes, self.stride = in_planes, out_planes, stride
        self.front = (out_planes - in_planes) // 2  # half the new channels in front, the rest behind

    def extra_repr(self):
        return f"{self.in_planes}, {self.out_planes}, stride={self.stride}"

    def _channels(self):
        return slice(self.front, self.front + self.in_planes)

    def forward(self, x):
        taken = x[:, :, ::self.stride, ::self.stride]
        y = _zeros_in_layout_of(x, (x.shape[0], self.out_planes) + taken.shape[2:])
        y[:, self._channels()] = taken
        self._save_for_backward(x.shape)
        return y

    def backward(self, grad_output):
        x_shape = self._saved_for_backward()
        dx = _zeros_in_layout_of(grad_output, x_shape)
        dx[:, :, ::self.stride, ::self.stride] = grad_output[:, self._channels()]
        return dx


def _zeros_in_layout_of(like, shape):
    """Zeros of NCHW ``shape``, channels-last in memory when ``like`` is: the convolutions work
    channels-last inside, and the residual add is twice as fast on operands of one layout."""
    xp = get_array_module(like)
    if is_channels_last(like):
        n, c, h, w = shape
        return xp.zeros((n, h, w, c), dtype=like.dtype).transpose(0, 3, 1, 2)
    return xp.zeros(shape, dtype=like.dtype)


def _add_residual(branch, shortcut, residual):
    """The forward of the add (or, in a plain net, no add at all)."""
    return branch + shortcut if residual else branch


ROUTES = (None, "branch", "shortcut")


class GradientRouting:
    """``block.route``: which operand of the residual add its backward pass feeds (path studies).

    With ``g = dL/d(F(x) + S(x))``, taken *after* the ReLU that follows the add (so every route
    sees that ReLU's mask):

        route = None         dL/dx = F'(x)^T g + S'(x)^T g      the ordinary backward (default)
        route = "branch"     dL/dx = F'(x)^T g                  the shortcut receives 0
        route = "shortcut"   dL/dx = S'(x)^T g                  the branch receives 0

    Unrolled, n blocks make 2^n paths from the output to the input, one per choice of
    (branch or shortcut) in every block; routing every block picks one path, and the backward
    then returns that path's share of the input gradient. The backward is linear in g, so the
    2^n routed input gradients add up to the ordinary one (Veit et al. 2016, Sec. 5;
    ``minires.study.paths``). Only the backward changes; forward ignores the route.
    """

    _route = None

    @property
    def route(self):
        return self._route

    @route.setter
    def route(self, route):
        if route not in ROUTES:
            raise ValueError(f"{type(self).__name__}: route must be one of {ROUTES}, got {route!r}")
        if route is not None and not self.residual:
            raise ValueError(f"{type(self).__name__}: a plain block (residual=False) has no add to "
                             f"route; route must be None, got {route!r}")
        self._route = route

    def _routed(self, grad_branch_out, grad_shortcut_out):
        """The two copies of g, one of them replaced by zeros when a route is set."""
        if self._route == "branch":
            return grad_branch_out, get_array_module(grad_shortcut_out).zeros_like(grad_shortcut_out)
        if self._route == "shortcut":
            return get_array_module(grad_branch_out).zeros_like(grad_branch_out), grad_shortcut_out
        return grad_branch_out, grad_shortcut_out


class BasicBlock(GradientRouting, nn.Module):
    """``relu(bn2(conv2(relu(bn1(conv1(x))))) + S(x))``: two 3x3 convs (ResNet-18/34, CIFAR ResNets)."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, residual=True):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock: supports only groups=1 and base_width=64, got {groups}, {base_width}")
        self.residual = residual
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.relu2 = nn.ReLU()

    def forward(self, x):
        branch = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        self._save_for_backward(True)
        return self.relu2(_add_residual(branch, shortcut, self.residual))

    def backward(self, grad_output):
        self._saved_for_backward()
        grad_sum = self.relu2.backward(grad_output)      # dL/d(F(x) + S(x))
        grad_branch_out = grad_sum                       # the add copies it to the branch ...
        grad_shortcut_out = grad_sum                     # ... and to the shortcut
        grad_branch_out, grad_shortcut_out = self._routed(grad_branch_out, grad_shortcut_out)  # block.route
        grad_conv2_out = self.bn2.backward(grad_branch_out)
        grad_relu1_out = self.conv2.backward(grad_conv2_out)
        grad_bn1_out = self.relu1.backward(grad_relu1_out)
        grad_conv1_out = self.bn1.backward(grad_bn1_out)
        grad_x_branch = self.conv1.backward(grad_conv1_out)
        if not self.residual:
            return grad_x_branch
        grad_x_shortcut = grad_shortcut_out if self.downsample is None else self.downsample.backward(grad_shortcut_out)
        return grad_x_branch + grad_x_shortcut           # the two paths meet at x


class Bottleneck(GradientRouting, nn.Module):
    """1x1 reduce, 3x3 (stride here: "ResNet v1.5"), 1x1 expand by 4, plus the shortcut (ResNet-50+)."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64, residual=True):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.residual = residual
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.relu3 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        branch = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        self._save_for_backward(True)
        return self.relu3(_add_residual(branch, shortcut, self.residual))

    def backward(self, grad_output):
        self._saved_for_backward()
        grad_sum = self.relu3.backward(grad_output)      # dL/d(F(x) + S(x))
        grad_branch_out = grad_sum                       # the add copies it to the branch ...
        grad_shortcut_out = grad_sum                     # ... and to the shortcut
        grad_branch_out, grad_shortcut_out = self._routed(grad_branch_out, grad_shortcut_out)  # block.route
        grad_conv3_out = self.bn3.backward(grad_branch_out)
        grad_relu2_out = self.conv3.backward(grad_conv3_out)
        grad_bn2_out = self.relu2.backward(grad_relu2_out)
        grad_conv2_out = self.bn2.backward(grad_bn2_out)
        grad_relu1_out = self.conv2.backward(grad_conv2_out)
        grad_bn1_out = self.relu1.backward(grad_relu1_out)
        grad_conv1_out = self.bn1.backward(grad_bn1_out)
        grad_x_branch = self.conv1.backward(grad_conv1_out)
        if not self.residual:
            return grad_x_branch
        grad_x_shortcut = grad_shortcut_out if self.downsample is None else self.downsample.backward(grad_shortcut_out)
        return grad_x_branch + grad_x_shortcut           # the two paths meet at x


def make_shortcut(kind, inplanes, outplanes, stride):
    """The shortcut of a block whose shape changes: option "A" (pad) or "B" (1x1 conv + BN)."""
    if kind == "A":
        return ShortcutA(inplanes, outplanes, stride)
    if kind == "B":
        return nn.Sequential(conv1x1(inplanes, outplanes, stride), nn.BatchNorm2d(outplanes))
    raise ValueError(f"ResNet: shortcut must be 'A' or 'B', got {kind!r}")


def initialise_like_torchvision(model):
    """torchvision's ResNet initialisation: Kaiming normal (fan_out, ReLU) for every convolution's
    weight, batch norm weight 1 and bias 0; linear layers keep nn.Linear's own."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class ResNet(nn.Module):
    """stem -> stages of residual blocks -> global average pool -> fc.

    ``stem="imagenet"``: 7x7/2 conv, BN, ReLU, 3x3/2 max pool (torchvision's ResNets).
    ``stem="cifar"``: 3x3/1 conv, BN, ReLU, no pooling (32x32 inputs).
    ``widths`` are the stages' ``planes`` (64, 128, 256, 512 for ImageNet ResNets; 16, 32, 64
    for He et al.'s CIFAR ResNets); each stage after the first halves the resolution.
    ``residual=False`` builds the same network without the adds (and without shortcuts).
    """

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1,
                 width_per_group=64, residual=True, widths=(64, 128, 256, 512), stem="imagenet",
                 shortcut="B"):
        super().__init__()
        if len(layers) != len(widths):
            raise ValueError(f"ResNet: {len(layers)} stage depths given for {len(widths)} stage widths")
        self.groups, self.base_width, self.residual, self.shortcut = groups, width_per_group, residual, shortcut
        self.inplanes = widths[0]
        self._make_stem(stem, widths[0])
        for index, (planes, blocks) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{index + 1}", self._make_layer(block, planes, blocks, stride=1 if index == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(widths[-1] * block.expansion, num_classes)
        self._initialise(zero_init_residual)

    def _make_stem(self, stem, planes):
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, planes, kernel_size=7, stride=2, padding=3, bias=False)
        elif stem == "cifar":
            self.conv1 = conv3x3(3, planes)
        else:
            raise ValueError(f"ResNet: stem must be 'imagenet' or 'cifar', got {stem!r}")
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if self.residual and (stride != 1 or self.inplanes != planes * block.expansion):
            downsample = make_shortcut(self.shortcut, self.inplanes, planes * block.expansion, stride)
        stage = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, self.residual)]
        self.inplanes = planes * block.expansion
        stage += [block(self.inplanes, planes, groups=self.groups, base_width=self.base_width, residual=self.residual)
                  for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def _initialise(self, zero_init_residual):
        initialise_like_torchvision(self)
        if zero_init_residual:  # each block starts as the identity: y = relu(0 + S(x))
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    init.zeros_(module.bn2.weight)

    def _path(self):
        """The top-level modules in the order forward applies them."""
        return [module for _, module in self.named_children()]

    def forward(self, x):
        for module in self._path():
            x = module(x)
        self._save_for_backward(True)
        return x

    def backward(self, grad_output):
        self._saved_for_backward()
        for module in reversed(self._path()):
            grad_output = module.backward(grad_output)
        return grad_output


# -- torchvision's ImageNet family ------------------------------------------------------------
def resnet18(num_classes=1000, zero_init_residual=False, residual=True):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual, residual=residual)


def resnet34(num_classes=1000, zero_init_residual=False, residual=True):
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, zero_init_residual, residual=residual)


def resnet50(num_classes=1000, zero_init_residual=False, residual=True):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, residual=residual)


def resnet101(num_classes=1000, zero_init_residual=False, residual=True):
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, zero_init_residual, residual=residual)


def resnet152(num_classes=1000, zero_init_residual=False, residual=True):
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, zero_init_residual, residual=residual)


def resnext50_32x4d(num_classes=1000, zero_init_residual=False, residual=True):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, groups=32,
                  width_per_group=4, residual=residual)


def wide_resnet50_2(num_classes=1000, zero_init_residual=False, residual=True):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, zero_init_residual, width_per_group=128,
                  residual=residual)


# -- CIFAR-10 ----------------------------------------------------------------------------------
def resnet18_cifar(num_classes=10, zero_init_residual=False, residual=True, width=64):
    """The usual CIFAR ResNet-18: a 3x3 stride-1 stem, no max pool; 11,173,962 parameters."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, zero_init_residual, residual=residual,
                  widths=(width, 2 * width, 4 * width, 8 * width), stem="cifar")


def cifar_resnet(depth, num_classes=10, shortcut="A", residual=True, width=16, zero_init_residual=False,
                 weights=None):
    """He et al.'s CIFAR ResNet of depth 6n+2: three stages of n BasicBlocks, 16/32/64 channels.

    ``weights="cifar10"`` loads the trained weights that ship with minires (ResNet-20/56 and their
    plain twins; see ``minires.models.weights``); the other arguments must be the ones they were
    trained with.
    """
    if (depth - 2) % 6 != 0 or depth < 8:
        raise ValueError(f"cifar_resnet: depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
    trained = None if weights is None else find_weights(weights, depth, residual, num_classes=num_classes,
                                                        shortcut=shortcut, width=width)
    n = (depth - 2) // 6
    model = ResNet(BasicBlock, [n, n, n], num_classes, zero_init_residual, residual=residual,
                   widths=(width, 2 * width, 4 * width), stem="cifar", shortcut=shortcut)
    return model if trained is None else trained.load_into(model)


def resnet20(num_classes=10, shortcut="A", residual=True, width=16, weights=None):
    return cifar_resnet(20, num_classes, shortcut, residual, width, weights=weights)


def resnet32(num_classes=10, shortcut="A", residual=True, width=16, weights=None):
    return cifar_resnet(32, num_classes, shortcut, residual, width, weights=weights)


def resnet44(num_classes=10, shortcut="A", residual=True, width=16, weights=None):
    return cifar_resnet(44, num_classes, shortcut, residual, width, weights=weights)


def resnet56(num_classes=10, shortcut="A", residual=True, width=16, weights=None):
    return cifar_resnet(56, num_classes, shortcut, residual, width, weights=weights)


def resnet110(num_classes=10, shortcut="A", residual=True, width=16, weights=None):
    return cifar_resnet(110, num_classes, shortcut, residual, width, weights=weights)

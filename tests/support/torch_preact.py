"""A PyTorch reference for ``minires.models.preact``: He et al.'s (2016) residual units in the five
activation orderings with the paper's shortcut variants, and the CIFAR networks built from them.

Written from the paper's figures, one ordering at a time, with PyTorch's autograd doing the
backward; it shares no code with minires. Attributes are created in the order that gives
minires' documented state-dict names and order. Used only as the reference in the tests.
"""
import torch
import torch.nn as tnn
import torch.nn.functional as F

from tests.support import torch_resnet

PRE_ACTIVATION = ("relu_preact", "full_preact")


class Unit(tnn.Module):
    def __init__(self, inplanes, planes, stride=1, bottleneck=False, order="full_preact", shortcut="identity",
                 gating=None, gate_bias=0.0, shortcut_scale=1.0, branch_scale=1.0, dropout=0.5, downsample="B",
                 activate_before_split=False):
        super().__init__()
        out = planes * (4 if bottleneck else 1)
        convs = ([(inplanes, planes, 1, stride), (planes, planes, 3, 1), (planes, out, 1, 1)] if bottleneck
                 else [(inplanes, planes, 3, stride), (planes, planes, 3, 1)])
        self.k, self.order, self.gating, self.split = len(convs), order, gating, activate_before_split
        for i, (cin, cout, size, s) in enumerate(convs, start=1):
            if order == "full_preact":
                setattr(self, f"bn{i}", tnn.BatchNorm2d(cin))
            setattr(self, f"conv{i}", tnn.Conv2d(cin, cout, size, s, padding=size // 2, bias=False))
            if order != "full_preact" and not (order == "bn_after_add" and i == self.k):
                setattr(self, f"bn{i}", tnn.BatchNorm2d(cout))
        changes_shape = stride != 1 or inplanes != out
        if shortcut == "conv1x1" or changes_shape:
            if downsample == "A" and shortcut != "conv1x1":
                projection = torch_resnet.ShortcutA(inplanes, out, stride)
            elif order in PRE_ACTIVATION:
                projection = tnn.Conv2d(inplanes, out, 1, stride, bias=False)
            else:
                projection = tnn.Sequential(tnn.Conv2d(inplanes, out, 1, stride, bias=False), tnn.BatchNorm2d(out))
        else:
            projection = tnn.Identity()
        if shortcut == "dropout":
            self.shortcut = tnn.Dropout(dropout) if isinstance(projection, tnn.Identity) else \
                tnn.Sequential(projection, tnn.Dropout(dropout))
            self.alpha = shortcut_scale * (1 - dropout)
        else:
            self.shortcut, self.alpha = projection, shortcut_scale
        self.beta = branch_scale
        if gating is not None:
            self.gate = tnn.Conv2d(inplanes, out, 1, stride, bias=True)
            tnn.init.constant_(self.gate.bias, gate_bias)
        if order == "bn_after_add":
            setattr(self, f"bn{self.k}", tnn.BatchNorm2d(out))

    def conv(self, i, t):
        return getattr(self, f"conv{i}")(t)

    def bn(self, i, t):
        return getattr(self, f"bn{i}")(t)

    def branch(self, t):
        """F, from the branch's input (after any pre-activation that comes before the split)."""
        k = self.k
        if self.order == "full_preact":
            t = self.conv(1, t if self.split else F.relu(self.bn(1, t)))
            for i in range(2, k + 1):
                t = self.conv(i, F.relu(self.bn(i, t)))
            return t
        if self.order == "relu_preact" and not self.split:
            t = F.relu(t)
        for i in range(1, k):
            t = F.relu(self.bn(i, self.conv(i, t)))
        t = self.conv(k, t)
        if self.order == "bn_after_add":
            return t
        t = self.bn(k, t)
        return F.relu(t) if self.order == "relu_before_add" else t

    def forward(self, x):
        r = x
        if self.split and self.order == "full_preact":
            r = F.relu(self.bn1(x))
        elif self.split and self.order == "relu_preact":
            r = F.relu(x)
        f, h = self.branch(r), self.shortcut(r)
        if self.gating is None:
            s = self.alpha * h + self.beta * f
        else:
            g = torch.sigmoid(self.gate(r))
            s = (1 - g) * h + (g * f if self.gating == "exclusive" else f)
        if self.order == "original":
            return F.relu(s)
        if self.order == "bn_after_add":
            return F.relu(self.bn(self.k, s))
        return s


class Net(tnn.Module):
    def __init__(self, depth, num_classes=10, bottleneck=False, width=16, order="full_preact", downsample="B",
                 **options):
        super().__init__()
        n = (depth - 2) // (9 if bottleneck else 6)
        expansion = 4 if bottleneck else 1
        self.order = order
        self.conv1 = tnn.Conv2d(3, width, 3, 1, 1, bias=False)
        if order not in PRE_ACTIVATION:
            self.bn1 = tnn.BatchNorm2d(width)
        inplanes = width
        for stage in range(3):
            planes, stride = width * 2 ** stage, 1 if stage == 0 else 2
            units = []
            for i in range(n):
                first = i == 0
                split = first and (stage == 0 or stride != 1 or inplanes != planes * expansion)
                units.append(Unit(inplanes, planes, stride if first else 1, bottleneck, order, downsample=downsample,
                                  activate_before_split=split, **options))
                inplanes = planes * expansion
            setattr(self, f"layer{stage + 1}", tnn.Sequential(*units))
        if order == "full_preact":
            self.final_bn = tnn.BatchNorm2d(inplanes)
        self.fc = tnn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        if self.order not in PRE_ACTIVATION:
            x = F.relu(self.bn1(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.order == "full_preact":
            x = F.relu(self.final_bn(x))
        elif self.order == "relu_preact":
            x = F.relu(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

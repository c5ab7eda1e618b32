"""A PyTorch reference ResNet, written here because torchvision cannot be installed beside torch.

It follows torchvision's ``resnet.py`` (module names, ResNet v1.5 stride on the 3x3, groups and
base width) and adds what torchvision lacks: the CIFAR stem, He et al.'s option-A shortcut, and
``residual=False`` plain nets. Used only as the reference in the tests.
"""
import torch
import torch.nn as tnn
import torch.nn.functional as F


def conv3x3(inp, out, stride=1, groups=1):
    return tnn.Conv2d(inp, out, 3, stride, 1, groups=groups, bias=False)


def conv1x1(inp, out, stride=1):
    return tnn.Conv2d(inp, out, 1, stride, bias=False)


class ShortcutA(tnn.Module):
    def __init__(self, inp, out, stride):
        super().__init__()
        self.front, self.back, self.stride = (out - inp) // 2, out - inp - (out - inp) // 2, stride

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.front, self.back))


class BasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inp, planes, stride=1, downsample=None, groups=1, base_width=64, residual=True):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(inp, planes, stride), tnn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), tnn.BatchNorm2d(planes)
        self.relu, self.downsample, self.residual = tnn.ReLU(), downsample, residual

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class Bottleneck(tnn.Module):
    expansion = 4

    def __init__(self, inp, planes, stride=1, downsample=None, groups=1, base_width=64, residual=True):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1, self.bn1 = conv1x1(inp, width), tnn.BatchNorm2d(width)
        self.conv2, self.bn2 = conv3x3(width, width, stride, groups), tnn.BatchNorm2d(width)
        self.conv3, self.bn3 = conv1x1(width, planes * 4), tnn.BatchNorm2d(planes * 4)
        self.relu, self.downsample, self.residual = tnn.ReLU(), downsample, residual

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class ResNet(tnn.Module):
    def __init__(self, block, layers, num_classes=1000, groups=1, width_per_group=64, residual=True,
                 widths=(64, 128, 256, 512), stem="imagenet", shortcut="B"):
        super().__init__()
        self.inplanes, self.groups, self.base_width = widths[0], groups, width_per_group
        self.residual, self.shortcut = residual, shortcut
        if stem == "imagenet":
            self.conv1 = tnn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        else:
            self.conv1 = conv3x3(3, widths[0])
        self.bn1, self.relu = tnn.BatchNorm2d(widths[0]), tnn.ReLU()
        self.maxpool = tnn.MaxPool2d(3, 2, 1) if stem == "imagenet" else tnn.Identity()
        for i, (planes, n) in enumerate(zip(widths, layers)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, planes, n, 1 if i == 0 else 2))
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(widths[-1] * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride):
        downsample = None
        if self.residual and (stride != 1 or self.inplanes != planes * block.expansion):
            if self.shortcut == "A":
                downsample = ShortcutA(self.inplanes, planes * block.expansion, stride)
            else:
                downsample = tnn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                            tnn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, self.residual)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, None, self.groups, self.base_width, self.residual)
                   for _ in range(1, blocks)]
        return tnn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x)))) if hasattr(self, "layer4") else \
            self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes=1000):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet50(num_classes=1000):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


def resnext50_32x4d(num_classes=1000):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, groups=32, width_per_group=4)


def wide_resnet50_2(num_classes=1000):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, width_per_group=128)


def resnet18_cifar(num_classes=10):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, stem="cifar")


def resnet20(num_classes=10, shortcut="A", residual=True):
    return ResNet(BasicBlock, [3, 3, 3], num_classes, widths=(16, 32, 64), stem="cifar",
                  shortcut=shortcut, residual=residual)

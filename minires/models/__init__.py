"""The ResNet family: torchvision's ImageNet models, the CIFAR-10 ResNets and the pre-activation ResNets
(He et al. 2016), built from minires layers."""
from .resnet import (BasicBlock, Bottleneck, ResNet, ShortcutA, cifar_resnet, resnet18, resnet18_cifar,
                     resnet20, resnet32, resnet34, resnet44, resnet50, resnet56, resnet101, resnet110,
                     resnet152, resnext50_32x4d, wide_resnet50_2)
from .preact import (PreActResNet, ResidualUnit, preact_resnet20, preact_resnet56, preact_resnet110,
                     preact_resnet164)

CIFAR_MODELS = {
    "resnet18_cifar": resnet18_cifar, "resnet20": resnet20, "resnet32": resnet32,
    "resnet44": resnet44, "resnet56": resnet56, "resnet110": resnet110,
}
IMAGENET_MODELS = {
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
    "resnet152": resnet152, "resnext50_32x4d": resnext50_32x4d, "wide_resnet50_2": wide_resnet50_2,
}

"""The ResNet family: torchvision's ImageNet models and the CIFAR-10 ResNets, built from minires layers."""
from .resnet import (BasicBlock, Bottleneck, ResNet, ShortcutA, cifar_resnet, resnet18, resnet18_cifar,
                     resnet20, resnet32, resnet34, resnet44, resnet50, resnet56, resnet101, resnet110,
                     resnet152, resnext50_32x4d, wide_resnet50_2)

CIFAR_MODELS = {
    "resnet18_cifar": resnet18_cifar, "resnet20": resnet20, "resnet32": resnet32,
    "resnet44": resnet44, "resnet56": resnet56, "resnet110": resnet110,
}
IMAGENET_MODELS = {
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50, "resnet101": resnet101,
    "resnet152": resnet152, "resnext50_32x4d": resnext50_32x4d, "wide_resnet50_2": wide_resnet50_2,
}

"""Layers as PyTorch-shaped modules; the pure forward/backward functions are in ``minires.nn.functional``.

``reference_kernels()`` runs every op inside a ``with`` block on its textbook route (see ``reference.py``).
"""
from . import functional
from . import init
from .module import Module, Parameter, RemovableHandle, Sequential, StateDictError
from .activation import ReLU, Sigmoid
from .linear import Linear
from .dropout import Dropout
from .loss import CrossEntropyLoss
from .reshape import Flatten, Identity
from .conv import Conv2d
from .norm import BatchNorm1d, BatchNorm2d
from .sync_norm import SyncBatchNorm, convert_sync_batchnorm
from .pool import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d
from .reference import reference_kernels

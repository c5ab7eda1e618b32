"""Data: CIFAR-10 from the official python-version files, batched transforms, the loader.

    from minires import data
    train_set = data.CIFAR10(root, train=True)   # root holds cifar-10-batches-py/: uint8 (50000, 3, 32, 32)
    augment = data.Compose([data.RandomCrop(32, padding=4), data.RandomHorizontalFlip(),
                            data.ToFloat(), data.Normalize(data.CIFAR10_MEAN, data.CIFAR10_STD)])
    loader = data.DataLoader(train_set, batch_size=128, shuffle=True, transform=augment, seed=0)
    for images, labels in loader:          # float32 NCHW and int64 NumPy arrays, on the host
        ...
"""
from .cifar import CIFAR10, DatasetCorruptError, DatasetNotFoundError, DownloadError
from .loader import ArrayDataset, DataLoader, Subset
from .transforms import (CIFAR10_MEAN, CIFAR10_STD, Compose, Normalize, RandomCrop,
                         RandomHorizontalFlip, ToFloat)

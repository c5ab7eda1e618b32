"""Batched image transforms: the CIFAR-10 augmentations, vectorised over the batch.

A transform is called as ``t(batch, rng)``: ``batch`` is a host NumPy array (N, C, H, W)
and ``rng`` a ``numpy.random.Generator`` (the ``DataLoader`` passes one per batch, derived
from its seed, the epoch and the batch index; ``None`` means minires' global generator,
see ``minires.manual_seed``). Each returns a new array and never modifies its input. Every
image gets its own random crop and flip, as with torchvision's per-image transforms, but
without a Python loop over the images.

The usual CIFAR-10 training pipeline (crop and flip on uint8, the cheapest dtype to move)::

    Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(),
             ToFloat(), Normalize(CIFAR10_MEAN, CIFAR10_STD)])

Transforms run on the host, in the loader's background thread while the model computes;
moving the batch to a GPU is the training loop's explicit step. A CuPy batch is refused.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..nn.checks import check_rank
from ..random import default_generator

# Per-channel (R, G, B) mean and standard deviation of the 50,000 training images on [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _check_batch(transform, batch):
    name = type(transform).__name__
    if not isinstance(batch, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy batch (transforms run on the host), got "
                        f"{type(batch).__module__}.{type(batch).__name__}; apply the transforms "
                        "before moving the batch to the device")
    check_rank(name, batch, 4, "(N, C, H, W)", "batch")


def _pair(value, what):
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{what}: expected a positive int or a pair of them, got {value!r}")
    return pair


class Compose:
    """Apply ``transforms`` in order, all drawing from the same generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, batch, rng=None):
        rng = default_generator() if rng is None else rng
        for transform in self.transforms:
            batch = transform(batch, rng)
        return batch

    def __repr__(self):
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{inner}\n])"


class ToFloat:
    """uint8 in 0..255 -> ``dtype`` in [0, 1] (``x / 255``, like ``ToTensor``); floats are cast."""

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)

    def __call__(self, batch, rng=None):
        _check_batch(self, batch)
        if batch.dtype == np.uint8:
            out = batch.astype(self.dtype)
            return np.divide(out, 255, out=out)
        if batch.dtype.kind == "f":
            return batch.astype(self.dtype)
        raise TypeError(f"ToFloat: expected a uint8 or floating-point batch, "
                        f"got dtype {batch.dtype}")

    def __repr__(self):
        return f"ToFloat(dtype={self.dtype})"


class Normalize:
    """Per channel ``c``: ``(x[:, c] - mean[c]) / std[c]``; float32 stays float32."""

    def __init__(self, mean, std):
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize: mean has {len(self.mean)} values but std has "
                             f"{len(self.std)}")
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std must not contain zeros, got {self.std}")

    def __call__(self, batch, rng=None):
        _check_batch(self, batch)
        if batch.dtype.kind != "f":
            raise TypeError(f"Normalize: expected a floating-point batch (put ToFloat() before "
                            f"Normalize), got dtype {batch.dtype}")
        if batch.shape[1] != len(self.mean):
            raise ValueError(f"Normalize: mean and std have {len(self.mean)} channels, got a batch "
                             f"of shape {batch.shape}")
        # mean and std in the batch's dtype, shaped (C, 1, 1) to broadcast over N, H and W.
        mean = np.asarray(self.mean, dtype=batch.dtype).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=batch.dtype).reshape(-1, 1, 1)
        out = np.subtract(batch, mean)
        return np.divide(out, std, out=out)

    def __repr__(self):
        return f"Normalize(mean={self.mean}, std={self.std})"


class RandomHorizontalFlip:
    """Mirror each image left-right with probability ``p``, independently per image."""

    def __init__(self, p=0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p}")
        self.p = p

    def __call__(self, batch, rng=None):
        _check_batch(self, batch)
        rng = default_generator() if rng is None else rng
        flip = rng.random(len(batch)) < self.p
        # Copy, then overwrite the chosen images with their mirrored views (4x faster than
        # np.where with a broadcast mask, which tests the mask for every pixel).
        out = batch.copy()
        out[flip] = batch[flip, ..., ::-1]
        return out

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


class RandomCrop:
    """Pad each image, then cut a ``size`` window at a random offset, independently per image.

    ``padding`` as in torchvision: an int for all sides, ``(left/right, top/bottom)`` or
    ``(left, top, right, bottom)``; ``padding_mode`` is ``"constant"`` (with ``fill``, 0 by
    default: black borders), ``"edge"``, ``"reflect"`` or ``"symmetric"``. Offsets are uniform
    over the valid positions, ``top`` in ``0..H_padded - h``, ``left`` in ``0..W_padded - w``.

    Vectorised: the batch is padded once; ``sliding_window_view`` sees it as every possible
    window, shape (N, C, top, left, h, w), without copying; one fancy-indexing gather then picks
    window ``(top[n], left[n])`` for each image ``n``.
    """

    def __init__(self, size, padding=None, fill=0, padding_mode="constant"):
        self.size = _pair(size, "RandomCrop size")
        self.padding = self._sides(padding)
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ValueError(f"RandomCrop: padding_mode must be 'constant', 'edge', 'reflect' or "
                             f"'symmetric', got {padding_mode!r}")
        self.fill, self.padding_mode = fill, padding_mode

    @staticmethod
    def _sides(padding):
        """``(left, top, right, bottom)`` from torchvision's three spellings."""
        if padding is None:
            return (0, 0, 0, 0)
        sides = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
        if len(sides) == 2:
            sides = sides * 2
        if len(sides) != 4 or not all(isinstance(s, int) and s >= 0 for s in sides):
            raise ValueError("RandomCrop: padding must be a non-negative int or a sequence of 2 "
                             f"or 4 of them, got {padding!r}")
        return sides

    def _pad(self, batch):
        left, top, right, bottom = self.padding
        if not any(self.padding):
            return batch
        widths = ((0, 0), (0, 0), (top, bottom), (left, right))
        if self.padding_mode == "constant":
            return np.pad(batch, widths, mode="constant", constant_values=self.fill)
        return np.pad(batch, widths, mode=self.padding_mode)

    def __call__(self, batch, rng=None):
        _check_batch(self, batch)
        rng = default_generator() if rng is None else rng
        padded = self._pad(batch)
        n, _, height, width = padded.shape
        crop_h, crop_w = self.size
        if crop_h > height or crop_w > width:
            raise ValueError(f"RandomCrop: crop size {self.size} is larger than the padded images "
                             f"({height}, {width}) of a batch of shape {batch.shape}")
        top = rng.integers(0, height - crop_h + 1, size=n)
        left = rng.integers(0, width - crop_w + 1, size=n)
        windows = sliding_window_view(padded, (crop_h, crop_w), axis=(2, 3))
        # Advanced indices on axes 0, 2, 3 (split by the channel slice) come first: (N, C, h, w).
        return windows[np.arange(n), :, top, left]

    def __repr__(self):
        return (f"RandomCrop(size={self.size}, padding={self.padding}, fill={self.fill}, "
                f"padding_mode={self.padding_mode!r})")

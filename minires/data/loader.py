"""Datasets held as arrays, subsets, and the batch loader.

A dataset here is anything with ``data`` (images, (N, C, H, W)) and ``targets`` (int64, (N,))
arrays: ``CIFAR10``, ``ArrayDataset``, ``Subset``. The loader gathers a batch with one
fancy-indexing copy, ``data[indices]``, instead of stacking N items one by one.

Reproducibility: every random draw comes from a generator derived from ``(seed, epoch, ...)``
(NumPy's ``SeedSequence`` spawn keys): the shuffle order of an epoch from
``(seed, epoch, 0)`` and the augmentation of batch ``b`` from ``(seed, epoch, 1, b)``. So an
epoch's batches depend on nothing else: not on the previous epochs, not on the thread that
prepares them, not on whether the run was resumed. ``state_dict()`` holds the seed and the
next epoch.

Data parallelism: with ``rank`` and ``world_size`` (``minires.distributed``'s) each of the K
processes gets its shard of every batch, like PyTorch's ``DistributedSampler``: ``batch_size`` is
the *global* batch, rank ``r`` serves the ``r``-th of K contiguous slices of it (sizes differ by at
most one: 64 over 3 ranks is 22/21/21), and every rank serves the same number of batches. Each
rank augments the whole global batch, from the same generator, and keeps its slice: so which
samples and which crops and flips make up a global batch does not depend on K, and with K = 1 the
batches are exactly those of a one-process loader. (The price: each rank transforms K times the
images it keeps; for CIFAR-10 that is about a millisecond per batch of 64.)

Overlap: with ``prefetch=True`` a background thread prepares batch ``b + 1`` (gather,
augment, convert) while the caller computes on batch ``b``: a one-batch lookahead. NumPy
releases the GIL in its copies, so the two really run at once. An error in the thread is
re-raised in the caller's ``for`` loop; when iteration stops early (``break``, an exception,
``close()``), the thread is joined before the iterator goes away.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .transforms import ToFloat


class ArrayDataset:
    """Images (N, C, H, W) and integer labels (N,) in memory, like ``TensorDataset``."""

    def __init__(self, images, labels):
        images, labels = np.asarray(images), np.asarray(labels)
        if images.ndim != 4:
            raise ValueError(f"ArrayDataset: expected images of shape (N, C, H, W), got shape "
                             f"{images.shape}")
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
            raise ValueError(f"ArrayDataset: expected {len(images)} integer labels, got "
                             f"{labels.dtype} array of shape {labels.shape}")
        self.data, self.targets = images, labels.astype(np.int64, copy=False)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        return self.data[index], self.targets[index]


class Subset(ArrayDataset):
    """The samples ``indices`` of ``dataset``, copied into their own arrays.

    For ``--subset N`` quick runs use ``Subset.first(dataset, n)``, the first ``n`` samples
    (CIFAR-10's official order is already random, so they hold about ``n / 10`` images of each
    class), or ``Subset.random(dataset, n, seed)``, a seeded random choice kept in dataset order.
    """

    def __init__(self, dataset, indices):
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or (indices.size and not
                                 (0 <= indices.min() and indices.max() < len(dataset))):
            raise ValueError(f"Subset: indices must be a 1-D sequence within 0..{len(dataset) - 1}")
        super().__init__(dataset.data[indices], dataset.targets[indices])
        self.dataset, self.indices = dataset, indices
        self.classes = getattr(dataset, "classes", None)

    @classmethod
    def first(cls, dataset, n):
        return cls(dataset, np.arange(cls._check_size(dataset, n)))

    @classmethod
    def random(cls, dataset, n, seed=0):
        chosen = np.random.default_rng(seed).choice(len(dataset), cls._check_size(dataset, n),
                                                    replace=False)
        return cls(dataset, np.sort(chosen))

    @staticmethod
    def _check_size(dataset, n):
        if not (isinstance(n, (int, np.integer)) and 0 < n <= len(dataset)):
            raise ValueError(f"Subset: n must be an int in 1..{len(dataset)}, got {n!r}")
        return int(n)


def _generator(seed, *key):
    """An independent ``numpy.random.Generator`` for the stream named ``key``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


class DataLoader:
    """Batches of ``(images float32 (B, C, H, W), labels int64 (B,))`` as host NumPy arrays.

    ``dataset`` has ``data`` and ``targets`` arrays (or is an ``(images, labels)`` pair).
    ``transform(batch, rng)`` turns a gathered batch into float32; ``None`` means ``ToFloat()``
    (uint8 -> [0, 1]). ``shuffle`` draws a new order every epoch from ``seed``; ``drop_last``
    drops a final batch smaller than ``batch_size``; ``prefetch`` prepares the next batch in a
    background thread. ``len(loader)`` is the number of batches.

    Epochs: each ``iter(loader)`` (each ``for`` loop) is one epoch and advances ``epoch``;
    ``set_epoch(e)`` chooses the epoch of the next loop, as with PyTorch's ``DistributedSampler``.
    Save ``state_dict()`` with a checkpoint and ``load_state_dict`` it on resume: the resumed
    run sees the same batches and the same augmentations.

    ``rank`` and ``world_size`` (data parallelism, see the top of this file): serve rank's shard
    of each global batch of ``batch_size``; the shards of a batch, in rank order, make up the batch.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, transform=None,
                 seed=0, prefetch=True, rank=0, world_size=1):
        if isinstance(dataset, tuple):
            dataset = ArrayDataset(*dataset)
        if not (hasattr(dataset, "data") and hasattr(dataset, "targets")):
            raise TypeError("DataLoader: expected a dataset with 'data' and 'targets' arrays or "
                            f"an (images, labels) pair, got {type(dataset).__name__}")
        if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if not (isinstance(world_size, (int, np.integer)) and world_size > 0
                and isinstance(rank, (int, np.integer)) and 0 <= rank < world_size):
            raise ValueError(f"DataLoader: expected a world_size >= 1 and a rank in 0..world_size-1, "
                             f"got rank {rank!r} and world_size {world_size!r}")
        if batch_size < world_size:
            raise ValueError(f"DataLoader: a batch of {batch_size} cannot be shared by {world_size} "
                             "processes (batch_size is the global batch, split over the processes)")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.rank, self.world_size = int(rank), int(world_size)
        self.shuffle, self.drop_last, self.prefetch = shuffle, drop_last, prefetch
        self.transform = ToFloat() if transform is None else transform
        self.seed = self._check_seed(seed)
        self.epoch = 0

    @staticmethod
    def _check_seed(seed):
        if not (isinstance(seed, (int, np.integer)) and seed >= 0):
            raise ValueError(f"DataLoader: seed must be a non-negative int, got {seed!r}")
        return int(seed)

    def __len__(self):
        full, rest = divmod(len(self.dataset.targets), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def set_epoch(self, epoch):
        """Make the next ``for`` loop epoch ``epoch`` (its order and its augmentations)."""
        self.epoch = int(epoch)

    def state_dict(self):
        return {"seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state):
        self.seed = self._check_seed(state["seed"])
        self.set_epoch(state["epoch"])

    def epoch_order(self, epoch):
        """The sample indices of ``epoch`` in the order they are served."""
        n = len(self.dataset.targets)
        return _generator(self.seed, epoch, 0).permutation(n) if self.shuffle else np.arange(n)

    def shard(self, count):
        """``(start, stop)`` of this rank's slice of a global batch of ``count`` samples."""
        size, larger = divmod(count, self.world_size)   # the first ``larger`` ranks get one more
        start = self.rank * size + min(self.rank, larger)
        return start, start + size + (self.rank < larger)

    def _batch(self, epoch, order, b):
        indices = order[b * self.batch_size:(b + 1) * self.batch_size]
        images = self.transform(self.dataset.data[indices], _generator(self.seed, epoch, 1, b))
        if not (isinstance(images, np.ndarray) and images.dtype == np.float32 and images.ndim == 4):
            raise TypeError("DataLoader: the transform must return a float32 NumPy batch "
                            f"(N, C, H, W), got {type(images).__name__} "
                            f"{getattr(images, 'dtype', '')} {getattr(images, 'shape', '')}")
        start, stop = self.shard(len(indices))
        return images[start:stop], self.dataset.targets[indices[start:stop]]

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        order = self.epoch_order(epoch)
        if not self.prefetch:
            return (self._batch(epoch, order, b) for b in range(len(self)))
        return self._prefetched(epoch, order)

    def _prefetched(self, epoch, order):
        """Yield batch ``b`` while a worker thread prepares batch ``b + 1``."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minires-loader")
        try:
            upcoming = executor.submit(self._batch, epoch, order, 0) if len(self) else None
            for b in range(len(self)):
                batch = upcoming.result()  # re-raises an error of the worker here
                if b + 1 < len(self):
                    upcoming = executor.submit(self._batch, epoch, order, b + 1)
                yield batch
        finally:  # also on break/close: wait for the batch in flight, then end the thread
            executor.shutdown(wait=True, cancel_futures=True)

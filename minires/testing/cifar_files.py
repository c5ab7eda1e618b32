"""Tiny CIFAR-10 folders in the real python-version format, for tests that must not need the data."""
import pickle
from pathlib import Path

import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BATCH_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
               "test_batch"]
PER_BATCH = 4  # images per tiny batch file


def dump_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # like the originals: protocol 2, bytes keys


def make_cifar_folder(root, seed=0, per_batch=PER_BATCH):
    """Write a CIFAR-10 folder with ``per_batch`` images per batch; returns {file: (rows, labels)}."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    contents = {}
    for k, name in enumerate(BATCH_FILES):
        rows = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [(k + 3 * i) % 10 for i in range(per_batch)]
        dump_pickle(folder / name, {b"batch_label": f"batch {name}".encode(), b"labels": labels, b"data": rows,
                                    b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]})
        contents[name] = (rows, labels)
    dump_pickle(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
                                          b"label_names": [c.encode() for c in CLASSES]})
    return contents

"""What the study demos share: their data, their models, and writing their figures and numbers.

Data: real CIFAR-10 from ``--data-dir`` (the folder that holds ``cifar-10-batches-py/``), or
with ``--synthetic`` a stand-in of random images in which each class has its own template,
so that a network can learn something (for smoke tests and machines without the dataset).
"""
import json
import os
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from minires import data, models
from minires.io import atomic_write

DEFAULT_DATA = os.environ.get("MINIRES_DATA", str(Path.home() / ".cache" / "minires" / "data"))
NORMALIZE = data.Compose([data.ToFloat(), data.Normalize(data.CIFAR10_MEAN, data.CIFAR10_STD)])


def add_data_arguments(parser):
    parser.add_argument("--data-dir", default=DEFAULT_DATA,
                        help="folder that holds cifar-10-batches-py/ (env MINIRES_DATA)")
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 (170 MB) if missing")
    parser.add_argument("--synthetic", action="store_true",
                        help="random class-template images instead of CIFAR-10 (no download; for smoke tests)")


def synthetic_cifar(n, seed):
    """``n`` uint8 images (n, 3, 32, 32): half a class template, half noise; labels 0..9."""
    rng = np.random.default_rng(seed)
    templates = np.random.default_rng(12345).integers(0, 256, size=(10, 3, 32, 32))  # the same in every split
    labels = rng.integers(0, 10, size=n)
    images = (templates[labels] + rng.integers(0, 256, size=(n, 3, 32, 32))) // 2
    return data.ArrayDataset(images.astype(np.uint8), labels)


def load_cifar(args, train_size, test_size):
    """``(train_set, test_set, source)``: the first images of each split, or synthetic ones.

    Exits with a clear message when the real dataset is asked for but not found.
    """
    if args.synthetic:
        return synthetic_cifar(train_size, seed=1), synthetic_cifar(test_size, seed=2), "synthetic images"
    try:
        train_set = data.CIFAR10(args.data_dir, train=True, download=args.download)
        test_set = data.CIFAR10(args.data_dir, train=False)
    except (data.DatasetNotFoundError, data.DownloadError) as error:
        sys.exit(f"CIFAR-10 is not available: {error}\n"
                 f"Point --data-dir (or MINIRES_DATA) at the folder that holds cifar-10-batches-py/, "
                 f"add --download to fetch it (170 MB), or run on stand-in images with --synthetic.")
    return (data.Subset.first(train_set, min(train_size, len(train_set))),
            data.Subset.first(test_set, min(test_size, len(test_set))), "CIFAR-10")


def build_model(depth, residual):
    """He et al.'s CIFAR network of ``depth`` layers: ResNet (option A shortcuts) or its plain twin."""
    return models.cifar_resnet(depth, residual=residual, shortcut="A")


def model_name(depth, residual):
    return f"{'ResNet' if residual else 'plain'}-{depth}"


def save_figure(figure, path, dpi=90):
    """A matplotlib ``Figure`` (object API, no pyplot) written as a PNG, atomically."""
    FigureCanvasAgg(figure)
    with atomic_write(path) as f:
        figure.savefig(f, format="png", dpi=dpi, bbox_inches="tight")


def save_json(obj, path):
    """``obj`` as indented JSON, written atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)

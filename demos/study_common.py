"""What the study demos and the notebooks share: data, models, presets, and writing their figures
and numbers.

Data: real CIFAR-10 from ``--data-dir`` (the folder that holds ``cifar-10-batches-py/``), or
with ``--synthetic`` a stand-in of random images in which each class has its own template,
so that a network can learn something (for smoke tests and machines without the dataset). The
notebooks (``demos/notebooks/``) take real CIFAR-10 when ``MINIRES_DATA`` (or the default
folder) holds it and the stand-in otherwise, and say which (``cifar_or_stand_in``).
"""
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from minires import data, models
from minires.io import atomic_write
from minires.models import weights

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
    return (*_first_images(train_set, test_set, train_size, test_size), "CIFAR-10")


def _first_images(train_set, test_set, train_size, test_size):
    return (data.Subset.first(train_set, min(train_size, len(train_set))),
            data.Subset.first(test_set, min(test_size, len(test_set))))


def cifar_or_stand_in(train_size, test_size, data_dir=DEFAULT_DATA):
    """``(train_set, test_set, source)``: the first images of real CIFAR-10 in ``data_dir`` when it
    is there, stand-in images otherwise; ``source`` says which (and, for the stand-in, why)."""
    try:
        train_set, test_set = data.CIFAR10(data_dir, train=True), data.CIFAR10(data_dir, train=False)
    except data.DatasetNotFoundError:
        return (synthetic_cifar(train_size, seed=1), synthetic_cifar(test_size, seed=2),
                f"stand-in images: CIFAR-10 is not in {data_dir} (set MINIRES_DATA to the folder that "
                "holds cifar-10-batches-py/)")
    return (*_first_images(train_set, test_set, train_size, test_size), "CIFAR-10")


def build_model(depth, residual):
    """He et al.'s CIFAR network of ``depth`` layers: ResNet (option A shortcuts) or its plain twin."""
    return models.cifar_resnet(depth, residual=residual, shortcut="A")


def model_name(depth, residual):
    return f"{'ResNet' if residual else 'plain'}-{depth}"


def parse_with_presets(parser, presets, argv):
    """Add ``--quick`` (else the "full" preset) and the data flags to ``parser`` and parse ``argv``;
    the flags left at None take the preset's values."""
    parser.add_argument("--quick", dest="preset", action="store_const", const="quick", default="full",
                        help=f"a few minutes: {describe_preset(presets['quick'])} (without --quick: "
                             f"{describe_preset(presets['full'])}; flags given explicitly win)")
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    return apply_preset(args, presets[args.preset])


def write_results(out, stem, payload, draw):
    """``out/stem.json`` (the payload) and ``out/stem.png`` (``draw(path)``); says where they went."""
    out = Path(out)
    save_json(payload, out / f"{stem}.json")
    draw(out / f"{stem}.png")
    print(f"wrote {out / stem}.png and {out / stem}.json")


def save_titled_figure(figure, title, path):
    """Every panel with a grid and a legend, ``title`` on top; written to ``path`` as a PNG."""
    for axes in figure.axes:
        axes.grid(alpha=0.3)
        axes.legend(fontsize=9)
    figure.suptitle(title, fontsize=10, y=1.04)  # above two-line panel titles
    write_png(figure, path)


def apply_preset(args, preset):
    """Fill the flags left at None with the preset's values (flags given explicitly win)."""
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def describe_preset(preset):
    return ", ".join(f"--{name.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
                     for name, value in preset.items())


def trained_model(name):
    """``(label, model)``: the CIFAR-10 weights that ship with minires (``weights.SHIPPED``: resnet20,
    plain20, resnet56, plain56) in eval mode; exits with a clear message when they are missing."""
    residual = name.startswith("resnet")
    depth = int(name.removeprefix("resnet").removeprefix("plain"))
    try:
        model = models.cifar_resnet(depth, residual=residual, weights="cifar10").eval()
    except (weights.WeightsNotFoundError, weights.WeightsCorruptError) as error:
        sys.exit(f"the trained weights of {name} are not usable: {error}")
    return model_name(depth, residual), model


def measure_trained(nets, measure):
    """For each shipped network in ``nets``, ``measure(model)`` (a dict), extended by the network's
    ``net`` and ``name`` and the ``seconds`` the measurement took; yielded as each one ends."""
    for net in nets:
        name, model = trained_model(net)
        start = time.perf_counter()
        result = measure(model)
        yield {"net": net, "name": name, **result, "seconds": time.perf_counter() - start}


def write_png(figure, path, dpi=90):
    """A matplotlib ``Figure`` (object API, no pyplot) written as a PNG, atomically."""
    FigureCanvasAgg(figure)
    with atomic_write(path) as f:
        figure.savefig(f, format="png", dpi=dpi, bbox_inches="tight")


def save_json(obj, path):
    """``obj`` as indented JSON, written atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)

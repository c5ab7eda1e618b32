"""A training run of ``demos/train_cifar_resnet18.py`` made into a shipped weights file.

    python -m minires.models.weights export RUN_DIR [--data-dir DIR] [--out FILE]

reads ``RUN_DIR/config.json`` (the demo's flags) and the run's checkpoint (``checkpoint.npz``, or
an older minires' ``checkpoint.pkl``, through ``minires.train``), rebuilds the network, measures its accuracy on the 10,000
CIFAR-10 test images with ``evaluate_accuracy`` (a loop of its own, independent of the demo's
evaluation) and writes ``NAME_cifar10.npz`` into the package (see ``__init__.py``).

The recorded command names every flag that shapes the weights, defaults included, so it still
reproduces the run if the demo's defaults change; the flags that do not change the weights
(data folder, run folder, device, progress bars, test-time flips) are left out.
"""
import json
from pathlib import Path

from ... import __version__, data, train
from ..resnet import cifar_resnet
from . import DATASET, evaluate_accuracy, save_weights, weights_name, weights_path

DEMO = "demos/train_cifar_resnet18.py"
# the demo's RECIPE_FLAGS (the flags that define a run; tests/test_weights.py checks that they agree)
RECIPE_FLAGS = ("model", "width", "plain", "shortcut", "epochs", "batch_size", "lr", "schedule", "warmup",
                "momentum", "nesterov", "weight_decay", "label_smoothing", "seed", "subset")
NEGATABLE_FLAGS = ("nesterov",)  # argparse.BooleanOptionalAction: --nesterov / --no-nesterov


def read_config(run_dir):
    """The run's ``config.json``, checked for every recipe flag."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"export: {path} is missing; RUN_DIR must be a run folder of {DEMO}")
    config = json.loads(path.read_text())
    missing = [key for key in RECIPE_FLAGS if key not in config]
    if missing:
        raise ValueError(f"export: {path} lacks the flags {missing}")
    return config


def training_command(config):
    """The demo's command line that reproduces the run's weights."""
    words = ["python", DEMO]
    for key in RECIPE_FLAGS:
        value, flag = config[key], "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value is False:
            words += [f"--no-{flag[2:]}"] if key in NEGATABLE_FLAGS else []
        elif value is not None:
            words += [flag, str(value)]
    return " ".join(words)


def _depth(model_name):
    depth = model_name.removeprefix("resnet")
    if not depth.isdigit():
        raise ValueError(f"export: only He et al.'s CIFAR nets (resnet20, 32, 44, 56, 110) can be "
                         f"exported, the run trained {model_name!r}")
    return int(depth)


def model_from_config(config):
    """The network the run trained, with the demo's arguments (randomly initialised)."""
    width = {} if config["width"] is None else {"width": config["width"]}
    return cifar_resnet(_depth(config["model"]), num_classes=10, shortcut=config["shortcut"],
                        residual=not config["plain"], **width)


def load_trained(run_dir, config):
    """``(model, epochs_trained, history)`` from the run's checkpoint."""
    checkpoint = train.find_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"export: {run_dir} holds no checkpoint ({train.CHECKPOINT_NAME})")
    model = model_from_config(config)
    last_epoch, history = train.load_checkpoint(checkpoint, model)
    return model, last_epoch + 1, history


def export(run_dir, data_dir=None, out=None, partial=False):
    """Write the run's weights and metadata to ``out`` (default: the package's file); returns the metadata.

    ``data_dir`` (default: the run's own) holds ``cifar-10-batches-py/``. A run that has not
    finished all its epochs is refused unless ``partial``.
    """
    config = read_config(run_dir)
    model, epochs_trained, history = load_trained(run_dir, config)
    if epochs_trained < config["epochs"] and not partial:
        raise ValueError(f"export: the run in {run_dir} has finished {epochs_trained} of its "
                         f"{config['epochs']} epochs; wait for it, or pass --partial")
    test_set = data.CIFAR10(data_dir or config["data_dir"], train=False)
    accuracy = evaluate_accuracy(model.eval(), test_set.data, test_set.targets)
    name = weights_name(_depth(config["model"]), not config["plain"])
    metadata = {
        "name": name, "dataset": DATASET,
        "architecture": {"depth": _depth(config["model"]), "residual": not config["plain"],
                         "shortcut": config["shortcut"], "width": model.conv1.out_channels,
                         "num_classes": model.fc.out_features},
        "command": training_command(config), "seed": config["seed"], "epochs": config["epochs"],
        "epochs_trained": epochs_trained,
        "test_accuracy": accuracy, "test_images": len(test_set.targets),
        "evaluation": "minires.models.weights.evaluate_accuracy: eval mode, float32, no test-time flips",
        "demo_test_accuracy": history[-1]["test_accuracy"] if history else None,
        "demo_tta": config.get("tta", False),
        "minires_version": __version__,
    }
    save_weights(model, out or weights_path(name), metadata)
    return metadata

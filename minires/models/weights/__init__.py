"""Trained weights that ship with minires: ``models.resnet20(weights="cifar10")``.

    from minires import models
    model = models.resnet20(weights="cifar10").eval()                   # He et al.'s ResNet-20
    plain = models.resnet20(residual=False, weights="cifar10").eval()   # its plain twin
    models.resnet56(weights="cifar10"), models.resnet56(residual=False, weights="cifar10")
    weights.metadata("resnet20")["test_accuracy"]                       # what it scored, measured

Inputs are CIFAR-10 images normalised with ``data.CIFAR10_MEAN`` / ``data.CIFAR10_STD`` (what
``normalise`` below does to uint8 images), as in training.

Each network is a file ``NAME_cifar10.npz`` in this folder (NAME: ``resnet20``, ``plain20``,
``resnet56``, ``plain56``), written by ``save_weights``: the model's ``state_dict`` in float32
(torchvision's names; ``num_batches_tracked`` stays int64) and one more entry, ``__metadata__``,
a JSON text with

    name, dataset              "resnet20", "cifar10"
    architecture               the factory's arguments: depth, residual, shortcut, width, num_classes
    command, seed, epochs      the command of this project's demo that trained the weights
    test_accuracy              the fraction of the 10,000 CIFAR-10 test images that
                               ``evaluate_accuracy`` classifies correctly (eval mode, float32)

The files are read with ``allow_pickle=False``: a weights file holds arrays and text, never code.
They are made from a training run of ``demos/train_cifar_resnet18.py`` by

    python -m minires.models.weights export RUN_DIR     # see export.py; also: ... list
"""
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...backend import asnumpy
from ...data import CIFAR10_MEAN, CIFAR10_STD
from ...grad_mode import no_grad
from ...io import atomic_write
from ...nn.module import Module, StateDictError

WEIGHTS_DIR = Path(__file__).resolve().parent
DATASET = "cifar10"
SHIPPED = ("resnet20", "plain20", "resnet56", "plain56")
METADATA_KEY = "__metadata__"
ARCHITECTURE_KEYS = ("depth", "residual", "shortcut", "width", "num_classes")


class WeightsNotFoundError(FileNotFoundError):
    """A weights file that should be there is not."""


class WeightsCorruptError(ValueError):
    """A weights file cannot be read, lacks its metadata, or does not fit its network."""


def weights_name(depth, residual):
    """``resnet20`` for ``cifar_resnet(20)``, ``plain20`` for its plain twin."""
    return f"{'resnet' if residual else 'plain'}{depth}"


def weights_path(name):
    return WEIGHTS_DIR / f"{name}_{DATASET}.npz"


def available():
    """Names of the networks whose weights are in the package now."""
    return sorted(path.name[:-len(f"_{DATASET}.npz")] for path in WEIGHTS_DIR.glob(f"*_{DATASET}.npz"))


# -- writing and reading -----------------------------------------------------------------------
def save_weights(model, path, metadata):
    """Write ``model``'s state (floats as float32) and ``metadata`` (a JSON-able dict) to ``path``."""
    arrays = OrderedDict()
    for key, value in model.state_dict().items():
        value = asnumpy(value)
        arrays[key] = value.astype(np.float32) if value.dtype.kind == "f" else value
    if METADATA_KEY in arrays:
        raise ValueError(f"save_weights: the model has a state entry named {METADATA_KEY!r}")
    arrays[METADATA_KEY] = np.array(json.dumps(metadata, indent=1))  # a unicode array, no pickle
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def read_weights(path):
    """``(state, metadata)`` from a file written by ``save_weights``; a clear error naming the file
    when it is missing or cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} is missing; it ships with minires "
                                   "(reinstall it), or make it from a training run with "
                                   "python -m minires.models.weights export RUN_DIR")
    try:
        with np.load(path, allow_pickle=False) as archive:
            state = OrderedDict((key, archive[key]) for key in archive.files if key != METADATA_KEY)
            metadata = json.loads(str(archive[METADATA_KEY]))
    except Exception as error:  # zip, npy-format, JSON or missing-entry errors: all mean "corrupt"
        raise WeightsCorruptError(f"weights file {path} is corrupt or not a minires weights file "
                                  f"({type(error).__name__}: {error})") from error
    missing = [key for key in ("name", "architecture", "test_accuracy") if key not in metadata]
    if missing:
        raise WeightsCorruptError(f"weights file {path}: its metadata lacks {missing}")
    return state, metadata


def metadata(name):
    """The metadata of the shipped weights ``name`` (e.g. ``"resnet20"``): command, seed, accuracy."""
    return read_weights(weights_path(name))[1]


# -- the factories' weights= argument ----------------------------------------------------------
@dataclass
class TrainedWeights:
    """A weights file read and checked against the arguments of the factory that asked for it."""
    path: Path
    state: OrderedDict
    metadata: dict

    def load_into(self, model):
        try:
            model.load_state_dict(self.state)
        except StateDictError as error:
            raise WeightsCorruptError(f"weights file {self.path} does not fit "
                                      f"{self.metadata['name']}: {error}") from error
        return model


def find_weights(weights, depth, residual, **arguments):
    """The trained weights for ``cifar_resnet(depth, residual=residual, **arguments)``.

    ``weights`` must be ``"cifar10"``; the other arguments (shortcut, width, num_classes) must be
    the ones the weights were trained with, which the file's metadata records.
    """
    name = weights_name(depth, residual)
    if weights != DATASET:
        raise ValueError(f"{name}: weights must be None or {DATASET!r}, got {weights!r}")
    path = weights_path(name)
    if name not in SHIPPED and not path.is_file():
        raise ValueError(f"{name}: no CIFAR-10 weights ship with minires for this network; "
                         f"there are weights for {', '.join(SHIPPED)}")
    state, info = read_weights(path)
    if info["name"] != name:
        raise WeightsCorruptError(f"weights file {path} holds the weights of {info['name']!r}, not {name!r}")
    requested = dict(arguments, depth=depth, residual=residual)
    trained = info["architecture"]
    differing = [f"{key}={requested[key]!r} (the weights have {key}={trained.get(key)!r})"
                 for key in ARCHITECTURE_KEYS if key in requested and requested[key] != trained.get(key)]
    if differing:
        raise ValueError(f"{name}(weights={DATASET!r}): the weights do not fit " + ", ".join(differing))
    return TrainedWeights(path, state, info)


# -- the evaluation that measures test_accuracy --------------------------------------------------
def normalise(images):
    """uint8 (N, 3, H, W) -> float32 ``(images / 255 - mean) / std`` per channel (CIFAR-10's)."""
    mean = np.asarray(CIFAR10_MEAN, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(CIFAR10_STD, dtype=np.float32).reshape(1, 3, 1, 1)
    return (images.astype(np.float32) / 255 - mean) / std


def evaluate_accuracy(classify, images, labels, batch_size=500):
    """The fraction of ``images`` (uint8, N x 3 x 32 x 32) whose ``argmax`` of ``classify(x)`` is
    the label; ``x`` is normalised by ``normalise``.

    ``classify`` is a model in eval mode (``model.eval()``: a model in training mode is refused,
    its batch norms would use and change the batch statistics) or any function from a float32
    batch to logits, on the host. Batches of ``batch_size`` under ``no_grad``: nothing is kept.
    """
    if isinstance(classify, Module) and classify.training:
        raise ValueError(f"evaluate_accuracy: {type(classify).__name__} is in training mode; "
                         "call model.eval() first")
    labels = np.asarray(labels)
    correct = 0
    with no_grad():
        for start in range(0, len(labels), batch_size):
            logits = classify(normalise(images[start:start + batch_size]))
            correct += int((asnumpy(logits).argmax(axis=1) == labels[start:start + batch_size]).sum())
    return correct / len(labels)

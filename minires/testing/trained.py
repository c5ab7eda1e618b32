"""Stand-ins for trained networks, for tests that must not need the shipped weights.

- ``write_untrained_weights(folder)``: weights files of untrained networks (real architectures) in
  the shipped format; point ``minires.models.weights.WEIGHTS_DIR`` at ``folder``.
"""
import minires
from minires import models
from minires.models import weights


def untrained_metadata(name, depth, residual, width=16):
    return {"name": name, "dataset": weights.DATASET, "test_accuracy": 0.1, "command": "untrained",
            "architecture": {"depth": depth, "residual": residual, "shortcut": "A", "width": width,
                             "num_classes": 10}}


def write_untrained_weights(folder, names=weights.SHIPPED, seed=0):
    """``NAME_cifar10.npz`` in ``folder`` for each name (e.g. ``plain20``), randomly initialised;
    returns {name: model}."""
    written = {}
    for name in names:
        residual, depth = name.startswith("resnet"), int(name.removeprefix("resnet").removeprefix("plain"))
        minires.manual_seed(seed)
        model = models.cifar_resnet(depth, residual=residual)
        weights.save_weights(model, folder / f"{name}_{weights.DATASET}.npz", untrained_metadata(name, depth, residual))
        written[name] = model
    return written

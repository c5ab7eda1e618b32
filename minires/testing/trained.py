"""Stand-ins for trained networks, for tests that must not need the shipped weights.

- ``randomise_batch_norms(model, rng)``: running statistics and affine parameters away from their
  initial 0 and 1, as a trained network's are (an untrained net in eval mode hides mistakes).
- ``write_untrained_weights(folder)``: weights files of untrained networks (real architectures) in
  the shipped format; point ``minires.models.weights.WEIGHTS_DIR`` at ``folder``.
"""
import minires
from minires import models, nn
from minires.models import weights


def randomise_batch_norms(model, rng):
    """Every ``BatchNorm2d`` of ``model`` given random running statistics, scales and shifts."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean[...] = rng.normal(0, 0.3, c)
            module.running_var[...] = rng.uniform(0.5, 2.0, c)
            module.weight.data[...] = rng.uniform(0.5, 1.5, c)
            module.bias.data[...] = rng.normal(0, 0.3, c)
    return model


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
        path = folder / f"{name}_{weights.DATASET}.npz"
        weights.save_weights(model, path, untrained_metadata(name, depth, residual))
        written[name] = model
    return written

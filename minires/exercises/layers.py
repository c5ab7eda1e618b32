"""The sheet's layers in one toolbox: your own where your exercise passes, minires' otherwise.

Exercise 7 wires a residual block from the ReLU, batch norm and convolution of exercises 1, 5
and 6; the guided notebook ``demos/notebooks/2_your_own_layers.py`` trains a small network from all
six layers. Both take their layers from a toolbox, one namespace with the sheet's function names:

    layers = toolbox()                          # minires' functions, under the sheet's names
    layers = toolbox({"ex1_relu": module})      # ReLU from your ex1_relu.py, the rest minires'
    layers.relu_forward(x); layers.origin       # {"ex1_relu": "yours", "ex2_linear": "minires", ...}

Which of your files to use is the grader's decision (``grader.sheet_toolbox``): only those that
pass. Each minires function below keeps the contract of the exercise it stands in for (the same
arguments, ``(output, cache)`` from the forward, the same gradients from the backward); only the
contents of the cache differ, and each backward reads only its own forward's cache.
"""
from types import SimpleNamespace

from ..nn import functional as F

MINIRES_FUNCTIONS = {
    "ex1_relu": {"relu_forward": F.relu_forward, "relu_backward": F.relu_backward},
    "ex2_linear": {"linear_forward": F.linear_forward, "linear_backward": F.linear_backward},
    "ex3_softmax_cross_entropy": {"softmax_cross_entropy_forward": F.cross_entropy_forward,
                                  "softmax_cross_entropy_backward": F.cross_entropy_backward},
    "ex4_max_pool": {"max_pool_forward": F.max_pool2d_forward, "max_pool_backward": F.max_pool2d_backward},
    "ex5_batch_norm": {"batch_norm_forward": F.batch_norm_forward, "batch_norm_backward": F.batch_norm_backward},
    "ex6_conv2d": {"conv2d_forward": F.conv2d_forward, "conv2d_backward": F.conv2d_backward},
}


def toolbox(modules=None):
    """The layer functions of exercises 1-6: from ``modules[name]`` where given, minires' otherwise.

    ``modules`` maps an exercise name (``"ex5_batch_norm"``) to a module (or any object) holding
    that exercise's functions. The namespace's ``origin`` says, per exercise, "yours" or "minires".
    """
    modules = modules or {}
    unknown = set(modules) - set(MINIRES_FUNCTIONS)
    if unknown:
        raise ValueError(f"toolbox: no layer exercise named {', '.join(sorted(unknown))}; "
                         f"the layer exercises are {', '.join(MINIRES_FUNCTIONS)}")
    layers, origin = {}, {}
    for exercise, functions in MINIRES_FUNCTIONS.items():
        module = modules.get(exercise)
        origin[exercise] = "minires" if module is None else "yours"
        for name, minires_function in functions.items():
            layers[name] = minires_function if module is None else getattr(module, name)
    return SimpleNamespace(**layers, origin=origin)

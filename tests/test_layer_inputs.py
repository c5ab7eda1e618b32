"""Inputs and gradients a layer must refuse clearly, and a refused gradient must not cost the cache.

A torch tensor or a list is not an array of ours: each layer says so (TypeError naming the layer
and the type) instead of failing deep inside NumPy. A gradient that backward refuses (wrong shape,
not an array) leaves the forward's cache in place, so a corrected retry gives the right gradients.
"""
import numpy as np
import pytest
import torch

import minires
from minires import models, nn

LAYERS = {
    "Conv2d": lambda: nn.Conv2d(3, 4, 3, padding=1),
    "Conv2d stride 2": lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
    "BatchNorm2d": lambda: nn.BatchNorm2d(3),
    "MaxPool2d": lambda: nn.MaxPool2d(2),
    "AvgPool2d": lambda: nn.AvgPool2d(2),
    "AdaptiveAvgPool2d": lambda: nn.AdaptiveAvgPool2d(1),
    "ReLU": lambda: nn.ReLU(),
    "Sigmoid": lambda: nn.Sigmoid(),
    "Linear": lambda: nn.Linear(6, 5),
    "Flatten": lambda: nn.Flatten(),
    "Dropout": lambda: nn.Dropout(0.3),
    "Sequential": lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
    "BasicBlock": lambda: models.resnet20(width=4).layer2[0],
    "ResidualUnit": lambda: models.ResidualUnit(3, 3, gating="exclusive"),
}


def _layer_and_input(name):
    minires.manual_seed(0)
    layer = LAYERS[name]()
    if name == "BasicBlock":
        return layer, np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32)
    return layer, np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)


def _seeded_forward(layer, x):
    minires.manual_seed(1)  # the same dropout mask every time
    return layer(x)


@pytest.mark.parametrize("name", LAYERS)
def test_a_torch_tensor_as_input_is_a_type_error_naming_the_layer(name):
    layer, x = _layer_and_input(name)
    with pytest.raises(TypeError, match=r"expected the input to be a NumPy or CuPy array, got torch\.Tensor"):
        layer(torch.from_numpy(x))


@pytest.mark.parametrize("name", LAYERS)
@pytest.mark.parametrize("make_gradient, got", [(lambda y: y.tolist(), r"builtins\.list"),
                                                (lambda y: torch.from_numpy(np.ascontiguousarray(y)),
                                                 r"torch\.Tensor")])
def test_a_gradient_that_is_not_an_array_is_a_type_error(name, make_gradient, got):
    layer, x = _layer_and_input(name)
    y = _seeded_forward(layer, x)
    with pytest.raises(TypeError, match=r"expected the upstream gradient to be a NumPy or CuPy array, got " + got):
        layer.backward(make_gradient(y))


@pytest.mark.parametrize("name", LAYERS)
def test_a_refused_gradient_leaves_the_cache_for_a_corrected_retry(name):
    layer, x = _layer_and_input(name)
    y = _seeded_forward(layer, x)
    dy = np.random.default_rng(2).standard_normal(y.shape).astype(y.dtype)
    expected_dx = layer.backward(dy)
    expected_grads = [p.grad.copy() for p in layer.parameters()]
    layer.zero_grad()

    _seeded_forward(layer, x)
    with pytest.raises(ValueError, match="upstream gradient of shape"):
        layer.backward(dy[:1])
    with pytest.raises(TypeError):
        layer.backward(dy.tolist())
    np.testing.assert_array_equal(layer.backward(dy), expected_dx)
    for p, expected in zip(layer.parameters(), expected_grads):
        np.testing.assert_array_equal(p.grad, expected)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        layer.backward(dy)  # the cache served its one backward

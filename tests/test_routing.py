"""``block.route``: the backward through one operand of the residual add (path studies).

The default backward must be bit-identical to the ordinary one; a routed backward keeps one of
the add's two terms after the ReLU's mask; and since the backward is linear in the gradient,
the input gradients of all 2^n routings of n blocks add up to the ordinary input gradient.
"""
import itertools

import numpy as np
import pytest

import minires
from minires import models
from minires.models.resnet import BasicBlock, Bottleneck, ResNet, ShortcutA, make_shortcut
from minires.study.paths import input_gradient, routable_blocks, routed
from minires.testing.trained import randomise_batch_norms


def make_block(kind):
    blocks = {
        "identity": lambda: BasicBlock(6, 6),
        "option A": lambda: BasicBlock(4, 8, stride=2, downsample=ShortcutA(4, 8, 2)),
        "option B": lambda: BasicBlock(4, 8, stride=2, downsample=make_shortcut("B", 4, 8, 2)),
        "bottleneck": lambda: Bottleneck(8, 2, stride=2, downsample=make_shortcut("B", 8, 8, 2)),
    }
    minires.manual_seed(3)
    block = blocks[kind]().double()
    return randomise_batch_norms(block, np.random.default_rng(4))


BLOCKS = ["identity", "option A", "option B", "bottleneck"]


def in_channels(block):
    return block.conv1.in_channels


def backward_of(block, x, dy, route=None):
    """``(dx, parameter gradients)`` of one forward and backward with ``block.route = route``."""
    block.zero_grad()
    block.route = route
    block(x)
    dx = block.backward(dy)
    block.route = None
    return dx, {name: p.grad.copy() for name, p in block.named_parameters()}


def textbook_backward(block, x, dy):
    """The backward as written before routing existed: both operands of the add get g."""
    block.zero_grad()
    block(x)
    is_bottleneck = isinstance(block, Bottleneck)
    g = (block.relu3 if is_bottleneck else block.relu2).backward(dy)
    if is_bottleneck:
        grad = block.conv3.backward(block.bn3.backward(g))
        grad = block.conv2.backward(block.bn2.backward(block.relu2.backward(grad)))
    else:
        grad = block.conv2.backward(block.bn2.backward(g))
    grad_x_branch = block.conv1.backward(block.bn1.backward(block.relu1.backward(grad)))
    grad_x_shortcut = g if block.downsample is None else block.downsample.backward(g)
    return grad_x_branch + grad_x_shortcut, {name: p.grad.copy() for name, p in block.named_parameters()}


def block_inputs(block, mode):
    rng = np.random.default_rng(5)
    block.train(mode == "train")
    x = rng.standard_normal((3, in_channels(block), 6, 6))
    y = block(x)
    return x, rng.standard_normal(y.shape)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("kind", BLOCKS)
def test_default_backward_is_bit_identical_to_the_textbook_one(kind, mode):
    block = make_block(kind)
    x, dy = block_inputs(block, mode)
    dx, grads = backward_of(block, x, dy)
    expected_dx, expected_grads = textbook_backward(block, x, dy)
    np.testing.assert_array_equal(dx, expected_dx)
    assert grads.keys() == expected_grads.keys()
    for name in grads:
        np.testing.assert_array_equal(grads[name], expected_grads[name], err_msg=name)


@pytest.mark.parametrize("kind", BLOCKS)
def test_the_two_routes_are_the_two_terms_of_the_add(kind):
    block = make_block(kind)
    x, dy = block_inputs(block, "eval")
    full, _ = backward_of(block, x, dy)
    through_branch, branch_grads = backward_of(block, x, dy, "branch")
    through_shortcut, shortcut_grads = backward_of(block, x, dy, "shortcut")
    np.testing.assert_array_equal(through_branch + through_shortcut, full)  # x + 0 is exact
    for name, grad in shortcut_grads.items():
        if not name.startswith("downsample"):
            assert not grad.any(), f"{name} got a gradient while the branch was routed around"
    for name, grad in branch_grads.items():
        if name.startswith("downsample"):
            assert not grad.any(), f"{name} got a gradient while the shortcut was routed around"


def test_the_routes_come_after_the_relu_mask():
    block = make_block("identity")
    x, dy = block_inputs(block, "eval")
    y = block(x)
    through_shortcut, _ = backward_of(block, x, dy, "shortcut")
    np.testing.assert_array_equal(through_shortcut, np.where(y > 0, dy, 0.0))  # S'(x)^T g with g = D dy
    assert (y == 0).any() and (y > 0).any()  # the mask matters in this example


def test_route_values_are_checked():
    block = make_block("identity")
    with pytest.raises(ValueError, match="BasicBlock: route must be one of .*'both'"):
        block.route = "both"
    plain = BasicBlock(4, 4, residual=False)
    with pytest.raises(ValueError, match="BasicBlock: a plain block .* has no add to route"):
        plain.route = "shortcut"
    plain.route = None
    assert block.route is None and plain.route is None


def small_networks():
    minires.manual_seed(6)
    bottlenecks = ResNet(Bottleneck, [2, 1], num_classes=10, widths=(4, 8), stem="cifar")
    return {"ResNet-14, option A": models.cifar_resnet(14, width=4),
            "ResNet-8, option B": models.cifar_resnet(8, width=4, shortcut="B"),
            "bottlenecks": bottlenecks}


@pytest.mark.parametrize("name", ["ResNet-14, option A", "ResNet-8, option B", "bottlenecks"])
def test_all_routings_add_up_to_the_ordinary_input_gradient(name):
    model = randomise_batch_norms(small_networks()[name].double(), np.random.default_rng(7)).eval()
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((4, 3, 8, 8)), rng.integers(0, 10, 4)
    ordinary = input_gradient(model, x, y)
    blocks = routable_blocks(model)
    total = np.zeros_like(ordinary)
    for length in range(len(blocks) + 1):
        for through_branch in itertools.combinations(range(len(blocks)), length):
            model.zero_grad()
            with routed(blocks, set(through_branch)):
                total += input_gradient(model, x, y)
    assert len(blocks) >= 2
    assert np.linalg.norm(total - ordinary) <= 1e-13 * np.linalg.norm(ordinary)
    assert all(block.route is None for block in blocks)
    np.testing.assert_array_equal(input_gradient(model, x, y), ordinary)  # routes reset: ordinary again


def test_routed_resets_the_routes_after_an_error():
    model = models.cifar_resnet(8, width=4)
    blocks = routable_blocks(model)
    with pytest.raises(RuntimeError, match="inside"):
        with routed(blocks, {0}):
            assert [block.route for block in blocks] == ["branch", "shortcut", "shortcut"]
            raise RuntimeError("inside")
    assert all(block.route is None for block in blocks)

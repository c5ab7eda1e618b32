"""The ResNet family: parameter counts, torchvision's names, equality with a PyTorch reference
end to end (loss, input gradient, every parameter gradient, running statistics, eval output),
gradient checks of every block type, interop and the summary table."""
import numpy as np
import pytest
import torch

import minires
from minires import gradcheck, models, nn
from minires.io import load_npz, load_torch_checkpoint, save_npz
from minires.models.resnet import BasicBlock, Bottleneck, ShortcutA, make_shortcut
from minires.nn.module import StateDictError

from tests.support import torch_resnet
from tests.support.torch_helpers import assert_close, copy_module_weights, to_torch


def count(model):
    return sum(p.size for p in model.parameters())


@pytest.mark.parametrize("factory,expected", [
    (models.resnet18, 11_689_512), (models.resnet34, 21_797_672), (models.resnet50, 25_557_032),
    (models.resnet101, 44_549_160), (models.resnet152, 60_192_808),
    (models.resnext50_32x4d, 25_028_904), (models.wide_resnet50_2, 68_883_240),
    (models.resnet18_cifar, 11_173_962), (models.resnet20, 269_722), (models.resnet32, 464_154),
    (models.resnet44, 658_586), (models.resnet56, 853_018), (models.resnet110, 1_727_962),
])
def test_parameter_counts_equal_torchvision_and_the_paper(factory, expected):
    assert count(factory()) == expected


@pytest.mark.parametrize("ours,reference", [
    (models.resnet18, torch_resnet.resnet18), (models.resnet50, torch_resnet.resnet50),
    (models.resnext50_32x4d, torch_resnet.resnext50_32x4d), (models.wide_resnet50_2, torch_resnet.wide_resnet50_2),
    (models.resnet18_cifar, torch_resnet.resnet18_cifar),
    (lambda: models.resnet20(shortcut="B"), lambda: torch_resnet.resnet20(shortcut="B")),
    (models.resnet20, torch_resnet.resnet20),
])
def test_state_dict_keys_and_shapes_are_torchvisions(ours, reference):
    mine = {k: tuple(v.shape) for k, v in ours().state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in reference().state_dict().items()}
    assert list(mine) == list(theirs)
    assert mine == theirs


def test_plain_net_has_no_shortcuts_and_no_adds():
    plain = models.resnet20(residual=False)
    assert not any(isinstance(m, ShortcutA) for m in plain.modules())
    assert all(block.downsample is None for block in plain.modules() if isinstance(block, BasicBlock))
    assert count(plain) == 269_722  # option A has no parameters, so the count is unchanged


def test_torchvision_initialisation_and_zero_init_residual():
    minires.manual_seed(0)
    model = models.resnet18(zero_init_residual=True)
    std = float(model.layer1[0].conv1.weight.data.std())
    assert abs(std - np.sqrt(2.0 / (64 * 9))) / np.sqrt(2.0 / (64 * 9)) < 0.02  # Kaiming normal, fan_out
    assert all(not block.bn2.weight.data.any() for block in model.modules() if isinstance(block, BasicBlock))
    assert model.bn1.weight.data.min() == 1 and not model.bn1.bias.data.any()
    bottleneck = models.resnet50(zero_init_residual=True).layer1[0]
    assert not bottleneck.bn3.weight.data.any() and bottleneck.bn2.weight.data.min() == 1


def _compare_end_to_end(ours, reference, input_shape, rtol, atol, dtype=np.float64, seed=0):
    """Train-mode step and eval-mode forward of both models on the same weights and data."""
    rng = np.random.default_rng(seed)
    ours.to(dtype=dtype)
    reference = reference.to(torch.float64 if dtype == np.float64 else torch.float32)
    copy_module_weights(ours, reference)
    x = rng.standard_normal(input_shape).astype(dtype)
    targets = rng.integers(0, 10, input_shape[0])
    x_before = x.copy()

    criterion = nn.CrossEntropyLoss()
    loss = criterion(ours(x), targets)
    dx = ours.backward(criterion.backward())
    np.testing.assert_array_equal(x, x_before)

    tx = to_torch(x, requires_grad=True)
    tloss = torch.nn.functional.cross_entropy(reference(tx), torch.from_numpy(targets))
    tloss.backward()

    assert_close(loss, tloss, rtol, atol, "loss")
    assert_close(dx, tx.grad, rtol, atol, "input gradient")
    theirs = dict(reference.named_parameters())
    for name, p in ours.named_parameters():
        assert_close(p.grad, theirs[name].grad, rtol, atol, f"gradient of {name}")
    their_buffers = dict(reference.named_buffers())
    for name, b in ours.named_buffers():
        assert_close(b, their_buffers[name], rtol, atol, f"buffer {name}")

    ours.eval(), reference.eval()
    with minires.no_grad(), torch.no_grad():
        assert_close(ours(x), reference(tx), rtol, atol, "eval-mode output")


@pytest.mark.parametrize("name,ours,reference,shape", [
    ("resnet18_cifar", models.resnet18_cifar, torch_resnet.resnet18_cifar, (2, 3, 16, 16)),
    ("resnet50", lambda: models.resnet50(num_classes=10), lambda: torch_resnet.resnet50(10), (2, 3, 64, 64)),
    ("resnext50_32x4d", lambda: models.resnext50_32x4d(num_classes=10),
     lambda: torch_resnet.resnext50_32x4d(10), (2, 3, 64, 64)),
    ("resnet20 option A", models.resnet20, torch_resnet.resnet20, (4, 3, 16, 16)),
    ("resnet20 option B", lambda: models.resnet20(shortcut="B"),
     lambda: torch_resnet.resnet20(shortcut="B"), (4, 3, 16, 16)),
    ("plain-20", lambda: models.resnet20(residual=False),
     lambda: torch_resnet.resnet20(residual=False), (4, 3, 16, 16)),
])
def test_end_to_end_equal_to_pytorch_in_float64(name, ours, reference, shape):
    minires.manual_seed(0)
    _compare_end_to_end(ours(), reference(), shape, rtol=1e-7, atol=1e-9)


def test_resnet18_float32_close_to_pytorch():
    """float32 at batch 8: BatchNorm in training mode amplifies rounding, hence the looser bounds
    (measured differences were about 1e-5 relative on the gradients)."""
    minires.manual_seed(1)
    _compare_end_to_end(models.resnet18_cifar(), torch_resnet.resnet18_cifar(), (8, 3, 32, 32),
                        rtol=2e-3, atol=2e-4, dtype=np.float32)


@pytest.mark.parametrize("make_block,shape", [
    (lambda: BasicBlock(4, 4), (2, 4, 5, 5)),
    (lambda: BasicBlock(3, 4, 2, make_shortcut("B", 3, 4, 2)), (2, 3, 6, 6)),
    (lambda: BasicBlock(3, 5, 2, make_shortcut("A", 3, 5, 2)), (2, 3, 5, 5)),
    (lambda: BasicBlock(3, 4, 2, residual=False), (2, 3, 6, 6)),
    (lambda: Bottleneck(8, 2), (2, 8, 4, 4)),
    (lambda: Bottleneck(4, 4, 2, make_shortcut("B", 4, 16, 2), groups=2, base_width=32), (2, 4, 5, 5)),
    (lambda: ShortcutA(3, 6, 2), (2, 3, 4, 5)),
])
def test_blocks_pass_gradient_checks(make_block, shape):
    minires.manual_seed(0)
    report = gradcheck.check_module(make_block(), np.random.default_rng(0).standard_normal(shape))
    assert report.ok, str(report)


def test_block_backward_sums_branch_and_shortcut_exactly():
    """At an identity block, dL/dx = (gradient through the branch) + (the gradient at the add)."""
    minires.manual_seed(0)
    block = BasicBlock(4, 4).to(dtype=np.float64)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((2, 4, 6, 6)), rng.standard_normal((2, 4, 6, 6))
    seen = {}
    block.relu2.register_backward_hook(lambda m, gin, gout: seen.setdefault("at_add", gin))
    block.conv1.register_backward_hook(lambda m, gin, gout: seen.setdefault("branch", gin))
    block(x)
    dx = block.backward(dy)
    np.testing.assert_array_equal(dx, seen["branch"] + seen["at_add"])


def test_npz_round_trip_and_torch_checkpoint(tmp_path):
    minires.manual_seed(0)
    source, target = models.resnet20(), models.resnet20()
    save_npz(source, tmp_path / "w.npz")
    target.load_state_dict(load_npz(tmp_path / "w.npz"))
    for (name, a), b in zip(source.state_dict().items(), target.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)

    reference = torch_resnet.resnet20()
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "ref.pth")
    load_torch_checkpoint(target, tmp_path / "ref.pth")
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    target.eval(), reference.eval()
    with torch.no_grad():
        assert_close(target(x), reference(to_torch(x)), rtol=1e-4, atol=1e-5)


def test_wrong_architecture_is_a_clear_error():
    with pytest.raises(StateDictError, match=r"(?s)missing keys: .*layer4.*shape mismatch for fc.weight"):
        load_torch_checkpoint(models.resnet18_cifar(), torch_resnet.resnet20().state_dict())


def test_shortcut_and_depth_validation():
    with pytest.raises(ValueError, match="shortcut must be 'A' or 'B'"):
        models.resnet20(shortcut="C")
    with pytest.raises(ValueError, match="depth must be 6n"):
        models.cifar_resnet(21)


def test_summary_table():
    table = minires.summary(models.resnet18_cifar(), (1, 3, 32, 32))
    text = str(table)
    assert "Total params: 11,173,962" in text and "Trainable params: 11,173,962" in text
    assert "layer1 (Sequential)" in text and "conv1 (Conv2d)" in text and "[1, 64, 32, 32]" in text
    assert table.total_mult_adds == 555_422_720  # conv and linear multiply-adds of ResNet-18-CIFAR, by hand
    assert table.kept_bytes > 0

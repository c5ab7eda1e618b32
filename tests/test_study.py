"""minires.study: the lesion study and the path-length analysis (Veit et al. 2016) on small nets."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import minires
from minires import models
from minires.models.resnet import BasicBlock, ResNet
from minires.study import lesion, paths
from minires.testing.trained import randomise_batch_norms


def trained_looking(model, seed=0):
    return randomise_batch_norms(model, np.random.default_rng(seed)).eval()


def without_block(model, residual, removed="layer1.1"):
    """The network of ``model`` (layers [2, 2, 2], width 4) built without the block ``removed``
    (layers [1, 2, 2]), with the same weights."""
    minires.manual_seed(1)
    smaller = ResNet(BasicBlock, [1, 2, 2], num_classes=10, residual=residual, widths=(4, 8, 16),
                     stem="cifar", shortcut="A").eval()
    state = OrderedDict((key, value) for key, value in model.state_dict().items()
                        if not key.startswith(removed + "."))
    smaller.load_state_dict(state)
    return smaller


def logits_of(model, x):
    with minires.no_grad():
        return model(x)


@pytest.mark.parametrize("residual", [True, False])
def test_deleting_a_block_equals_the_network_built_without_it(residual):
    minires.manual_seed(0)
    model = trained_looking(models.cifar_resnet(14, width=4, residual=residual))
    x = np.random.default_rng(1).standard_normal((5, 3, 8, 8)).astype(np.float32)
    with lesion.deleted([model.layer1[1]]):
        lesioned = logits_of(model, x)
    np.testing.assert_array_equal(lesioned, logits_of(without_block(model, residual), x))
    assert not np.array_equal(lesioned, logits_of(model, x))  # the block mattered, and is back


@pytest.mark.parametrize("shortcut,block", [("A", "layer2.0"), ("B", "layer2.0"), ("A", "layer3.1")])
def test_deleting_a_block_equals_zeroing_its_branch(shortcut, block):
    """Branch output 0 (last batch norm's scale and shift 0): the block computes relu(0 + S(x))."""
    minires.manual_seed(0)
    model = trained_looking(models.cifar_resnet(14, width=4, shortcut=shortcut))
    x = np.random.default_rng(2).standard_normal((5, 3, 8, 8)).astype(np.float32)
    target = dict(model.named_modules())[block]
    with lesion.deleted([target]):
        lesioned = logits_of(model, x)
    target.bn2.weight.data[...] = 0
    target.bn2.bias.data[...] = 0
    np.testing.assert_array_equal(lesioned, logits_of(model, x))


def test_which_blocks_can_be_deleted():
    assert [name for name, _ in lesion.deletable_blocks(models.resnet20())] == [
        f"layer{stage}.{i}" for stage in (1, 2, 3) for i in range(3)]
    plain = models.resnet20(residual=False)
    assert [name for name, _ in lesion.deletable_blocks(plain)] == [
        "layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1", "layer3.2"]
    with pytest.raises(ValueError, match="plain BasicBlock that changes the shape"):
        with lesion.deleted([plain.layer2[0]]):
            pass


def test_deleted_restores_the_forward_after_an_error():
    model = models.cifar_resnet(8, width=4).eval()
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    before = logits_of(model, x)
    with pytest.raises(RuntimeError, match="inside"):
        with lesion.deleted([model.layer1[0], model.layer2[0]]):
            raise RuntimeError("inside")
    assert "forward" not in model.layer1[0].__dict__
    np.testing.assert_array_equal(logits_of(model, x), before)


def stand_in_images(n, seed=4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 8, 8)).astype(np.uint8), rng.integers(0, 10, n)


def test_lesion_study_measures_every_block_and_every_count():
    minires.manual_seed(0)
    model = trained_looking(models.cifar_resnet(14, width=4))
    images, labels = stand_in_images(12)
    result = lesion.lesion_study(model, images, labels, draws=2, seed=5)
    assert result["intact"] == lesion.lesion_error(model, images, labels)
    assert [row["block"] for row in result["single"]] == [name for name, _ in lesion.deletable_blocks(model)]
    assert [row["downsampling"] for row in result["single"]] == [False, False, True, False, True, False]
    assert result["single"][3]["error"] == lesion.lesion_error(model, images, labels, [model.layer2[1]])
    assert {k: len(errors) for k, errors in result["random"].items()} == {1: 2, 2: 2, 3: 2, 4: 2, 5: 2, 6: 1}
    assert all(0 <= e <= 100 for errors in result["random"].values() for e in errors)
    with pytest.raises(ValueError, match=r"counts must lie in 1\.\.6"):
        lesion.lesion_study(model, images, labels, counts=[7])


def test_lesion_study_needs_eval_mode():
    images, labels = stand_in_images(4)
    with pytest.raises(ValueError, match="training mode; call model.eval"):
        lesion.lesion_study(models.cifar_resnet(8, width=4), images, labels)


@pytest.mark.parametrize("n", [0, 1, 3, 9, 27, 54])
def test_path_counts_are_binomial(n):
    counts = paths.path_counts(n)
    assert len(counts) == n + 1 and sum(counts) == 2 ** n
    assert counts == counts[::-1]
    assert all(counts[k] == counts[k - 1] * (n - k + 1) // k for k in range(1, n + 1))  # Pascal's rule
    assert counts[n // 2] == max(counts)


def test_path_counts_of_the_paper():
    counts = paths.path_counts(54)  # ResNet-110: 54 blocks
    assert counts[27] == math.comb(54, 27) == 1_946_939_425_648_112
    assert sum(counts[5:18]) / 2 ** 54 == pytest.approx(0.0045, abs=0.0001)  # paths of 5-17: 0.45%


def path_batch(seed=6, n=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 8, 8)), rng.integers(0, 10, n)


def test_path_gradients_enumerates_small_lengths_and_samples_large_ones():
    minires.manual_seed(0)
    model = trained_looking(models.cifar_resnet(14, width=4).double())  # 6 blocks
    batch = path_batch()
    result = paths.path_gradients(model, [batch, path_batch(7)], samples=6, seed=1)
    assert all(p.grad is None for p in model.parameters())
    assert result.lengths == list(range(7)) and result.counts == [1, 6, 15, 20, 15, 6, 1]
    # all C(6, k) paths when there are at most 6 of them, else 6 draws; per batch
    assert [len(result.norms[k]) for k in result.lengths] == [2, 12, 12, 12, 12, 12, 2]
    assert result.total == [c * m for c, m in zip(result.counts, result.mean_norm)]
    blocks = paths.routable_blocks(model)
    with paths.routed(blocks, set()):
        assert result.norms[0][0] == np.linalg.norm(paths.input_gradient(model, *batch))
    assert result.full_norms[0] == np.linalg.norm(paths.input_gradient(model, *batch))
    assert all(block.route is None for block in blocks)


def test_carrying_grows_the_window_around_the_peak():
    result = paths.PathGradients(4, {k: [m] for k, m in enumerate([1.0, 0.5, 0.2, 0.1, 1.0])})
    assert result.total == pytest.approx([1.0, 2.0, 1.2, 0.4, 1.0])  # counts 1 4 6 4 1
    low, high, share = result.carrying(0.7)
    assert (low, high) == (0, 2) and share == pytest.approx(11 / 16)


def test_path_gradients_checks_its_arguments():
    model = models.cifar_resnet(8, width=4).double()
    with pytest.raises(ValueError, match="eval mode"):
        paths.path_gradients(model, [path_batch()])
    with pytest.raises(ValueError, match=r"lengths must lie in 0\.\.3"):
        paths.path_gradients(model.eval(), [path_batch()], lengths=[4])
    with pytest.raises(ValueError, match="no residual blocks"):
        paths.path_gradients(models.cifar_resnet(8, width=4, residual=False).double().eval(), [path_batch()])

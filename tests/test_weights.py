"""Trained weights: models.resnet20(weights="cifar10") and friends, their errors, and the exporter
(a run of the demo on a tiny stand-in CIFAR-10 folder -> an .npz file -> the factory)."""
import json

import numpy as np
import pytest

import train_cifar_resnet18 as demo  # demos/ is on pytest's pythonpath (pyproject.toml)
from minires import data, models, train
from minires.models import weights
from minires.models.weights import WeightsCorruptError, WeightsNotFoundError, evaluate_accuracy, normalise
from minires.models.weights import export as export_module
from minires.models.weights.__main__ import main as weights_cli
from minires.models.weights.export import export
from minires.testing.cifar_files import make_cifar_folder
from minires.testing.trained import untrained_metadata, write_untrained_weights

MINIMUM_ACCURACY = {"resnet20": 0.85, "plain20": 0.75, "resnet56": 0.75}  # the floor (plain-56: none)


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    """An empty package weights folder."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(weights, "WEIGHTS_DIR", folder)
    return folder


def assert_same_state(model, expected):
    assert list(model.state_dict()) == list(expected.state_dict())
    for key, value in expected.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[key], value, err_msg=key)


@pytest.mark.parametrize("name,factory", [
    ("resnet20", lambda: models.resnet20(weights="cifar10")),
    ("plain20", lambda: models.resnet20(residual=False, weights="cifar10")),
    ("resnet56", lambda: models.resnet56(weights="cifar10")),
    ("plain56", lambda: models.cifar_resnet(56, residual=False, weights="cifar10")),
])
def test_factories_load_the_weights(weights_dir, name, factory):
    written = write_untrained_weights(weights_dir, [name], seed=1)
    model = factory()
    assert_same_state(model, written[name])
    assert model.residual == name.startswith("resnet")
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert weights.metadata(name)["name"] == name and weights.available() == [name]


def test_saved_file_is_float32_arrays_and_json_text(weights_dir):
    write_untrained_weights(weights_dir, ["resnet20"])
    with np.load(weights.weights_path("resnet20"), allow_pickle=False) as archive:
        assert archive["conv1.weight"].dtype == np.float32
        assert archive["bn1.num_batches_tracked"].dtype == np.int64
        assert json.loads(str(archive[weights.METADATA_KEY])) == untrained_metadata("resnet20", 20, True)


@pytest.mark.parametrize("arguments,message", [
    ({"shortcut": "B"}, "shortcut='B' \\(the weights have shortcut='A'\\)"),
    ({"width": 8}, "width=8 \\(the weights have width=16\\)"),
    ({"num_classes": 100}, "num_classes=100 \\(the weights have num_classes=10\\)"),
])
def test_arguments_the_weights_do_not_fit_are_refused(weights_dir, arguments, message):
    write_untrained_weights(weights_dir, ["resnet20"])
    with pytest.raises(ValueError, match=r"resnet20\(weights='cifar10'\): the weights do not fit " + message):
        models.resnet20(weights="cifar10", **arguments)


def test_unknown_weights_and_networks_without_weights_are_refused(weights_dir):
    with pytest.raises(ValueError, match="resnet20: weights must be None or 'cifar10', got 'imagenet'"):
        models.resnet20(weights="imagenet")
    with pytest.raises(ValueError, match="resnet32: no CIFAR-10 weights ship with minires.*resnet20, plain20"):
        models.resnet32(weights="cifar10")


def test_a_missing_file_is_named(weights_dir):
    with pytest.raises(WeightsNotFoundError, match=f"weights file {weights_dir / 'resnet56_cifar10.npz'} is missing"):
        models.resnet56(weights="cifar10")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no metadata", "missing tensor", "other network"])
def test_a_corrupt_file_is_named(weights_dir, damage):
    write_untrained_weights(weights_dir, ["resnet20", "plain20"])
    path = weights.weights_path("resnet20")
    if damage == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:5000])
    else:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
        if damage == "no metadata":
            del arrays[weights.METADATA_KEY]
        elif damage == "missing tensor":
            del arrays["layer2.0.conv1.weight"]
        else:
            arrays[weights.METADATA_KEY] = np.array(json.dumps(untrained_metadata("plain20", 20, False)))
        np.savez(path, **arrays)
    with pytest.raises(WeightsCorruptError, match=f"weights file {path}"):
        models.resnet20(weights="cifar10")


def test_evaluate_accuracy_is_a_plain_argmax_loop():
    model = models.cifar_resnet(8, width=4).eval()
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (7, 3, 8, 8)).astype(np.uint8), rng.integers(0, 10, 7)
    expected = np.mean(model(normalise(images)).argmax(axis=1) == labels)
    assert evaluate_accuracy(model, images, labels, batch_size=3) == pytest.approx(expected, abs=1e-12)
    mean = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(normalise(images), (images / 255 - mean) / std, atol=1e-6)
    with pytest.raises(ValueError, match="training mode; call model.eval"):
        evaluate_accuracy(model.train(), images, labels)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One epoch of the demo (ResNet-20 of width 4) on a tiny stand-in CIFAR-10 folder."""
    folder = tmp_path_factory.mktemp("run")
    make_cifar_folder(folder / "data", per_batch=8)
    demo.main(["--model", "resnet20", "--width", "4", "--epochs", "1", "--subset", "16", "--batch-size", "8",
               "--data-dir", str(folder / "data"), "--out", str(folder / "run"), "--no-progress", "--seed", "3"])
    return folder


def checkpoint_model(run_dir):
    model = models.resnet20(width=4)
    train.load_checkpoint(train.find_checkpoint(run_dir), model)
    return model.eval()


def test_export_round_trip(finished_run, weights_dir, capsys):
    run_dir = finished_run / "run"
    assert weights_cli(["export", str(run_dir)]) == 0
    info = weights.metadata("resnet20")
    trained = checkpoint_model(run_dir)
    test_set = data.CIFAR10(finished_run / "data", train=False)
    assert info["test_accuracy"] == evaluate_accuracy(trained, test_set.data, test_set.targets)
    assert info["command"] == ("python demos/train_cifar_resnet18.py --model resnet20 --width 4 --shortcut A "
                               "--epochs 1 --batch-size 8 --lr 0.1 --schedule onecycle --warmup 1.0 "
                               "--momentum 0.9 --nesterov --weight-decay 0.0005 --label-smoothing 0.0 "
                               "--seed 3 --subset 16")
    assert (info["seed"], info["epochs"], info["epochs_trained"], info["test_images"]) == (3, 1, 1, 8)
    assert info["architecture"] == {"depth": 20, "residual": True, "shortcut": "A", "width": 4, "num_classes": 10}
    assert info["demo_test_accuracy"] == pytest.approx(info["test_accuracy"])  # two evaluations agree
    assert_same_state(models.resnet20(width=4, weights="cifar10"), trained)
    with pytest.raises(ValueError, match="width=16 \\(the weights have width=4\\)"):
        models.resnet20(weights="cifar10")
    out = capsys.readouterr().out
    assert "resnet20: test accuracy" in out and str(weights_dir / "resnet20_cifar10.npz") in out
    weights_cli(["list"])
    assert "--model resnet20 --width 4" in capsys.readouterr().out


def test_the_exporter_knows_the_demos_recipe_flags():
    assert export_module.RECIPE_FLAGS == demo.RECIPE_FLAGS


def test_export_refuses_an_unfinished_run_unless_partial(finished_run, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / train.CHECKPOINT_NAME).write_bytes((finished_run / "run" / train.CHECKPOINT_NAME).read_bytes())
    config = json.loads((finished_run / "run" / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps(dict(config, epochs=3)))
    with pytest.raises(ValueError, match="has finished 1 of its 3 epochs; wait for it, or pass --partial"):
        export(run_dir, out=tmp_path / "w.npz")
    info = export(run_dir, out=tmp_path / "w.npz", partial=True)
    assert (info["epochs_trained"], info["epochs"]) == (1, 3)
    with pytest.raises(SystemExit, match="config.json is missing"):
        weights_cli(["export", str(tmp_path)])
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SystemExit, match=f"{tmp_path} holds no checkpoint"):
        weights_cli(["export", str(tmp_path)])


def shipped(name):
    if not weights.weights_path(name).is_file():
        pytest.skip(f"{weights.weights_path(name).name} is not in the package yet")
    return weights.metadata(name)


@pytest.mark.parametrize("name", weights.SHIPPED)
def test_shipped_weights_meet_the_accuracy_floor(name):
    info = shipped(name)
    assert info["epochs_trained"] == info["epochs"] and info["test_images"] == 10_000
    assert info["test_accuracy"] >= MINIMUM_ACCURACY.get(name, 0.0)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name", weights.SHIPPED)
def test_shipped_weights_reproduce_their_accuracy(name, real_data_root):
    """Evaluating a shipped network on the 10,000 test images gives its recorded accuracy (0.1 point)."""
    info = shipped(name)
    test_set = data.CIFAR10(real_data_root, train=False)
    model = models.cifar_resnet(info["architecture"]["depth"], residual=name.startswith("resnet"), weights="cifar10")
    accuracy = evaluate_accuracy(model.eval(), test_set.data, test_set.targets)
    assert abs(accuracy - info["test_accuracy"]) <= 0.001

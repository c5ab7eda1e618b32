"""Smoke runs of the demos of the skip-connection lab II (identity_mappings.py, shattered_gradients.py,
loss_landscape.py) on tiny stand-in data."""
import json

import numpy as np
import pytest

import minires
from minires import data, models, optim, train
from minires.io import load_npz, save_npz
from minires.models.weights import METADATA_KEY, save_weights

import identity_mappings  # demos/ is on pytest's pythonpath (pyproject.toml), as python puts it for a script
import loss_landscape
import shattered_gradients

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_identity_mappings_smoke_run(tmp_path, capsys):
    names = ["original", "exclusive gating b_g=-6", "dropout shortcut", "full pre-activation"]
    rows = identity_mappings.main(["--synthetic", "--depth", "8", "--steps", "4", "--eval-every", "2",
                                   "--batch-size", "4", "--subset", "16", "--test-size", "8", "--probe", "4",
                                   "--out", str(tmp_path), "--variants", *names])
    assert [row["name"] for row in rows] == names
    for row in rows:
        assert len(row["init"]["unit_grads"]) == 3 and row["init"]["unit_grads"][0] == 1.0
        assert all(0 < share < 1 for share in row["init"]["shortcut_shares"])
        assert [p["step"] for p in row["points"]] == [2, 4]
    saved = json.loads((tmp_path / "identity_mappings.json").read_text())
    assert saved["rows"] == rows and saved["config"]["depth"] == 8
    assert (tmp_path / "identity_mappings.png").read_bytes().startswith(PNG_MAGIC)
    out = capsys.readouterr().out
    assert "paper (ResNet-110)" in out and "6.37%" in out and "fail" in out
    again = identity_mappings.main(["--synthetic", "--depth", "8", "--steps", "4", "--eval-every", "2",
                                    "--batch-size", "4", "--subset", "16", "--test-size", "8", "--probe", "4",
                                    "--out", str(tmp_path), "--variants", names[1], "ReLU before addition"])
    assert again[0] == rows[1] and again[1]["name"] == "ReLU before addition"  # the first one reused, not measured
    assert "measured by an earlier run" in capsys.readouterr().out


def test_identity_mappings_presets():
    quick = identity_mappings.parse_args(["--quick"])
    assert (quick.depth, quick.steps, len(quick.variants)) == (20, 60, 4)
    full = identity_mappings.parse_args([])
    assert full.variants == list(identity_mappings.VARIANTS) and full.depth == 32
    with pytest.raises(SystemExit):
        identity_mappings.parse_args(["--variants", "no such variant"])


def test_shattered_gradients_smoke_run(tmp_path, capsys):
    curves = shattered_gradients.main(["--depths", "1", "3", "--nets", "2", "--width", "16", "--inputs", "32",
                                       "--out", str(tmp_path)])
    assert set(curves) == {"feedforward", "feedforward_bn", "residual_bn"}
    assert all(values.shape == (2, 2) and (np.abs(values) <= 1).all() for values in curves.values())
    saved = json.loads((tmp_path / "shattered_gradients.json").read_text())
    assert len(saved["examples"]) == 4 and len(saved["examples"][3]["gradients"]) == 32
    assert (tmp_path / "shattered_gradients.png").read_bytes().startswith(PNG_MAGIC)
    assert "1/sqrt(L)" in capsys.readouterr().out


def test_loss_landscape_smoke_run_with_weights_files_and_resume(tmp_path, capsys):
    minires.manual_seed(5)
    save_npz(models.cifar_resnet(8, residual=False), tmp_path / "plain8.npz")
    resnet = models.cifar_resnet(8)  # a training checkpoint, as demos/train_cifar_resnet18.py writes it
    train.save_checkpoint(tmp_path / "checkpoint.npz", resnet, optim.SGD(resnet.parameters(), lr=0.1), None,
                          data.DataLoader((np.zeros((2, 3, 8, 8), np.uint8), np.zeros(2, np.int64))), 0, [])
    loaded = loss_landscape.build(8, True, str(tmp_path / "checkpoint.npz"), seed=1)
    for name, value in resnet.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
    argv = ["--synthetic", "--net", f"resnet8={tmp_path / 'checkpoint.npz'}", "--net", f"plain8={tmp_path / 'plain8.npz'}",
            "--images", "6", "--line-points", "3", "--grid-points", "3", "--batch-size", "4", "--out", str(tmp_path / "out")]
    partial = loss_landscape.main([*argv, "--max-points", "2"])
    assert np.isnan(partial[0]["grid"]["loss"]).sum() == 7 and partial[0]["grid"]["local_minima"] is None
    rows = loss_landscape.main(argv)  # resumes: only the missing points are computed
    assert [row["name"] for row in rows] == ["resnet8", "plain8"]
    for row in rows:
        assert not np.isnan(row["line"]["loss"]).any() and np.array(row["grid"]["loss"]).shape == (3, 3)
        assert row["line"]["loss"][1] == row["grid"]["loss"][1][1]  # both origins: the trained weights
    assert partial[0]["grid"]["loss"][0][:2] == rows[0]["grid"]["loss"][0][:2]
    assert (tmp_path / "out" / "loss_landscape.png").read_bytes().startswith(PNG_MAGIC)
    assert "local minima" in capsys.readouterr().out


def test_loss_landscape_net_names_and_missing_weights(tmp_path):
    args = loss_landscape.parse_args(["--quick"])
    assert [net[:3] for net in args.net] == [("resnet56", 56, True), ("plain56", 56, False)]
    assert args.images == 256 and args.grid_points == 7
    with pytest.raises(SystemExit):
        loss_landscape.parse_args(["--net", "resnet21"])
    with pytest.raises(SystemExit, match="there is no weights file .*missing.npz"):
        loss_landscape.build(20, True, str(tmp_path / "missing.npz"), seed=0)
    with pytest.raises(SystemExit, match="ships no weights 'cifar10' for resnet26"):  # no factory for 26
        loss_landscape.build(26, True, "cifar10", seed=0)
    (tmp_path / "garbage.npz").write_text("not an archive")
    with pytest.raises(SystemExit, match=r"--net resnet20=.*garbage.npz: not usable"):
        loss_landscape.build(20, True, str(tmp_path / "garbage.npz"), seed=0)


def test_loss_landscape_reads_a_shipped_weights_file_and_refuses_another_depth(tmp_path):
    path = tmp_path / "resnet8_cifar10.npz"
    save_weights(models.cifar_resnet(8), path, {"name": "resnet8"})
    loaded = loss_landscape.build(8, True, str(path), seed=0)
    saved = load_npz(path)
    assert saved.pop(METADATA_KEY)  # the entry the demo sets aside
    for name, value in saved.items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
    with pytest.raises(SystemExit, match=r"--net plain14=.*resnet8_cifar10.npz: not usable (?s:.*)missing keys"):
        loss_landscape.build(14, False, str(path), seed=0)

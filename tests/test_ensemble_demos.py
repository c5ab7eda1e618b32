"""demos/lesion.py and demos/path_lengths.py in their --quick mode, end to end on stand-in images,
with untrained stand-ins for the shipped weights (real architectures)."""
import json

import pytest

import lesion  # demos/ is on pytest's pythonpath (pyproject.toml), as python puts it for a script
import path_lengths
from minires.models import weights
from minires.testing.trained import write_untrained_weights

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def stand_in_weights(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    write_untrained_weights(folder, ["resnet20", "plain20"])
    monkeypatch.setattr(weights, "WEIGHTS_DIR", folder)
    return folder


def test_lesion_quick_run(stand_in_weights, tmp_path, capsys):
    results = lesion.main(["--quick", "--synthetic", "--test-size", "16", "--draws", "2", "--out", str(tmp_path)])
    assert [r["name"] for r in results] == ["ResNet-20", "plain-20"]
    resnet, plain = results
    assert len(resnet["single"]) == 9 and len(plain["single"]) == 7  # plain: no downsampling blocks
    assert sorted(resnet["random"]) == list(range(1, 10)) and sorted(plain["random"]) == list(range(1, 8))
    assert all(len(errors) == 2 for k, errors in resnet["random"].items() if k < 9)
    assert (tmp_path / "lesion.png").read_bytes().startswith(PNG_MAGIC)
    saved = json.loads((tmp_path / "lesion.json").read_text())
    assert saved["config"]["nets"] == ["resnet20", "plain20"] and saved["config"]["test_size"] == 16
    assert saved["results"][0]["intact"] == resnet["intact"]
    out = capsys.readouterr().out
    assert "layer2.0 (down)" in out and "k blocks deleted" in out and "plain-20" in out


def test_path_lengths_quick_run(stand_in_weights, tmp_path, capsys):
    results = path_lengths.main(["--quick", "--synthetic", "--batches", "1", "--batch-size", "4", "--samples", "2",
                                 "--out", str(tmp_path)])
    (result,) = results
    assert result["name"] == "ResNet-20" and result["blocks"] == 9
    assert result["paths"] == [1, 9, 36, 84, 126, 126, 84, 36, 9, 1]
    assert [len(result["norms"][str(k)]) for k in result["lengths"]] == [1] + [2] * 8 + [1]
    assert (tmp_path / "path_lengths.png").read_bytes().startswith(PNG_MAGIC)
    saved = json.loads((tmp_path / "path_lengths.json").read_text())
    assert saved["results"][0]["total"] == pytest.approx(result["total"])
    out = capsys.readouterr().out
    assert "2^9 = 512 paths" in out and "of the total gradient" in out


def test_presets_and_explicit_flags():
    args = lesion.parse_args(["--quick", "--draws", "7"])
    assert (args.nets, args.test_size, args.draws) == (["resnet20", "plain20"], 1000, 7)
    assert lesion.parse_args([]).nets == ["resnet20", "plain20", "resnet56", "plain56"]
    assert path_lengths.parse_args(["--quick"]).nets == ["resnet20"]
    with pytest.raises(SystemExit):
        path_lengths.parse_args(["--nets", "plain20"])  # a plain net has no paths to route


def test_missing_weights_give_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(SystemExit, match="trained weights of resnet20 are not usable: weights file .* is missing"):
        lesion.main(["--quick", "--synthetic", "--test-size", "4", "--out", str(tmp_path)])

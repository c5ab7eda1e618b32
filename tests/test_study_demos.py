"""Smoke runs of the study demos (skip_connections.py, degradation.py) on tiny synthetic data."""
import json

import pytest

import degradation  # demos/ is on pytest's pythonpath (pyproject.toml), as python puts it for a script
import skip_connections

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_skip_connections_smoke_run(tmp_path, capsys):
    rows = skip_connections.main(["--synthetic", "--depths", "8", "14", "--steps", "2", "--batch-size", "4",
                                  "--probe", "4", "--out", str(tmp_path)])
    assert [row["name"] for row in rows] == ["plain-8", "ResNet-8", "plain-14", "ResNet-14"]
    for row in rows:
        for stage in ("init", "trained"):
            measurement = row[stage]
            assert len(measurement["layer_grads"]) == row["depth"]  # every conv and the classifier
            assert len(measurement["shares"]) == (row["depth"] - 2) // 2
            if row["residual"]:
                assert all(0 < share < 1 for share in measurement["shares"])
                # output first: the first blocks of stages 3 and 2 (option A shortcuts) are marked
                assert measurement["stage_entries"] == {8: [True, True, False],
                                                        14: [False, True, False, True, False, False]}[row["depth"]]
            else:
                assert all(share == 0 for share in measurement["shares"])
    for name in ("gradient_per_layer.png", "shortcut_share.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_MAGIC)
    out = capsys.readouterr().out
    assert "plain-14" in out and "in/out" in out and "after 2 steps" in out and "shortcut share" in out
    plain_line = [line for line in out.splitlines() if line.startswith("plain-14")][0]
    assert plain_line.split()[3] == "-"  # a plain net has no shortcut: no share printed as if measured


def test_degradation_smoke_run(tmp_path, capsys):
    runs = degradation.main(["--synthetic", "--depths", "8", "--steps", "4", "--eval-every", "2",
                             "--batch-size", "4", "--subset", "16", "--test-size", "8", "--out", str(tmp_path)])
    assert [run["name"] for run in runs] == ["plain-8", "ResNet-8"]
    assert all([p["step"] for p in run["points"]] == [2, 4] for run in runs)
    assert all(0 <= p["train_error"] <= 100 and 0 <= p["test_error"] <= 100 for run in runs for p in run["points"])
    assert (tmp_path / "degradation.png").read_bytes().startswith(PNG_MAGIC)
    saved = json.loads((tmp_path / "degradation.json").read_text())
    assert saved["runs"] == runs and saved["config"]["steps"] == 4
    assert "final test error" in capsys.readouterr().out


def test_both_studies_run_on_the_second_fake_gpu(fake_gpu, tmp_path):
    """``--device cuda:1`` on the CuPy stand-in (minires.testing.fake_cupy): CuPy computes on the
    current GPU only, so a study that forgot to make its device current would fail here."""
    rows = skip_connections.main(["--synthetic", "--depths", "8", "--steps", "2", "--batch-size", "4",
                                  "--probe", "4", "--out", str(tmp_path), "--device", "cuda:1"])
    assert all(len(row["trained"]["layer_grads"]) == 8 for row in rows)
    runs = degradation.main(["--synthetic", "--depths", "8", "--steps", "2", "--eval-every", "2", "--batch-size", "4",
                             "--subset", "8", "--test-size", "4", "--out", str(tmp_path), "--device", "cuda:1"])
    assert all([p["step"] for p in run["points"]] == [2] for run in runs)


def test_degradation_presets_and_explicit_flags():
    args = degradation.parse_args(["--paper", "--steps", "100", "--eval-every", "10"])
    assert (args.depths, args.batch_size, args.lr, args.steps) == ([20, 32, 44, 56], 128, 0.1, 100)
    assert degradation.parse_args([]).preset == "quick"
    with pytest.raises(SystemExit):
        degradation.parse_args(["--steps", "10", "--eval-every", "20"])


def test_missing_dataset_gives_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="(?s)CIFAR-10 is not available.*--synthetic"):
        skip_connections.main(["--data-dir", str(tmp_path), "--out", str(tmp_path)])

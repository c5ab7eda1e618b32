"""demos/train_cifar_resnet18.py end to end on a tiny CIFAR-10 folder in the real format."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minires import backend, nn, train
from minires.testing import fake_cupy
from minires.testing.cifar_files import make_cifar_folder

DEMO = Path(__file__).resolve().parents[1] / "demos" / "train_cifar_resnet18.py"


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("train_cifar_resnet18", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_lists_the_options():
    result = subprocess.run([sys.executable, str(DEMO), "--help"], capture_output=True, text=True, check=True)
    for option in ("--model", "--epochs", "--batch-size", "--lr", "--schedule", "--warmup", "--momentum",
                   "--nesterov", "--weight-decay", "--label-smoothing", "--seed", "--data-dir", "--download",
                   "--subset", "--device", "--out", "--resume", "--eval-only", "--width", "--plain"):
        assert option in result.stdout


def test_trains_writes_its_files_resumes_and_evaluates(demo, tmp_path, capsys):
    make_cifar_folder(tmp_path / "data", per_batch=16)
    common = ["--model", "resnet20", "--width", "4", "--batch-size", "16", "--data-dir", str(tmp_path / "data"),
              "--out", str(tmp_path / "run"), "--no-progress", "--schedule", "cosine", "--warmup", "0.5"]
    demo.main(common + ["--epochs", "1"])
    for name in ("checkpoint.pkl", "metrics.csv", "metrics.json", "curves.png", "confusion_matrix.png", "config.json"):
        assert (tmp_path / "run" / name).stat().st_size > 0, name
    history = demo.main(common + ["--epochs", "2", "--resume"])
    assert [row["epoch"] for row in history] == [1, 2]
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())) == 2
    result = demo.main(common + ["--epochs", "2", "--eval-only"])
    assert result["confusion"].sum() == 16
    out = capsys.readouterr().out
    assert "epoch   1/1" in out and "epoch   2/2" in out and "test loss" in out


TIMINGS = ("seconds", "images_per_second", "test_seconds")


def test_on_a_fake_gpu_the_demo_computes_what_it_computes_on_the_cpu(demo, tmp_path, capsys):
    """``--device cuda`` on the CuPy stand-in (minires.testing.fake_cupy, which refuses implicit
    host copies, NumPy operands and other devices' arrays): one epoch, then ``--resume`` to two,
    then ``--eval-only --tta``, with the checkpoint written and read and the pictures drawn. The
    model, optimizer state, schedule, batches, loss and metrics all live on the fake GPU, and the
    numbers are the CPU run's to the bit (float32). Both runs take the textbook kernels so that they
    add in the same order: by default the CPU takes the shifted GEMM for these small convolutions
    and a GPU im2col, two routes that agree to float64 rounding (tests/test_gpu_path.py, which
    also trains and evaluates on "cuda:1")."""
    make_cifar_folder(tmp_path / "data", per_batch=16)

    def run(on):
        out = tmp_path / on
        common = ["--model", "resnet20", "--width", "4", "--batch-size", "16", "--data-dir", str(tmp_path / "data"),
                  "--out", str(out), "--no-progress", "--schedule", "cosine", "--warmup", "0.5", "--device", on]
        with nn.reference_kernels():
            demo.main(common + ["--epochs", "1"])
            history = demo.main(common + ["--epochs", "2", "--resume"])
            result = demo.main(common + ["--epochs", "2", "--eval-only", "--tta"])
        for name in (train.CHECKPOINT_NAME, "metrics.csv", "curves.png", "confusion_matrix.png"):
            assert (out / name).stat().st_size > 0, f"{on}: {name}"
        return [{k: v for k, v in row.items() if k not in TIMINGS} for row in history], result

    cpu_history, cpu_result = run("cpu")
    with backend.substitute_cupy(fake_cupy):
        history, result = run("cuda")
    assert "parameters on cuda" in capsys.readouterr().out
    assert [row["epoch"] for row in history] == [1, 2]
    assert history == cpu_history  # losses, accuracies, learning rates: equal floats
    assert result["loss"] == cpu_result["loss"] and result["accuracy"] == cpu_result["accuracy"]
    np.testing.assert_array_equal(result["confusion"], cpu_result["confusion"])


def test_missing_data_says_where_to_put_it(demo, tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        demo.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--epochs", "1"])


@pytest.mark.realdata
@pytest.mark.slow
def test_a_short_epoch_on_the_real_data_learns(demo, tmp_path, real_data_root):
    """The README's command cut to one epoch of 4,096 training images (64 steps of 64, a gentler
    peak learning rate for so short a run), tested on all 10,000: far above chance (10%); measured 30%."""
    history = demo.main(["--data-dir", str(real_data_root), "--model", "resnet20", "--epochs", "1", "--subset", "4096",
                         "--batch-size", "64", "--lr", "0.05", "--out", str(tmp_path / "run"), "--no-progress"])
    assert history[-1]["test_accuracy"] > 0.25

"""demos/train_cifar_resnet18.py end to end on a tiny CIFAR-10 folder in the real format."""
import importlib.util
import json
import os
import pickle
import re
import shutil
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
                   "--subset", "--device", "--out", "--resume", "--eval-only", "--width", "--plain", "--debug"):
        assert option in result.stdout


COMMON = ["--model", "resnet20", "--width", "4", "--batch-size", "16", "--no-progress", "--schedule", "cosine",
          "--warmup", "0.5", "--epochs", "2"]


@pytest.fixture(scope="module")
def interrupted_run(demo, tmp_path_factory):
    """A tiny CIFAR-10 folder and a run of 2 epochs interrupted (Ctrl-C) once epoch 1 was written."""
    root = tmp_path_factory.mktemp("interrupted")
    make_cifar_folder(root / "data", per_batch=16)
    interrupt_after_epoch_1(demo, COMMON + ["--data-dir", str(root / "data"), "--out", str(root / "run")])
    return root


def interrupt_after_epoch_1(demo, args):
    """Run the demo with ``args`` and stop it (Ctrl-C) once epoch 1 was written."""
    plot = demo.plot_confusion_matrix

    def plot_then_interrupt(*args, **kwargs):
        plot(*args, **kwargs)
        raise KeyboardInterrupt
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(demo, "plot_confusion_matrix", plot_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            demo.main(args)


@pytest.fixture
def run_copy(interrupted_run, tmp_path):
    """``(arguments of the run, its folder)``: a fresh copy of the interrupted run and its data."""
    shutil.copytree(interrupted_run, tmp_path, dirs_exist_ok=True)
    return COMMON + ["--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run")], tmp_path / "run"


def test_trains_writes_its_files_resumes_and_evaluates(demo, run_copy, capsys):
    args, run = run_copy
    for name in ("checkpoint.npz", "metrics.csv", "metrics.json", "curves.png", "confusion_matrix.png", "config.json"):
        assert (run / name).stat().st_size > 0, name
    history = demo.main(args + ["--resume"])
    assert [row["epoch"] for row in history] == [1, 2]
    assert len(json.loads((run / "metrics.json").read_text())) == 2
    result = demo.main(args + ["--eval-only"])
    assert result["confusion"].sum() == 16
    out = capsys.readouterr().out
    assert "epoch   2/2" in out and "test loss" in out


def _contents(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.mark.parametrize("changed, message", [
    (["--plain"], r"--plain False there, True now"),
    (["--epochs", "3"], r"--epochs 2 there, 3 now"),
    (["--lr", "0.2", "--seed", "1"], r"--lr 0\.1 there, 0\.2 now.*--seed 0 there, 1 now"),
    (["--schedule", "onecycle", "--batch-size", "8"], r"--batch-size 16 there, 8 now.*--schedule 'cosine' there, "
                                                      r"'onecycle' now"),
])
def test_resume_with_another_recipe_is_refused_and_changes_nothing(demo, run_copy, changed, message):
    args, run = run_copy
    before = _contents(run)
    with pytest.raises(train.RecipeMismatchError, match=r"checkpoint\.npz was written by a run with other "
                                                        r"settings: " + message):
        demo.main(args + ["--resume"] + changed)
    assert _contents(run) == before  # the checkpoint, config.json and the pictures are the run's


def test_eval_only_with_another_architecture_is_refused(demo, run_copy):
    args, run = run_copy
    before = _contents(run)
    with pytest.raises(train.RecipeMismatchError, match=r"--plain False there, True now"):
        demo.main(args + ["--eval-only", "--plain"])
    assert _contents(run) == before


def test_resume_may_change_what_does_not_change_the_result(demo, run_copy):
    args, run = run_copy
    shutil.move(run.parent / "data", run.parent / "moved")
    history = demo.main(args + ["--resume", "--tta", "--device", "cpu", "--data-dir", str(run.parent / "moved")])
    assert [row["epoch"] for row in history] == [1, 2]
    config = json.loads((run / "config.json").read_text())  # the truth: the recipe, and this start's other flags
    assert config["tta"] is True and config["epochs"] == 2 and config["data_dir"].endswith("moved")


def test_resume_without_a_checkpoint_says_so_in_one_line(demo, run_copy, capsys):
    args, run = run_copy
    (run / train.CHECKPOINT_NAME).unlink()
    demo.main(args + ["--resume"])
    assert f"--resume: no checkpoint in {run}; starting a new run" in capsys.readouterr().out.splitlines()


def test_a_format_1_checkpoint_is_checked_against_its_config_json(demo, run_copy):
    args, run = run_copy
    state = train.read_checkpoint(run / train.CHECKPOINT_NAME)
    with open(run / train.LEGACY_CHECKPOINT_NAME, "wb") as f:
        pickle.dump({"format": 1, **{key: state[key] for key in
                                     ("epoch", "model", "optimizer", "scheduler", "loader", "random", "history")}}, f)
    (run / train.CHECKPOINT_NAME).unlink()
    assert demo.main(args + ["--eval-only"])["confusion"].sum() == 16
    with pytest.raises(train.RecipeMismatchError, match=r"checkpoint\.pkl was written .* --epochs 2 there, 3 now"):
        demo.main(args + ["--resume", "--epochs", "3"])
    assert [row["epoch"] for row in demo.main(args + ["--resume"])] == [1, 2]
    (run / train.CHECKPOINT_NAME).unlink()
    (run / "config.json").unlink()
    with pytest.raises(train.RecipeMismatchError, match=r"checkpoint\.pkl records no settings .*config\.json"):
        demo.main(args + ["--eval-only"])


def test_eval_only_needs_no_training_files_and_survives_a_read_only_folder(demo, run_copy, monkeypatch, capsys):
    args, run = run_copy
    for k in range(1, 6):
        (run.parent / "data" / "cifar-10-batches-py" / f"data_batch_{k}").unlink()

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(run / "confusion_matrix.png"))
    monkeypatch.setattr(demo, "plot_confusion_matrix", read_only)
    result = demo.main(args + ["--eval-only"])
    assert result["confusion"].sum() == 16
    out = capsys.readouterr().out
    assert "test loss" in out and "warning: confusion_matrix.png not written (" in out and "Permission denied" in out


def test_eval_only_without_a_checkpoint_says_what_to_do(demo, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--eval-only: no checkpoint in .*train first"):
        demo.main(COMMON + ["--data-dir", str(tmp_path), "--out", str(tmp_path / "run"), "--eval-only"])


@pytest.mark.parametrize("flags, message", [
    (["--subset", "0"], r"argument --subset: must be at least 1, got 0"),
    (["--epochs", "0"], r"argument --epochs: must be at least 1, got 0"),
    (["--batch-size", "-4"], r"argument --batch-size: must be at least 1, got -4"),
    (["--device", "gpu"], r"argument --device: expected cpu, cuda or cuda:N, got 'gpu'"),
    (["--device", "tpu"], r"argument --device: expected cpu, cuda or cuda:N, got 'tpu'"),
    (["--device", "cuda:x"], r"argument --device: expected cpu, cuda or cuda:N, got 'cuda:x'"),
])
def test_bad_flags_are_one_line_naming_the_flag(demo, flags, message, capsys):
    with pytest.raises(SystemExit) as exited:
        demo.parse_args(flags)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


@pytest.mark.parametrize("flags, message", [
    (["--subset", "8"], r"--subset 8: fewer than one batch \(--batch-size 16\), nothing to train on"),
    (["--subset", "81"], r"--subset 81 is more than the 80 training images"),
])
def test_a_subset_that_cannot_train_is_refused(demo, run_copy, flags, message):
    args, _ = run_copy
    with pytest.raises(ValueError, match=message):
        demo.main(args + flags)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflows on the way
def test_a_blow_up_exits_non_zero_with_a_true_message(demo, run_copy):
    args, run = run_copy
    (run / train.CHECKPOINT_NAME).unlink()
    with pytest.raises(SystemExit) as exited:
        demo.cli(args + ["--lr", "1e6"])
    assert str(exited.value.code).startswith("stopped: ") and "No checkpoint was written" in exited.value.code
    assert not (run / train.CHECKPOINT_NAME).exists()


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(demo, tmp_path, monkeypatch):
    flags = ["--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run")]
    quiet = subprocess.run([sys.executable, str(DEMO)] + flags, capture_output=True, text=True,
                           env={**os.environ, "MINIRES_DEBUG": ""})
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert re.fullmatch(r"error: CIFAR10: folder .*cifar-10-batches-py not found\..*\n", quiet.stderr)
    with pytest.raises(FileNotFoundError):  # the exception itself, so Python prints its traceback
        demo.cli(flags + ["--debug"])
    monkeypatch.setenv("MINIRES_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        demo.cli(flags)


TIMINGS = ("seconds", "images_per_second", "test_seconds")


def test_on_a_fake_gpu_the_demo_computes_what_it_computes_on_the_cpu(demo, tmp_path, capsys):
    """``--device cuda`` on the CuPy stand-in (minires.testing.fake_cupy, which refuses implicit
    host copies, NumPy operands and other devices' arrays): two epochs, stopped after the first
    and continued with ``--resume``, then ``--eval-only --tta``; the checkpoint written and read,
    the pictures drawn. The
    model, optimizer state, schedule, batches, loss and metrics all live on the fake GPU, and the
    numbers are the CPU run's to the bit (float32). Both runs take the textbook kernels so that they
    add in the same order: by default the CPU takes the shifted GEMM for these small convolutions
    and a GPU im2col, two routes that agree to float64 rounding (tests/test_gpu_path.py, which
    also trains and evaluates on "cuda:1")."""
    make_cifar_folder(tmp_path / "data", per_batch=8)  # 5 batches of 8 per epoch, 8 test images

    def run(on):
        out = tmp_path / on
        args = COMMON + ["--batch-size", "8", "--data-dir", str(tmp_path / "data"), "--out", str(out), "--device", on]
        with nn.reference_kernels():
            interrupt_after_epoch_1(demo, args)
            history = demo.main(args + ["--resume"])
            result = demo.main(args + ["--eval-only", "--tta"])
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

"""The training loop: a small model learns, resuming continues exactly (even after a kill while a
checkpoint is written), a blow-up stops cleanly and truthfully, a resume refuses another recipe."""
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minires
from minires import data, models, nn, optim, train


def tiny_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def patterns(n, size=12, seed=0):
    """``n`` uint8 images: one fixed random pattern per class plus noise, and their labels."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 255, (10, 3, size, size))
    labels = np.arange(n) % 10
    images = templates[labels] + rng.normal(0, 40, (n, 3, size, size))
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64)


def loaders(n=64, batch_size=16, seed=0):
    images, labels = patterns(n)
    augment = data.Compose([data.RandomHorizontalFlip(), data.ToFloat()])
    return (data.DataLoader((images, labels), batch_size, shuffle=True, transform=augment, seed=seed),
            data.DataLoader((images, labels), 32))


def run(epochs, out_dir, resume=False, model_seed=0, lr=0.05, test_loader=None, **options):
    minires.manual_seed(model_seed)
    model = tiny_cnn()
    opt = optim.SGD(optim.weight_decay_groups(model, 5e-4), lr=lr, momentum=0.9, nesterov=True)
    train_loader, default_test_loader = loaders()
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3 * len(train_loader))
    history = train.fit(model, opt, train_loader, test_loader or default_test_loader, epochs, out_dir, sched,
                        nn.CrossEntropyLoss(label_smoothing=0.1), resume=resume, progress=False, **options)
    return model, history


def assert_same_weights(model, other):
    for (name, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_small_model_overfits_64_images():
    minires.manual_seed(0)
    model = tiny_cnn()
    opt = optim.Adam(model.parameters(), lr=0.01)
    train_loader, _ = loaders()
    for _ in range(15):
        result = train.train_one_epoch(model, train_loader, nn.CrossEntropyLoss(), opt, progress=False)
    assert result["accuracy"] >= 0.95, result


def test_two_epochs_equal_one_plus_resume_plus_one(tmp_path):
    straight, history = run(2, tmp_path / "straight")
    run(1, tmp_path / "resumed")
    resumed, resumed_history = run(2, tmp_path / "resumed", resume=True, model_seed=99)
    assert_same_weights(straight, resumed)
    assert [r["train_loss"] for r in history] == [r["train_loss"] for r in resumed_history]
    rows = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (tmp_path / "resumed" / "metrics.csv").read_text().startswith("epoch,lr,train_loss")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflows on the way
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model, _ = run(1, tmp_path)
    checkpoint = (tmp_path / train.CHECKPOINT_NAME).read_bytes()
    model[-1].weight.data[...] = np.nan
    opt = optim.SGD(model.parameters(), lr=0.1)
    train_loader, _ = loaders()
    before = {name: value.copy() for name, value in model.state_dict().items()}
    with pytest.raises(train.NonFiniteError, match=r"loss became nan at batch 1/4 of train; the weights, "
                                                   r"the optimizer and the running statistics are those of "
                                                   r"before that batch"):
        train.train_one_epoch(model, train_loader, nn.CrossEntropyLoss(), opt, progress=False)
    for name, value in model.state_dict().items():  # no update, running statistics included
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert (tmp_path / train.CHECKPOINT_NAME).read_bytes() == checkpoint


def _all_finite(state):
    return all(np.isfinite(value).all() for value in state.values() if value.dtype.kind == "f")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflows on the way
def test_a_blow_up_with_finite_losses_writes_no_checkpoint_and_says_so(tmp_path):
    """At lr 1e6 the epoch's losses stay finite (1e16) but the update leaves a running variance infinite."""
    with pytest.raises(train.NonFiniteError, match=r"after epoch 1/1, NaN or infinity in 1 of the arrays to "
                                                   r"save \(5\.running_var\).*lower learning rate\)\. No "
                                                   r"checkpoint was written\.$"):
        run(1, tmp_path, lr=1e6)
    assert not (tmp_path / train.CHECKPOINT_NAME).exists() and not (tmp_path / "metrics.json").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflows on the way
def test_a_blow_up_after_a_good_epoch_keeps_its_checkpoint_and_says_so(tmp_path):
    minires.manual_seed(0)
    model = tiny_cnn()
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train_loader, test_loader = loaders()

    def raise_the_learning_rate(history, test):
        opt.param_groups[0]["lr"] = 1e6
    with pytest.raises(train.NonFiniteError) as stopped:
        train.fit(model, opt, train_loader, test_loader, 3, tmp_path, progress=False,
                  on_epoch_end=raise_the_learning_rate)
    checkpoint = tmp_path / train.CHECKPOINT_NAME
    assert f"{checkpoint} still holds epoch 1, the last with finite values" in str(stopped.value)
    state = train.read_checkpoint(checkpoint)
    assert state["epoch"] == 0 and _all_finite(state["model"])
    assert [row["epoch"] for row in json.loads((tmp_path / "metrics.json").read_text())] == [1]


def test_a_non_finite_test_loss_stops_the_run(tmp_path):
    images, labels = patterns(32)
    images = data.ToFloat()(images)
    images[3, 0, 0, 0] = np.nan
    nan_test_loader = data.DataLoader(data.ArrayDataset(images, labels), 16, transform=lambda batch, rng: batch)
    with pytest.raises(train.NonFiniteError, match=r"the test loss became nan after epoch 1/2.*No checkpoint"):
        run(2, tmp_path, test_loader=nan_test_loader)
    assert not (tmp_path / train.CHECKPOINT_NAME).exists()


def test_evaluate_confusion_matrix_counts_every_image():
    minires.manual_seed(0)
    _, test_loader = loaders()
    result = train.evaluate(tiny_cnn(), test_loader, progress=False)
    assert result["confusion"].sum() == 64 and result["confusion"].shape == (10, 10)
    assert result["accuracy"] == np.trace(result["confusion"]) / 64


def test_evaluate_and_train_refuse_a_loader_without_images():
    minires.manual_seed(0)
    model = tiny_cnn()
    images, labels = patterns(8)
    too_few = data.DataLoader((images, labels), 16, drop_last=True)
    with pytest.raises(ValueError, match=r"evaluate: the loader gave no images"):
        train.evaluate(model, too_few, progress=False)
    with pytest.raises(ValueError, match=r"train_one_epoch: the loader gave no batch"):
        train.train_one_epoch(model, too_few, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                              progress=False)


def test_check_recipe_names_every_differing_setting_with_both_values():
    recorded = {"model": "resnet20", "plain": False, "epochs": 1, "lr": 0.1, "seed": 0, "device": "cpu"}
    train.check_recipe(recorded, {"model": "resnet20", "plain": False, "epochs": 1}, "run/checkpoint.npz")
    with pytest.raises(train.RecipeMismatchError) as refused:
        train.check_recipe(recorded, {"model": "resnet20", "plain": True, "epochs": 3, "lr": 0.1, "width": 8},
                           "run/checkpoint.npz")
    message = str(refused.value)
    assert message.startswith("run/checkpoint.npz was written by a run with other settings: ")
    for part in ("--plain False there, True now", "--epochs 1 there, 3 now", "--width not recorded there, 8 now"):
        assert part in message
    assert "--lr" not in message and "--model" not in message and "\n" not in message


def test_fit_refuses_to_resume_with_another_recipe_and_leaves_the_run_alone(tmp_path):
    recipe = {"lr": 0.05, "seed": 0}
    run(1, tmp_path, recipe=recipe)
    checkpoint = (tmp_path / train.CHECKPOINT_NAME).read_bytes()
    with pytest.raises(train.RecipeMismatchError, match=r"--lr 0\.05 there, 0\.1 now"):
        run(2, tmp_path, resume=True, lr=0.1, recipe={"lr": 0.1, "seed": 0})
    assert (tmp_path / train.CHECKPOINT_NAME).read_bytes() == checkpoint
    _, history = run(2, tmp_path, resume=True, recipe=recipe)
    assert [row["epoch"] for row in history] == [1, 2]
    assert train.read_checkpoint(tmp_path / train.CHECKPOINT_NAME)["recipe"] == recipe


def write_format_1(path, state):
    """A checkpoint.pkl as minires wrote it before format 2: a plain pickle of a dict."""
    with open(path, "wb") as f:
        pickle.dump({"format": 1, **{key: state[key] for key in
                                     ("epoch", "model", "optimizer", "scheduler", "loader", "random", "history")}},
                    f, protocol=pickle.HIGHEST_PROTOCOL)


def test_a_format_1_checkpoint_still_resumes_bit_exactly(tmp_path):
    straight, _ = run(2, tmp_path / "straight")
    run(1, tmp_path / "old")
    new_format = tmp_path / "old" / train.CHECKPOINT_NAME
    write_format_1(tmp_path / "old" / train.LEGACY_CHECKPOINT_NAME, train.read_checkpoint(new_format))
    new_format.unlink()
    assert train.find_checkpoint(tmp_path / "old") == tmp_path / "old" / train.LEGACY_CHECKPOINT_NAME
    resumed, history = run(2, tmp_path / "old", resume=True, model_seed=99)
    assert_same_weights(straight, resumed)
    assert [row["epoch"] for row in history] == [1, 2]
    assert train.find_checkpoint(tmp_path / "old") == new_format  # the new format from now on


def test_a_run_removes_the_temporary_files_of_killed_writes(tmp_path):
    orphans = [tmp_path / ".checkpoint.pkl.x1y2z3a4.tmp", tmp_path / f".{train.CHECKPOINT_NAME}.q9w8e7r6.tmp",
               tmp_path / ".metrics.json.abcdefgh.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a file")
    (tmp_path / "notes.tmp").write_text("not ours: kept")
    run(1, tmp_path)
    assert not any(orphan.exists() for orphan in orphans) and (tmp_path / "notes.tmp").exists()


KILLED_WRITER = """
import os, time
from tests.test_train import run

run(1, {out!r})  # epoch 1's checkpoint, written in full
real_fdopen = os.fdopen


class Stalling:
    \"\"\"The file of the next atomic write: stops for good after its first 4 KB.\"\"\"

    def __init__(self, f):
        self.f, self.written = f, 0

    def write(self, data):
        count = self.f.write(data)
        self.written += len(data)
        if self.written > 4096:
            self.f.flush()
            print("stalled", flush=True)
            time.sleep(600)
        return count

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exception):
        return self.f.__exit__(*exception)


os.fdopen = lambda fd, mode: Stalling(real_fdopen(fd, mode))
run(2, {out!r}, resume=True)  # killed while epoch 2's checkpoint is being written
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_kill_while_the_checkpoint_is_written_keeps_the_previous_one(tmp_path):
    out, checkout = tmp_path / "run", Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(out=str(out))],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = child.stdout.readline()
        assert line == b"stalled\n", child.communicate()[1].decode()[-2000:]
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert len(list(out.glob(f".{train.CHECKPOINT_NAME}.*.tmp"))) == 1  # the write that was cut short
    assert train.read_checkpoint(out / train.CHECKPOINT_NAME)["epoch"] == 0  # epoch 1's, intact

    resumed, history = run(2, out, resume=True, model_seed=99)
    straight, _ = run(2, tmp_path / "straight")
    assert_same_weights(straight, resumed)
    assert [row["epoch"] for row in history] == [1, 2] and not list(out.glob(".*.tmp"))


def test_checkpoint_restores_optimizer_and_random_state(tmp_path):
    model, _ = run(1, tmp_path)
    fresh = tiny_cnn()
    opt = optim.SGD(optim.weight_decay_groups(fresh, 5e-4), lr=0.05, momentum=0.9, nesterov=True)
    minires.manual_seed(123)
    epoch, history = train.load_checkpoint(tmp_path / train.CHECKPOINT_NAME, fresh, opt)
    assert epoch == 0 and len(history) == 1
    assert len(opt.state_dict()["state"]) == len(list(fresh.parameters()))
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_a_cifar_resnet_trains_a_step():
    minires.manual_seed(0)
    model = models.resnet20(width=4)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = patterns(8, size=32)
    loader = data.DataLoader((images, labels), 8)
    result = train.train_one_epoch(model, loader, nn.CrossEntropyLoss(), opt, progress=False)
    assert np.isfinite(result["loss"]) and all(p.grad is not None for p in model.parameters())


def test_metrics_files_keep_every_column_of_every_epoch(tmp_path):
    """A history whose rows differ in columns (e.g. resumed from an older checkpoint) still writes."""
    history = [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.5, "test_seconds": 3.0}]
    train.write_metrics(history, tmp_path)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines == ["epoch,train_loss,test_seconds", "1,2.0,", "2,1.5,3.0"]
    assert json.loads((tmp_path / "metrics.json").read_text()) == history


def test_evaluate_with_flip_averages_the_logits_of_the_mirror_images():
    images, labels = patterns(40)
    loader = data.DataLoader((images, labels), 16, transform=data.ToFloat())
    minires.manual_seed(3)
    model = tiny_cnn()
    result = train.evaluate(model, loader, progress=False, flip=True)
    x = data.ToFloat()(images)
    model.eval()
    with minires.no_grad():
        logits = (model(x) + model(np.ascontiguousarray(x[..., ::-1]))) / 2
    expected = nn.CrossEntropyLoss()(logits, labels)
    assert result["accuracy"] == np.mean(logits.argmax(axis=1) == labels)
    assert result["loss"] == pytest.approx(float(expected), rel=1e-6)
    assert result["confusion"].sum() == 40
    plain = train.evaluate(model, loader, progress=False)
    assert plain["loss"] != pytest.approx(result["loss"], rel=1e-6)  # the mirror images did count

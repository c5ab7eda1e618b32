"""The training loop: a small model learns, resuming continues exactly, a NaN loss stops cleanly."""
import json

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


def run(epochs, out_dir, resume=False, model_seed=0, lr=0.05):
    minires.manual_seed(model_seed)
    model = tiny_cnn()
    opt = optim.SGD(optim.weight_decay_groups(model, 5e-4), lr=lr, momentum=0.9, nesterov=True)
    train_loader, test_loader = loaders()
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=3 * len(train_loader))
    history = train.fit(model, opt, train_loader, test_loader, epochs, out_dir, sched,
                        nn.CrossEntropyLoss(label_smoothing=0.1), resume=resume, progress=False)
    return model, history


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
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert [r["train_loss"] for r in history] == [r["train_loss"] for r in resumed_history]
    rows = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2]
    assert (tmp_path / "resumed" / "metrics.csv").read_text().startswith("epoch,lr,train_loss")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model, _ = run(1, tmp_path)
    checkpoint = (tmp_path / train.CHECKPOINT_NAME).read_bytes()
    model[-1].weight.data[...] = np.nan
    opt = optim.SGD(model.parameters(), lr=0.1)
    train_loader, _ = loaders()
    before = {name: p.data.copy() for name, p in model.named_parameters()}
    with pytest.raises(train.NonFiniteLossError, match="loss became nan at batch 0"):
        train.train_one_epoch(model, train_loader, nn.CrossEntropyLoss(), opt, progress=False)
    for name, p in model.named_parameters():  # no update (running statistics move in forward, as in PyTorch)
        np.testing.assert_array_equal(p.data, before[name], err_msg=name)
    assert (tmp_path / train.CHECKPOINT_NAME).read_bytes() == checkpoint


def test_evaluate_confusion_matrix_counts_every_image():
    minires.manual_seed(0)
    _, test_loader = loaders()
    result = train.evaluate(tiny_cnn(), test_loader, progress=False)
    assert result["confusion"].sum() == 64 and result["confusion"].shape == (10, 10)
    assert result["accuracy"] == np.trace(result["confusion"]) / 64


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

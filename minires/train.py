"""The training loop: one epoch, evaluation, checkpoints, and resuming exactly where a run stopped.

One step is the whole of backpropagation by hand:

    logits = model(x)                      # every layer keeps its cache
    loss = criterion(logits, y)
    optimizer.zero_grad()
    model.backward(criterion.backward())   # dL/dlogits, then back through every layer
    optimizer.step()                       # p -= lr * (update from p.grad)

A checkpoint holds everything the next epoch depends on: weights and buffers, the optimizer's
state (momentum buffers), the schedule's position, the epoch, the metrics so far and the state
of minires' random generator. The loader draws each epoch's order and augmentations from
``(seed, epoch)``, so a resumed run sees the very batches an uninterrupted run would have seen:
on the CPU, two epochs straight and one epoch + resume + one epoch give identical weights.
Checkpoints are written atomically; a non-finite loss stops the run before the weights are
touched, so the last checkpoint on disk is still the last good one.
"""
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import random as mr_random
from .backend import asnumpy, on_device, to_device
from .grad_mode import no_grad
from .io import atomic_write, load_pickle, save_pickle
from .nn import CrossEntropyLoss

CHECKPOINT_NAME = "checkpoint.pkl"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: training stops and the last good checkpoint stays."""


def train_one_epoch(model, loader, criterion, optimizer, scheduler=None, device="cpu", progress=True, desc="train"):
    """One pass over ``loader``; the schedule (if any) steps after every batch.

    Returns ``{"loss", "accuracy", "seconds", "images_per_second"}`` averaged over the epoch.
    """
    model.train()
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch", dynamic_ncols=True)
    with on_device(device):  # on "cuda:N", CuPy computes on GPU N only while it is the current one
        for batch, (images, labels) in enumerate(bar):
            x, y = to_device(images, device), to_device(labels, device)
            logits = model(x)
            loss = float(criterion(logits, y))
            if not math.isfinite(loss):
                bar.close()
                raise NonFiniteLossError(f"the training loss became {loss} at batch {batch} of {desc}; "
                                         "training stopped before updating the weights (the last "
                                         "checkpoint is the last good one). Try a lower learning rate.")
            optimizer.zero_grad()
            model.backward(criterion.backward())
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += loss * len(labels)
            correct += int((logits.argmax(axis=1) == y).sum())
            seen += len(labels)
            rate = seen / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.1%}", img_s=f"{rate:.0f}")
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1), "seconds": seconds,
            "images_per_second": seen / seconds if seconds else 0.0}


def evaluate(model, loader, num_classes=10, device="cpu", progress=True, desc="test", flip=False):
    """Loss, accuracy, confusion matrix (rows: true class, columns: predicted) and seconds, in eval mode.

    ``flip=True`` is test-time augmentation: the logits of each image and of its mirror image
    (a view the training flips have shown the model) are averaged. It costs a second forward pass.
    """
    model.eval()
    criterion = CrossEntropyLoss()
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    loss_sum, seen, start = 0.0, 0, time.perf_counter()
    with no_grad(), on_device(device):
        for images, labels in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
            x = to_device(images, device)
            logits = model(x)
            if flip:
                logits = (logits + model(x[..., ::-1])) / 2
            loss_sum += float(criterion(logits, to_device(labels, device))) * len(labels)
            predicted = asnumpy(logits.argmax(axis=1))
            confusion += np.bincount(labels * num_classes + predicted,
                                     minlength=num_classes ** 2).reshape(num_classes, num_classes)
            seen += len(labels)
    return {"loss": loss_sum / max(seen, 1), "accuracy": np.trace(confusion) / max(seen, 1),
            "confusion": confusion, "seconds": time.perf_counter() - start}


def _to_host(value):
    """Arrays inside nested dicts/lists moved to NumPy, so that a checkpoint needs no GPU to read."""
    if isinstance(value, dict):
        return {k: _to_host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_host(v) for v in value)
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return asnumpy(value)
    return value


def save_checkpoint(path, model, optimizer, scheduler, loader, epoch, history):
    """Write everything needed to continue after ``epoch`` to ``path``, atomically."""
    save_pickle({
        "format": 1,
        "epoch": epoch,
        "model": _to_host(dict(model.state_dict())),
        "optimizer": _to_host(optimizer.state_dict()),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "loader": loader.state_dict(),
        "random": mr_random.get_state(),
        "history": history,
    }, path)


def load_checkpoint(path, model, optimizer, scheduler=None, loader=None):
    """Restore a checkpoint written by ``save_checkpoint``; returns ``(epoch, history)``."""
    state = load_pickle(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    if loader is not None:
        loader.load_state_dict(state["loader"])
    mr_random.set_state(state["random"])
    return state["epoch"], state["history"]


def write_metrics(history, out_dir):
    """``metrics.csv`` and ``metrics.json``: one row per epoch (confusion matrices left out)."""
    rows = [{k: v for k, v in row.items() if k != "confusion"} for row in history]
    with atomic_write(Path(out_dir) / "metrics.json", "w") as f:
        json.dump(rows, f, indent=2)
    with atomic_write(Path(out_dir) / "metrics.csv", "w") as f:
        columns = list(dict.fromkeys(key for row in rows for key in row)) or ["epoch"]  # every row's keys
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def fit(model, optimizer, train_loader, test_loader, epochs, out_dir, scheduler=None, criterion=None,
        device="cpu", resume=False, num_classes=10, progress=True, on_epoch_end=None, flip_test=False):
    """Train for ``epochs`` epochs, evaluating and checkpointing after each one.

    With ``resume=True`` and a checkpoint in ``out_dir``, training continues after the last
    finished epoch. ``on_epoch_end(history, test_result)`` is called after each checkpoint;
    ``flip_test`` evaluates with the mirror images too (see ``evaluate``).
    Returns the history: one dict per epoch (epoch, lr at its start, train_*, test_*, seconds of
    training with data loading, images/s, test_seconds of the evaluation).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / CHECKPOINT_NAME
    criterion = criterion or CrossEntropyLoss()
    start, history = 0, []
    if resume and checkpoint.exists():
        last_epoch, history = load_checkpoint(checkpoint, model, optimizer, scheduler, train_loader)
        start = last_epoch + 1
    for epoch in range(start, epochs):
        train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(model, train_loader, criterion, optimizer, scheduler, device, progress,
                                desc=f"epoch {epoch + 1}/{epochs}")
        test = evaluate(model, test_loader, num_classes, device, progress, flip=flip_test)
        history.append({"epoch": epoch + 1, "lr": lr, "train_loss": train["loss"],
                        "train_accuracy": train["accuracy"], "test_loss": test["loss"],
                        "test_accuracy": float(test["accuracy"]), "seconds": train["seconds"],
                        "images_per_second": train["images_per_second"], "test_seconds": test["seconds"]})
        save_checkpoint(checkpoint, model, optimizer, scheduler, train_loader, epoch, history)
        write_metrics(history, out_dir)
        if on_epoch_end is not None:
            on_epoch_end(history, test)
    return history


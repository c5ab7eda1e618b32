"""The training loop: one epoch, evaluation, checkpoints, and resuming exactly where a run stopped.

One step is the whole of backpropagation by hand:

    logits = model(x)                      # every layer keeps its cache
    loss = criterion(logits, y)
    optimizer.zero_grad()
    model.backward(criterion.backward())   # dL/dlogits, then back through every layer
    optimizer.step()                       # p -= lr * (update from p.grad)

A checkpoint holds everything the next epoch depends on: weights and buffers, the optimizer's
state (momentum buffers), the schedule's position, the epoch, the metrics so far, the state of
minires' random generator, and the recipe of the run (the settings that define it). The loader
draws each epoch's order and augmentations from ``(seed, epoch)``, so a resumed run sees the very
batches an uninterrupted run would have seen: on the CPU, two epochs straight and one epoch +
resume + one epoch give identical weights. Checkpoints are ``checkpoint.npz`` files that cannot
carry code (``minires.checkpoint``), written atomically.

Resuming continues the recorded run, so the recipe must be the recorded one (``check_recipe``):
the same schedule with more epochs, say, would be another run, and the restored schedule state
would not fit it.

Divergence. A non-finite loss stops the run before that batch updates anything (the running
statistics its forward moved are put back). An update can also overflow while every loss stays
finite, so before each checkpoint the weights, buffers and optimizer state are checked, and the
epoch's train and test losses: with NaN or infinity anywhere the run stops and the checkpoint on
disk stays the last finite one, which the message names.
"""
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import random as mr_random
from .backend import asnumpy, get_array_module, on_device, to_device
from .checkpoint import CheckpointError, load_state, save_state, unreadable
from .grad_mode import no_grad
from .io import atomic_write, remove_orphans
from .nn import CrossEntropyLoss

CHECKPOINT_NAME = "checkpoint.npz"
LEGACY_CHECKPOINT_NAME = "checkpoint.pkl"  # format 1 (a pickle): still read, safely; no longer written
_CONTENTS = ("epoch", "model", "optimizer", "scheduler", "loader", "random", "history")


class NonFiniteError(RuntimeError):
    """Training produced NaN or infinity: the run stops, and the checkpoint on disk stays as it was."""


class RecipeMismatchError(ValueError):
    """A run was asked to continue a checkpoint with settings other than the ones it recorded."""


def train_one_epoch(model, loader, criterion, optimizer, scheduler=None, device="cpu", progress=True, desc="train"):
    """One pass over ``loader``; the schedule (if any) steps after every batch.

    Returns ``{"loss", "accuracy", "seconds", "images_per_second"}`` averaged over the epoch.
    """
    if len(loader) == 0:
        raise ValueError("train_one_epoch: the loader gave no batch (fewer samples than one batch, with "
                         "drop_last?)")
    model.train()
    loss_sum, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch", dynamic_ncols=True)
    with on_device(device):  # on "cuda:N", CuPy computes on GPU N only while it is the current one
        for batch, (images, labels) in enumerate(bar):
            x, y = to_device(images, device), to_device(labels, device)
            buffers = {name: buffer.copy() for name, buffer in model.named_buffers()}  # the forward moves them
            logits = model(x)
            loss = float(criterion(logits, y))
            if not math.isfinite(loss):
                bar.close()
                model.load_state_dict(buffers, strict=False)
                raise NonFiniteError(f"the training loss became {loss} at batch {batch + 1}/{len(loader)} of {desc}; "
                                     "the weights, the optimizer and the running statistics are those of before "
                                     "that batch (try a lower learning rate)")
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
    if len(loader) == 0:
        raise ValueError("evaluate: the loader gave no images")
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


def find_checkpoint(out_dir):
    """The run folder's checkpoint: ``checkpoint.npz``, else the ``checkpoint.pkl`` of an older minires, else None."""
    for name in (CHECKPOINT_NAME, LEGACY_CHECKPOINT_NAME):
        if (Path(out_dir) / name).is_file():
            return Path(out_dir) / name
    return None


def save_checkpoint(path, model, optimizer, scheduler, loader, epoch, history, recipe=None):
    """Write everything needed to continue after ``epoch`` to ``path``, atomically."""
    save_state(path, {
        "format": 2,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "loader": loader.state_dict(),
        "random": mr_random.get_state(),
        "history": history,
        "recipe": recipe,
    })


def read_checkpoint(path):
    """The contents of a checkpoint (``"epoch"``, ``"model"``, ... ``"recipe"``: None for format 1), checked.

    ``CheckpointError`` names a file that cannot be read or is not a training checkpoint.
    """
    state = load_state(path)
    missing = [key for key in _CONTENTS if not (isinstance(state, dict) and key in state)]
    if missing:
        raise unreadable(path, f"it is not a training checkpoint (no {', '.join(missing)})")
    state.setdefault("recipe", None)
    return state


def load_checkpoint(path, model, optimizer=None, scheduler=None, loader=None):
    """Restore a checkpoint written by ``save_checkpoint``; returns ``(epoch, history)``.

    Only the model is needed (to evaluate it); the optimizer, schedule and loader are restored
    when given. A checkpoint that does not fit them is a ``CheckpointError`` naming the file.
    """
    return _restore(read_checkpoint(path), path, model, optimizer, scheduler, loader)


def _restore(state, path, model, optimizer, scheduler, loader):
    try:
        model.load_state_dict(state["model"])
        if optimizer is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        if loader is not None:
            loader.load_state_dict(state["loader"])
        mr_random.set_state(state["random"])
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path} does not fit what it is loaded into: {error}") from error
    return state["epoch"], state["history"]


def check_recipe(recorded, requested, source):
    """Refuse to continue the run of ``source`` with settings other than the ones it recorded.

    ``recorded`` and ``requested`` map settings to values (the demo's flags: ``model``, ``width``,
    ``plain``, ... ``seed``, ``subset``). Each setting in ``requested`` must have its recorded value;
    otherwise one ``RecipeMismatchError`` names every differing setting with both values.
    """
    differences = [f"--{name.replace('_', '-')} {recorded[name]!r} there, {value!r} now" if name in recorded
                   else f"--{name.replace('_', '-')} not recorded there, {value!r} now"
                   for name, value in requested.items() if name not in recorded or recorded[name] != value]
    if differences:
        raise RecipeMismatchError(
            f"{source} was written by a run with other settings: {'; '.join(differences)}. Give the run's own "
            "settings (its folder's config.json lists them), or start a new run in another folder.")


def _non_finite_entries(model, optimizer):
    """Names of the weights, buffers and optimizer-state arrays that hold NaN or infinity."""
    entries = list(model.state_dict().items())
    entries += [(f"optimizer state[{index}][{key!r}]", value)
                for index, state in optimizer.state_dict()["state"].items() for key, value in state.items()]
    return [name for name, value in entries if getattr(value, "dtype", None) is not None
            and value.dtype.kind == "f" and not bool(get_array_module(value).isfinite(value).all())]


def _check_finite(row, model, optimizer, epochs):
    """Stop (``NonFiniteError``) when the epoch's losses or the state to be saved hold NaN or infinity."""
    after = f"after epoch {row['epoch']}/{epochs}"
    for split in ("train", "test"):
        if not math.isfinite(row[f"{split}_loss"]):
            raise NonFiniteError(f"the {split} loss became {row[f'{split}_loss']} {after} (try a lower "
                                 "learning rate)")
    bad = _non_finite_entries(model, optimizer)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise NonFiniteError(f"{after}, NaN or infinity in {len(bad)} of the arrays to save ({shown}), though "
                             "every loss was finite (try a lower learning rate)")


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
        device="cpu", resume=False, num_classes=10, progress=True, on_epoch_end=None, flip_test=False,
        recipe=None):
    """Train for ``epochs`` epochs, evaluating and checkpointing after each one.

    With ``resume=True`` and a checkpoint in ``out_dir`` (``find_checkpoint``), training continues
    after the last finished epoch. ``recipe``, a dict of the settings that define the run (JSON
    values), is written into every checkpoint; resuming with another one is refused
    (``check_recipe``; a format-1 checkpoint recorded none and is not checked).
    ``on_epoch_end(history, test_result)`` is called after each checkpoint; ``flip_test``
    evaluates with the mirror images too (see ``evaluate``). NaN or infinity stops the run with
    ``NonFiniteError``, whose message says which checkpoint is left.
    Returns the history: one dict per epoch (epoch, lr at its start, train_*, test_*, seconds of
    training with data loading, images/s, test_seconds of the evaluation).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_orphans(out_dir)  # the temporary files of writes that were killed
    checkpoint = out_dir / CHECKPOINT_NAME
    criterion = criterion or CrossEntropyLoss()
    start, history, kept = 0, [], "No checkpoint was written."
    found = find_checkpoint(out_dir) if resume else None
    if found is not None:
        state = read_checkpoint(found)
        if recipe is not None and state["recipe"] is not None:
            check_recipe(state["recipe"], recipe, found)
        last_epoch, history = _restore(state, found, model, optimizer, scheduler, train_loader)
        start = last_epoch + 1
        kept = f"{found} still holds epoch {start}."
    for epoch in range(start, epochs):
        train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        try:
            train = train_one_epoch(model, train_loader, criterion, optimizer, scheduler, device, progress,
                                    desc=f"epoch {epoch + 1}/{epochs}")
            test = evaluate(model, test_loader, num_classes, device, progress, flip=flip_test)
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": train["loss"],
                   "train_accuracy": train["accuracy"], "test_loss": test["loss"],
                   "test_accuracy": float(test["accuracy"]), "seconds": train["seconds"],
                   "images_per_second": train["images_per_second"], "test_seconds": test["seconds"]}
            _check_finite(row, model, optimizer, epochs)
        except NonFiniteError as error:
            raise NonFiniteError(f"{error}. {kept}") from None
        history.append(row)
        save_checkpoint(checkpoint, model, optimizer, scheduler, train_loader, epoch, history, recipe)
        kept = f"{checkpoint} still holds epoch {epoch + 1}, the last with finite values."
        write_metrics(history, out_dir)
        if on_epoch_end is not None:
            on_epoch_end(history, test)
    return history

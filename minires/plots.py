"""PNG figures of a training run: the curves and the confusion matrix.

Figures are drawn with matplotlib's object API on an Agg canvas, so nothing here touches
pyplot's global state or needs a display. Each file is written atomically.
"""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .io import atomic_write


def _save(figure, path):
    FigureCanvasAgg(figure)
    with atomic_write(path) as f:
        figure.savefig(f, format="png", dpi=110, bbox_inches="tight")


def plot_training_curves(history, path, title="training"):
    """Loss, accuracy (train and test) and learning rate per epoch, side by side."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(13, 4), layout="constrained")  # the title clears the subplots
    loss, accuracy, lr = figure.subplots(1, 3)
    loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    loss.set(title="loss", xlabel="epoch")
    accuracy.plot(epochs, [100 * r["train_accuracy"] for r in history], "o-", label="train")
    accuracy.plot(epochs, [100 * r["test_accuracy"] for r in history], "s-", label="test")
    accuracy.set(title="accuracy (%)", xlabel="epoch")
    lr.plot(epochs, [r["lr"] for r in history], "o-", color="tab:green")
    lr.set(title="learning rate (start of epoch)", xlabel="epoch")
    for axes in (loss, accuracy, lr):
        axes.grid(alpha=0.3)
    loss.legend(), accuracy.legend()
    figure.suptitle(title)
    _save(figure, path)


def plot_confusion_matrix(confusion, classes, path, title="test set confusion matrix"):
    """Counts per (true class, predicted class), with each row's recall on the diagonal colour scale."""
    confusion = np.asarray(confusion)
    recall = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(7.5, 6.5))
    axes = figure.subplots()
    image = axes.imshow(recall, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="fraction of the true class")
    ticks = np.arange(len(classes))
    axes.set_xticks(ticks, classes, rotation=45, ha="right")
    axes.set_yticks(ticks, classes)
    axes.set(xlabel="predicted", ylabel="true", title=title)
    for (i, j), n in np.ndenumerate(confusion):
        axes.text(j, i, str(n), ha="center", va="center", fontsize=7,
                  color="white" if recall[i, j] > 0.5 else "black")
    _save(figure, path)

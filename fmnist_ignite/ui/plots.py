"""The plots a run leaves: learning curves and the confusion matrix, as figures of their own (``ui.figures``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol, cast

import torch

from fmnist_ignite.data.fashion_mnist import CLASS_NAMES
from fmnist_ignite.files.durable import write_figure
from fmnist_ignite.ui.display import in_jupyter_kernel
from fmnist_ignite.ui.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class HasEpochs(Protocol):
    """A history of epochs, one row each (``MetricsHistory``)."""

    epochs: list[dict]


def pyplot() -> ModuleType | None:
    """matplotlib's pyplot on a file-only backend (in a Jupyter kernel, the notebook's own, which draws no
    window and must stay for the user's figures), or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    if not in_jupyter_kernel():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: HasEpochs | Sequence[dict], path: str | Path | None = None) -> Figure | None:
    """Train and validation loss, and validation accuracy, per epoch (``curves.png``).

    Args:
        history: a ``MetricsHistory`` or its rows (one dict an epoch, with ``epoch``, ``train_loss``,
            ``val_loss`` and ``val_accuracy`` where known).
        path: where to save the figure, durably, in the format its suffix names (PNG by default); None: not
            saved.

    Returns:
        The figure, saved to ``path`` when given; None without matplotlib.
    """
    fig = new_figure(figsize=(10, 4), dpi=100)
    if fig is None:
        return None
    from matplotlib.ticker import MaxNLocator

    rows = cast("Sequence[dict]", getattr(history, "epochs", history))  # a MetricsHistory's rows, or the rows
    loss_ax, acc_ax = fig.subplots(1, 2)
    for key, label in (("train_loss", "train (mean over the epoch)"), ("val_loss", "validation")):
        points = [(row["epoch"], row[key]) for row in rows if key in row]
        if points:
            loss_ax.plot(*zip(*points, strict=False), marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    if loss_ax.lines:
        loss_ax.legend()
    points = [(row["epoch"], 100 * row["val_accuracy"]) for row in rows if "val_accuracy" in row]
    if points:
        acc_ax.plot(*zip(*points, strict=False), marker="o", color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Validation accuracy")
    epochs = sorted({int(row["epoch"]) for row in rows if "epoch" in row})
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        if epochs:  # whole epochs from the first on: one point gets its own tick, not 0.95 ... 1.05
            ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.92, wspace=0.32)  # fixed: tight_layout costs 0.05 s
    if path is not None:
        write_figure(fig, Path(path))
    return fig


def plot_confusion(
    confusion: torch.Tensor, path: str | Path | None = None, title: str = "Test set confusion matrix"
) -> Figure | None:
    """The confusion matrix's counts with the ten class names (``confusion.png``).

    Args:
        confusion: 10 x 10 counts, rows the true classes (the evaluator's ``confusion`` metric).
        path: where to save the figure, durably, in the format its suffix names (PNG by default); None: not
            saved.
        title: the figure's title.

    Returns:
        The figure, saved to ``path`` when given; None without matplotlib.
    """
    fig = new_figure(figsize=(8, 7), dpi=100)
    if fig is None:
        return None
    counts = confusion.long().cpu().numpy()
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = counts.max() / 2
    for i in range(len(CLASS_NAMES)):
        for j in range(len(CLASS_NAMES)):
            value = int(counts[i, j])
            ax.text(
                j, i, str(value), ha="center", va="center", fontsize=8, color="white" if value > threshold else "black"
            )
    fig.subplots_adjust(left=0.16, right=0.98, bottom=0.16, top=0.95)  # fixed: tight_layout costs 0.05 s
    fig.colorbar(image, ax=ax)
    if path is not None:
        write_figure(fig, Path(path))
    return fig

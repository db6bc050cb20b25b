"""What a run leaves to look at: metrics.csv, summary.json, plots, a per-class table, TensorBoard."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import global_step_from_engine

from fmnist_ignite.data import CLASS_NAMES
from fmnist_ignite.display import in_jupyter_kernel
from fmnist_ignite.durable import write_durably
from fmnist_ignite.errors import FmnistError, TrainingInterrupted
from fmnist_ignite.figures import new_figure
from fmnist_ignite.handlers import MetricsHistory
from fmnist_ignite.statistics import accuracy_interval


def versions() -> dict:
    """Versions of this package, torch, Ignite, torchvision and Python, for ``summary.json``."""
    from fmnist_ignite import __version__

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "fmnist_ignite": __version__,
        "torch": torch.__version__,
        "pytorch_ignite": installed("pytorch-ignite"),
        "torchvision": installed("torchvision"),  # read without importing it, which takes seconds
        "python": platform.python_version(),
    }


def write_summary(path: Path, summary: dict) -> None:
    write_durably(path, json.dumps(summary, indent=2, default=str) + "\n")


def close_summary(path: Path, error: BaseException) -> None:
    """The launcher's word on how its run ended, in ``summary.json`` if that still says ``running`` or
    gives a worker's view of the failure (a lost peer, where the launcher knows the peer died)."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if summary.get("status") == "running" or str(summary.get("status")).startswith("failed"):
        status = "interrupted" if isinstance(error, TrainingInterrupted) else f"failed: {error}"
        write_summary(path, {**summary, "status": status})


def per_class_accuracy(confusion: torch.Tensor) -> dict[str, float]:
    """Accuracy of each class (rows are true classes), by class name."""
    confusion = confusion.double()
    correct, total = confusion.diagonal(), confusion.sum(dim=1).clamp(min=1)
    return {name: float(c / t) for name, c, t in zip(CLASS_NAMES, correct, total)}


def per_class_table(accuracies: dict[str, float]) -> str:
    """The per-class accuracies as lines, worst class first."""
    lines = ["Per-class test accuracy (worst first):"]
    for name, accuracy in sorted(accuracies.items(), key=lambda item: item[1]):
        lines.append(f"  {name:<12} {100 * accuracy:5.1f}%")
    return "\n".join(lines)


def pyplot():
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


def plot_curves(history: MetricsHistory | list[dict], path: Path | None = None):
    """Train and validation loss, and validation accuracy, per epoch (``curves.png``): the figure, saved
    to ``path`` when given (None without matplotlib). ``history``: a ``MetricsHistory`` or its rows."""
    fig = new_figure(figsize=(10, 4), dpi=100)
    if fig is None:
        return None
    from matplotlib.ticker import MaxNLocator

    rows = getattr(history, "epochs", history)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for key, label in (("train_loss", "train (mean over the epoch)"), ("val_loss", "validation")):
        points = [(row["epoch"], row[key]) for row in rows if key in row]
        if points:
            loss_ax.plot(*zip(*points), marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    if loss_ax.lines:
        loss_ax.legend()
    points = [(row["epoch"], 100 * row["val_accuracy"]) for row in rows if "val_accuracy" in row]
    if points:
        acc_ax.plot(*zip(*points), marker="o", color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Validation accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.92, wspace=0.32)  # fixed: tight_layout costs 0.05 s
    if path is not None:
        fig.savefig(path)
    return fig


def plot_confusion(confusion: torch.Tensor, path: Path | None = None, title: str = "Test set confusion matrix"):
    """Counts with the ten class names (``confusion.png``): the figure, saved to ``path`` when given
    (None without matplotlib)."""
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
            ax.text(j, i, value, ha="center", va="center", fontsize=8, color="white" if value > threshold else "black")
    fig.subplots_adjust(left=0.16, right=0.98, bottom=0.16, top=0.95)  # fixed: tight_layout costs 0.05 s
    fig.colorbar(image, ax=ax)
    if path is not None:
        fig.savefig(path)
    return fig


def attach_tensorboard(trainer: Engine, evaluator: Engine, optimizer, log_dir: Path, every: int = 100):
    """Ignite's ``TensorboardLogger``: training loss and learning rate every ``every`` iterations,
    validation metrics each epoch. Needs the ``tensorboard`` package; says so clearly if missing."""
    try:
        from ignite.handlers.tensorboard_logger import TensorboardLogger

        logger = TensorboardLogger(log_dir=str(log_dir))
    except (ImportError, ModuleNotFoundError, RuntimeError) as exc:
        raise FmnistError(
            f"--tensorboard needs the tensorboard package ({exc.__class__.__name__}): "
            "pip install 'fmnist-ignite[tensorboard]'"
        ) from None
    logger.attach_output_handler(
        trainer,
        event_name=Events.ITERATION_COMPLETED(every=every),
        tag="training",
        output_transform=lambda loss: {"loss": float(loss)},
    )
    logger.attach_opt_params_handler(trainer, event_name=Events.ITERATION_COMPLETED(every=every), optimizer=optimizer)
    logger.attach_output_handler(
        evaluator,
        event_name=Events.COMPLETED,
        tag="validation",
        metric_names=["loss", "accuracy"],
        global_step_transform=global_step_from_engine(trainer, Events.ITERATION_COMPLETED),
    )
    trainer.add_event_handler(Events.COMPLETED, lambda engine: logger.close())
    return logger


def best_validation(best: dict | None, monitor: str) -> dict | None:
    """``summary.json``'s word on the epoch the run keeps: its ``monitor`` score, and its accuracy with the
    95% Wilson interval."""
    if best is None:
        return None
    kept = {monitor: best[f"val_{monitor}"], "accuracy": best["val_accuracy"]}
    if "val_accuracy_ci_low" in best:
        kept["accuracy_ci95"] = [best["val_accuracy_ci_low"], best["val_accuracy_ci_high"]]
    return kept


def test_extras(test: dict, kept_predictions: dict) -> dict:
    """``summary.json``'s test block beyond the metrics: the accuracy's 95% Wilson interval, and where the
    predictions are kept with the test set's fingerprint."""
    extras = dict(kept_predictions)
    if test.get("count"):
        extras["accuracy_ci95"] = list(accuracy_interval(test["accuracy"], test["count"]))
    return extras

"""What a run leaves to look at: metrics.csv, summary.json, plots, a per-class table, TensorBoard."""

from __future__ import annotations

import csv
import io
import json
import platform
from importlib import metadata
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import global_step_from_engine

from fmnist_ignite.data import CLASS_NAMES
from fmnist_ignite.errors import FmnistError, TrainingInterrupted
from fmnist_ignite.handlers import MetricsHistory
from fmnist_ignite.rundir import write_durably

CSV_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "epoch_time_s")


class EpochLossAverage:
    """The mean training loss over the epoch so far (Keras' running average), kept as a tensor sum.

    Written by hand rather than with Ignite's ``Average`` because that one resets whenever an epoch
    starts, also when a run resumes in the middle of it; this one's state is checkpointed instead.
    """

    def __init__(self) -> None:
        self.total, self.count = torch.zeros(()), 0

    def attach(self, trainer: Engine) -> EpochLossAverage:
        trainer.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        return self

    def _start_epoch(self, engine: Engine) -> None:
        if engine.state.iteration % engine.state.epoch_length == 0:  # not a resume mid-epoch
            self.total, self.count = torch.zeros(()), 0

    def _add(self, engine: Engine) -> None:
        loss = engine.state.output.detach()
        if self.total.device != loss.device:  # the first batch of an epoch: keep the sum where the loss is
            self.total = self.total.to(loss.device)
        self.total += loss
        self.count += 1

    @property
    def value(self) -> float:
        """The mean over all processes' batches (every process must ask, as at EPOCH_COMPLETED)."""
        total, count = self.total, torch.tensor(float(self.count))
        if idist.get_world_size() > 1:
            total, count = idist.all_reduce(total.clone()), idist.all_reduce(count)
        return float(total) / max(float(count), 1.0)

    def state_dict(self) -> dict:
        return {"total": self.total.cpu(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.count = state["total"], state["count"]


def attach_epoch_stats(trainer: Engine, history: MetricsHistory, optimizer) -> EpochLossAverage:
    """Record each epoch's mean training loss, learning rate and wall time in ``history``.

    Returns the loss average, which a checkpoint should save for an exact resume mid-epoch.
    """
    average = EpochLossAverage().attach(trainer)

    def record(engine: Engine) -> None:
        history.record(
            engine.state.epoch,
            train_loss=average.value,
            lr=optimizer.param_groups[0]["lr"],
            epoch_time_s=engine.state.times[Events.EPOCH_COMPLETED.name],
        )

    trainer.add_event_handler(Events.EPOCH_COMPLETED, record)
    return average


def metrics_csv(history: MetricsHistory) -> str:
    """The history as CSV text, one row per epoch; a column with no value that epoch stays empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history.epochs)
    return out.getvalue()


def attach_metrics_csv(trainer: Engine, history: MetricsHistory, path: Path) -> None:
    """Rewrite ``path`` from ``history`` after every epoch (attach it after evaluation and epoch stats: rows complete).

    Rewriting it whole from the checkpointed history keeps it right after a resume: no epoch twice.
    """
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: write_durably(path, metrics_csv(history)))


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
    """matplotlib's pyplot on a file-only backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: MetricsHistory, path: Path) -> bool:
    """``curves.png``: train and validation loss, and validation accuracy, per epoch. False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    from matplotlib.ticker import MaxNLocator

    rows = history.epochs
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for key, label in (("train_loss", "train (mean over the epoch)"), ("val_loss", "validation")):
        points = [(row["epoch"], row[key]) for row in rows if key in row]
        if points:
            loss_ax.plot(*zip(*points), marker="o", label=label)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="Loss")
    loss_ax.legend()
    points = [(row["epoch"], 100 * row["val_accuracy"]) for row in rows if "val_accuracy" in row]
    if points:
        acc_ax.plot(*zip(*points), marker="o", color="tab:green")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Validation accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_confusion(confusion: torch.Tensor, path: Path, title: str = "Test set confusion matrix") -> bool:
    """``confusion.png``: counts with the ten class names. False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    counts = confusion.long().numpy()
    fig, ax = plt.subplots(figsize=(8, 7), dpi=100)
    image = ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(len(CLASS_NAMES)), CLASS_NAMES, rotation=45, ha="right")
    ax.set_yticks(range(len(CLASS_NAMES)), CLASS_NAMES)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    threshold = counts.max() / 2
    for i in range(len(CLASS_NAMES)):
        for j in range(len(CLASS_NAMES)):
            value = int(counts[i, j])
            ax.text(j, i, value, ha="center", va="center", fontsize=8, color="white" if value > threshold else "black")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


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

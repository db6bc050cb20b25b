"""What a run hands back and what it leaves said: ``TrainResult``, which shows itself in a notebook, and the
parts of ``summary.json`` (versions, the epoch kept, the test block) that the run's record writes.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch

from fmnist_ignite.analysis.interpretation import ResultViews
from fmnist_ignite.analysis.statistics import accuracy_interval
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import TrainingInterrupted, said
from fmnist_ignite.files.summary import RunStatus, read_summary_or_none, write_summary


@dataclass
class TrainResult(ResultViews):
    """What a run leaves: per-epoch validation history, test metrics and where the checkpoints are.

    In a notebook it shows itself as a short summary; ``plot_curves()``, ``plot_confusion()``,
    ``most_confused(k)`` and ``plot_top_losses(k)`` look at it
    (``fmnist_ignite.analysis.interpretation.ResultViews``).

    Attributes:
        history: one row per epoch: validation metrics, train loss, learning rate, time.
        test_metrics: the test split's metrics (``accuracy``, ``loss``, ``count``); empty when the test split is
            kept out (``score_test=False``).
        scored_weights: which weights the test metrics are of, e.g. "best (epoch 4)" or "last (epoch 5)".
        output_dir: the run directory.
        epochs_run: the epochs trained, a resumed run's earlier ones included.
        stopped_early: whether it stopped before ``config.epochs`` (early stopping).
        best_checkpoint: the best model's weights file; None without a validation split.
        last_checkpoint: the last training checkpoint.
        per_class_accuracy: the test accuracy of each class, by class name; empty without test scores.
        confusion: the test confusion matrix (10 x 10 counts, rows the true classes); None without test scores.
        model: the model trained, with the scored weights.
        config: the run's configuration, for the test images ``plot_top_losses`` shows.
    """

    history: list[dict]
    test_metrics: dict
    scored_weights: str  # which weights the test metrics are of, e.g. "best (epoch 4)" or "last (epoch 5)"
    output_dir: Path
    epochs_run: int
    stopped_early: bool
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    per_class_accuracy: dict = field(default_factory=dict)
    confusion: torch.Tensor | None = field(default=None, repr=False)
    model: torch.nn.Module | None = field(default=None, repr=False)
    config: Config | None = field(default=None, repr=False)  # the run's, for the test images plot_top_losses shows

    def __repr__(self) -> str:
        test = f"test accuracy {self.test_metrics['accuracy']:.2%}, " if "accuracy" in self.test_metrics else ""
        epochs = f"{self.epochs_run} epoch{'s' * (self.epochs_run != 1)}"
        return f"TrainResult({test}{epochs}, output_dir='{self.output_dir}')"


def versions() -> dict[str, str | None]:
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


def close_summary(path: Path, error: BaseException) -> None:
    """The launcher's word on how its run ended, in ``summary.json`` if that still says ``running`` or
    gives a worker's view of the failure (a lost peer, where the launcher knows the peer died)."""
    summary = read_summary_or_none(path)
    if summary is None or summary.status not in (RunStatus.RUNNING, RunStatus.FAILED):
        return
    if isinstance(error, TrainingInterrupted):
        summary.status, summary.failure = RunStatus.INTERRUPTED, None
    else:
        # said as the command line says it, as the runs listing and the report show it
        summary.status, summary.failure = RunStatus.FAILED, str(said(error, command_line=True))
    write_summary(path, summary)


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

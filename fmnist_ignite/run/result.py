"""What a finished run hands back: ``TrainResult``, which shows itself in a notebook."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from fmnist_ignite.analysis.interpretation import ResultViews
from fmnist_ignite.config.settings import Config


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

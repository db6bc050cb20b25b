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
    (``fmnist_ignite.analysis.interpretation.ResultViews``)."""

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

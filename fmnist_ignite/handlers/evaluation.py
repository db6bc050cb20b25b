"""Evaluation after each training epoch, and the tutorial's accuracy/loss line with its interval."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ignite.engine import Engine, Events

from fmnist_ignite.analysis.statistics import accuracy_interval, accuracy_with_interval
from fmnist_ignite.handlers.history import MetricsHistory

logger = logging.getLogger(__name__)


def format_metrics(name: str, metrics: dict) -> str:
    """``Validation: Accuracy: 87.3% (95% CI 86.4-88.2%), Avg loss: 0.352101``: the tutorial's metrics line.

    It is the tutorial's block with the split named and the accuracy's 95% Wilson interval.

    Args:
        name: the split, as the line names it (e.g. "Validation", "Test").
        metrics: the evaluator's metrics: ``accuracy`` and ``loss``, and the ``count`` of images for the
            interval (without it, the accuracy alone).
    """
    accuracy = accuracy_with_interval(metrics["accuracy"], metrics.get("count"))
    return f"{name}: Accuracy: {accuracy}, Avg loss: {metrics['loss']:>8f}"


def interval_columns(prefix: str, metrics: dict) -> dict:
    """``<prefix>_accuracy_ci_low`` and ``_high``: the accuracy's 95% Wilson interval, for the history
    (none without the ``count`` of images)."""
    if not metrics.get("count"):
        return {}
    low, high = accuracy_interval(metrics["accuracy"], metrics["count"])
    return {f"{prefix}_accuracy_ci_low": low, f"{prefix}_accuracy_ci_high": high}


def attach_evaluation(
    trainer: Engine,
    evaluator: Engine,
    loader: Iterable[object],
    name: str = "Validation",
    history: MetricsHistory | None = None,
    prefix: str = "val",
    every: int = 1,
) -> MetricsHistory:
    """After each training epoch (or every ``every``), run ``evaluator`` on ``loader``, print its metrics and
    record them. The line is this module's logger's (printed unless ``logging`` is told otherwise).

    Args:
        trainer: the trainer after whose epochs it evaluates.
        evaluator: the evaluator to run (``create_evaluator``'s).
        loader: the split to score (the validation loader).
        name: the split, as the printed line names it.
        history: where the metrics are recorded; None: a new ``MetricsHistory``.
        prefix: the history's columns: ``<prefix>_loss`` and ``<prefix>_accuracy`` (and the accuracy's
            interval, ``<prefix>_accuracy_ci_low`` and ``_high``).
        every: evaluate after every ``every``-th epoch and after the last (the trainer's ``max_epochs``, read
            when each epoch ends: a resume that extends the run moves it); 1 (the default): after each.

    Returns:
        The history the metrics are recorded in.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import Net, create_evaluator
        >>> model = Net()
        >>> images, labels = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
        >>> loader = DataLoader(TensorDataset(images, labels), batch_size=10)
        >>> evaluator = create_evaluator(model)
        >>> from fmnist_ignite import attach_evaluation
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> history = attach_evaluation(trainer, evaluator, loader)
        >>> _ = trainer.run([0], max_epochs=2)
        Validation: Accuracy: ...
        >>> last = history.epochs[-1]
        >>> [row["epoch"] for row in history.epochs], 0 <= last["val_accuracy"] <= 1
        ([1, 2], True)
    """
    history = history if history is not None else MetricsHistory()

    def evaluate(engine: Engine) -> None:
        metrics = evaluator.run(loader).metrics
        history.record(
            engine.state.epoch,
            **{f"{prefix}_{key}": metrics[key] for key in ("loss", "accuracy")},
            **interval_columns(prefix, metrics),
        )
        logger.info(format_metrics(name, metrics) + "\n")

    def due(engine: Engine, epoch: int) -> bool:
        return epoch % every == 0 or epoch == engine.state.max_epochs

    trainer.add_event_handler(Events.EPOCH_COMPLETED(event_filter=due), evaluate)
    return history

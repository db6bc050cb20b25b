"""Early stopping on the validation metric that selects."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events
from ignite.handlers import EarlyStopping

from fmnist_ignite.handlers.checkpointing import score_function


def attach_early_stopping(trainer: Engine, evaluator: Engine, patience: int, monitor: str = "loss") -> EarlyStopping:
    """Stop ``trainer`` after ``patience`` evaluations without a better validation ``monitor``.

    Added on the evaluator's COMPLETED directly: ``EarlyStopping.attach(evaluator)`` would also reset
    it when each evaluation starts, and it would never count past one. Its own log line ("Stop training")
    is kept quiet: a run says in its own words that it stopped early, and why.

    Args:
        trainer: the trainer to stop.
        evaluator: the validation evaluator, after whose runs it counts.
        patience: the evaluations without a better score it waits.
        monitor: the metric that selects: "loss" (lower is better) or "accuracy" (higher is better).

    Returns:
        Ignite's ``EarlyStopping`` handler.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from ignite.engine import Events
        >>> from fmnist_ignite import attach_early_stopping
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> evaluator = Engine(lambda engine, batch: None)
        >>> @evaluator.on(Events.COMPLETED)
        ... def never_better(engine):
        ...     engine.state.metrics["loss"] = 1.0
        >>> @trainer.on(Events.EPOCH_COMPLETED)
        ... def validate(engine):
        ...     evaluator.run([0])
        >>> stopper = attach_early_stopping(trainer, evaluator, patience=2)
        >>> trainer.run([0], max_epochs=10).epoch
        3
    """
    early_stopping = EarlyStopping(patience=patience, score_function=score_function(monitor), trainer=trainer)
    early_stopping.logger.setLevel(logging.WARNING)
    evaluator.add_event_handler(Events.COMPLETED, early_stopping)
    return early_stopping

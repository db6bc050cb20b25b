"""Early stopping on the validation metric that selects."""

from __future__ import annotations

from ignite.engine import Engine, Events
from ignite.handlers import (
    EarlyStopping,
)

from fmnist_ignite.handlers.checkpointing import score_function


def attach_early_stopping(trainer: Engine, evaluator: Engine, patience: int, monitor: str = "loss") -> EarlyStopping:
    """Stop ``trainer`` after ``patience`` evaluations without a better validation ``monitor``.

    Added on the evaluator's COMPLETED directly: ``EarlyStopping.attach(evaluator)`` would also reset
    it when each evaluation starts, and it would never count past one.
    """
    early_stopping = EarlyStopping(patience=patience, score_function=score_function(monitor), trainer=trainer)
    evaluator.add_event_handler(Events.COMPLETED, early_stopping)
    return early_stopping

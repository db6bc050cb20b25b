"""``metrics.csv``: the history, one row per epoch, rewritten whole after each."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ignite.engine import Engine, Events

from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.handlers.history import MetricsHistory

CSV_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_accuracy_ci_low",  # the validation accuracy's 95% Wilson interval
    "val_accuracy_ci_high",
    "lr",
    "epoch_time_s",
)


def metrics_csv(history: MetricsHistory) -> str:
    """The history as CSV text, one row per epoch; a column with no value that epoch stays empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history.epochs)
    return out.getvalue()


def attach_metrics_csv(trainer: Engine, history: MetricsHistory, path: Path) -> None:
    """Rewrite ``path`` from ``history`` after every epoch.

    Attach it after evaluation and epoch stats, so the rows are complete. Rewriting it whole from the
    checkpointed history keeps it right after a resume: no epoch twice.

    Args:
        trainer: the trainer after whose epochs it writes.
        history: the history it writes, one row per epoch.
        path: the CSV file (``metrics.csv``), written durably.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> import tempfile
        >>> from pathlib import Path
        >>> from fmnist_ignite import MetricsHistory, attach_metrics_csv
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> history = MetricsHistory()
        >>> @trainer.on(Events.EPOCH_COMPLETED)
        ... def record(engine):
        ...     history.record(engine.state.epoch, train_loss=0.5)
        >>> path = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> attach_metrics_csv(trainer, history, path)
        >>> _ = trainer.run([0], max_epochs=2)
        >>> path.read_text().splitlines()[1:]
        ['1,0.5,,,,,,', '2,0.5,,,,,,']
    """
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: write_durably(path, metrics_csv(history)))

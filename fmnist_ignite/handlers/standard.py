"""The standard set of handlers of a run, attached in the order they depend on each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from ignite.handlers import Checkpoint, EarlyStopping

from fmnist_ignite.config.settings import Config
from fmnist_ignite.handlers.checkpointing import attach_best_model_checkpoint, attach_checkpointing
from fmnist_ignite.handlers.early_stopping import attach_early_stopping
from fmnist_ignite.handlers.epoch_stats import NAN_CHECK_EVERY, EpochLossAverage, attach_epoch_stats
from fmnist_ignite.handlers.evaluation import attach_evaluation
from fmnist_ignite.handlers.history import MetricsHistory
from fmnist_ignite.handlers.loss_logging import Log, attach_epoch_header, attach_loss_logging
from fmnist_ignite.handlers.metrics_csv import attach_metrics_csv


@dataclass
class StandardHandlers:
    """The handlers of a standard run, as ``attach_default_handlers`` attached them. Without a validation
    split there is no best-model checkpoint; without patience, no early stopping."""

    epoch_header: Callable[[Engine], None]
    loss_logging: Callable[[Engine], None]
    history: MetricsHistory  # a row per epoch: validation metrics, train loss, lr, time
    train_loss: EpochLossAverage  # the epoch's mean training loss, and the NaN check
    checkpoint: Checkpoint  # training_checkpoint_<epoch>.pt
    best_checkpoint: Checkpoint | None = None  # best_model_<epoch>_<score>.pt
    early_stopping: EarlyStopping | None = None

    @property
    def last_saved(self) -> Path | None:
        """The training checkpoint written last, if any."""
        return _last(self.checkpoint)

    @property
    def best_saved(self) -> Path | None:
        """The best model's weights as written last, if any."""
        return _last(self.best_checkpoint)

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping ended (or, restored from a checkpoint, had ended) the run."""
        stopping = self.early_stopping
        return stopping is not None and stopping.counter >= stopping.patience


def _last(handler: Checkpoint | None) -> Path | None:
    return Path(handler.last_checkpoint) if handler is not None and handler.last_checkpoint else None


def attach_default_handlers(
    config: Config,
    trainer: Engine,
    evaluator: Engine,
    loaders: dict,
    to_save: dict,
    output_dir: str | Path,
    log: Log = print,
    scored_model: torch.nn.Module | None = None,
) -> StandardHandlers:
    """Attach every handler of a standard run, in dependency order, and return them.

    ``scored_model``: the weights the evaluator scores, which the best-model checkpoint keeps (by default
    ``to_save["model"]``; the averaged model with ``--ema``). ``to_save`` gains the state the checkpoints
    must keep for an exact resume (history, loss average, best-model list, early stopping).

    Evaluation comes first so the best-model checkpoint and early stopping see this epoch's metrics,
    then the epoch's statistics and metrics.csv, and the training checkpoint comes last so it saves
    their updated state.
    """
    output_dir = Path(output_dir)
    epoch_header = attach_epoch_header(trainer, log)
    loss_logging = attach_loss_logging(trainer, config.log_interval, log)
    history = to_save["history"] = MetricsHistory()
    best_checkpoint = early_stopping = None
    if "validation" in loaders:
        attach_evaluation(trainer, evaluator, loaders["validation"], "Validation", log, history=history)
        best_checkpoint = to_save["best_checkpoint"] = attach_best_model_checkpoint(
            evaluator,
            trainer,
            scored_model if scored_model is not None else to_save["model"],
            output_dir,
            config.monitor,
        )
        if config.patience:
            early_stopping = to_save["early_stopping"] = attach_early_stopping(
                trainer, evaluator, config.patience, config.monitor
            )
    # Its NaN check at an epoch's last iteration stops the trainer before any EPOCH_COMPLETED handler
    # (evaluation, checkpoints) runs: Ignite skips them after a terminate() at ITERATION_COMPLETED.
    train_loss = to_save["train_loss"] = attach_epoch_stats(trainer, history, to_save["optimizer"], NAN_CHECK_EVERY)
    if idist.get_rank() == 0:
        attach_metrics_csv(trainer, history, output_dir / "metrics.csv")
    checkpoint = attach_checkpointing(trainer, to_save, output_dir, config.n_saved)
    return StandardHandlers(
        epoch_header, loss_logging, history, train_loss, checkpoint, best_checkpoint, early_stopping
    )

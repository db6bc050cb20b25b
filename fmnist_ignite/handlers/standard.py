"""The standard set of handlers of a run, attached in the order they depend on each other."""

from __future__ import annotations

from pathlib import Path

import ignite.distributed as idist

from fmnist_ignite.config.settings import Config
from fmnist_ignite.handlers.checkpointing import attach_best_model_checkpoint, attach_checkpointing
from fmnist_ignite.handlers.early_stopping import attach_early_stopping
from fmnist_ignite.handlers.epoch_stats import NAN_CHECK_EVERY, attach_epoch_stats
from fmnist_ignite.handlers.evaluation import attach_evaluation
from fmnist_ignite.handlers.history import MetricsHistory
from fmnist_ignite.handlers.loss_logging import Log, attach_epoch_header, attach_loss_logging
from fmnist_ignite.handlers.metrics_csv import attach_metrics_csv


def attach_default_handlers(
    config: Config,
    trainer,
    evaluator,
    loaders: dict,
    to_save: dict,
    output_dir: Path,
    log: Log = print,
    scored_model=None,
) -> dict:
    """Attach every handler of a standard run, in dependency order, and return them by name.

    ``scored_model``: the weights the evaluator scores, which the best-model checkpoint keeps (by default
    ``to_save["model"]``; the averaged model with ``--ema``).

    Evaluation comes first so the best-model checkpoint and early stopping see this epoch's metrics,
    then the epoch's statistics and metrics.csv, and the training checkpoint comes last so it saves
    their updated state.
    """
    output_dir = Path(output_dir)
    handlers = {
        "epoch_header": attach_epoch_header(trainer, log),
        "loss_logging": attach_loss_logging(trainer, config.log_interval, log),
        "history": MetricsHistory(),
    }
    to_save["history"] = handlers["history"]
    if "validation" in loaders:
        attach_evaluation(trainer, evaluator, loaders["validation"], "Validation", log, history=handlers["history"])
        handlers["best_checkpoint"] = to_save["best_checkpoint"] = attach_best_model_checkpoint(
            evaluator,
            trainer,
            scored_model if scored_model is not None else to_save["model"],
            output_dir,
            config.monitor,
        )
        if config.patience:
            handlers["early_stopping"] = to_save["early_stopping"] = attach_early_stopping(
                trainer, evaluator, config.patience, config.monitor
            )
    # Its NaN check at an epoch's last iteration stops the trainer before any EPOCH_COMPLETED handler
    # (evaluation, checkpoints) runs: Ignite skips them after a terminate() at ITERATION_COMPLETED.
    handlers["train_loss"] = to_save["train_loss"] = attach_epoch_stats(
        trainer, handlers["history"], to_save["optimizer"], NAN_CHECK_EVERY
    )
    if idist.get_rank() == 0:
        attach_metrics_csv(trainer, handlers["history"], output_dir / "metrics.csv")
    handlers["checkpoint"] = attach_checkpointing(trainer, to_save, output_dir, config.n_saved)
    return handlers

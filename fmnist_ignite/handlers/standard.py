"""The standard set of handlers of a run, attached in the order they depend on each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
from fmnist_ignite.handlers.loss_logging import attach_epoch_header, attach_loss_logging
from fmnist_ignite.handlers.metrics_csv import attach_metrics_csv
from fmnist_ignite.handlers.target import TargetAccuracy, attach_target_accuracy


@dataclass
class StandardHandlers:
    """The handlers of a standard run, as ``attach_default_handlers`` attached them.

    Attributes:
        epoch_header: the ``Epoch N`` header (``attach_epoch_header``).
        loss_logging: the loss line every few batches (``attach_loss_logging``).
        history: a row per epoch: validation metrics, train loss, lr, time.
        train_loss: the epoch's mean training loss, and the NaN check.
        checkpoint: the training checkpoints, ``training_checkpoint_<epoch>.pt``.
        best_checkpoint: the best model's weights, ``best_model_<epoch>_<score>.pt``; None without a validation
            split.
        early_stopping: Ignite's ``EarlyStopping``; None without patience (or without a validation split).
        target: when validation reached ``--target-accuracy``; None without one (or without validation).
        to_save: what the training checkpoints save: the caller's ``to_save`` and the state these handlers keep
            for an exact resume (``history``, ``train_loss``, and as attached ``best_checkpoint``,
            ``early_stopping``, ``target_accuracy``); a resume loads the same mapping.
    """

    epoch_header: Callable[[Engine], None]
    loss_logging: Callable[[Engine], None]
    history: MetricsHistory  # a row per epoch: validation metrics, train loss, lr, time
    train_loss: EpochLossAverage  # the epoch's mean training loss, and the NaN check
    checkpoint: Checkpoint  # training_checkpoint_<epoch>.pt
    best_checkpoint: Checkpoint | None = None  # best_model_<epoch>_<score>.pt
    early_stopping: EarlyStopping | None = None
    target: TargetAccuracy | None = None
    to_save: dict = field(default_factory=dict)

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
        """Whether early stopping or the target accuracy ended (or, restored from a checkpoint, had ended)
        the run."""
        stopping = self.early_stopping
        if self.target is not None and self.target.reached:
            return True
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
    scored_model: torch.nn.Module | None = None,
) -> StandardHandlers:
    """Attach every handler of a standard run, in dependency order, and return them.

    Evaluation comes first so the best-model checkpoint and early stopping see this epoch's metrics,
    then the epoch's statistics and metrics.csv, and the training checkpoint comes last so it saves
    their updated state.

    Args:
        config: the run's settings: ``log_interval``, ``monitor``, ``patience``, ``validate_every`` and
            ``n_saved``.
        trainer: the trainer (``create_trainer``'s).
        evaluator: the evaluator of the validation split (``create_evaluator``'s).
        loaders: the loaders by split, as ``get_data_loaders`` gives them; without "validation", no evaluation,
            best-model checkpoint or early stopping.
        to_save: what the training checkpoints save besides the handlers' own state, with at least "model" and
            "optimizer" (left as given: the handlers' state is added in the returned ``to_save``).
        output_dir: the run directory: the checkpoints and ``metrics.csv`` go there.
        scored_model: the weights the evaluator scores, which the best-model checkpoint keeps; None:
            ``to_save["model"]`` (with ``--ema``, the averaged model is given).

    Examples:
        >>> import tempfile
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from fmnist_ignite import Config, Net, attach_default_handlers
        >>> from fmnist_ignite import create_evaluator, create_trainer
        >>> model = Net()
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        >>> trainer = create_trainer(model, optimizer)
        >>> evaluator = create_evaluator(model)
        >>> data = TensorDataset(torch.rand(40, 1, 28, 28), torch.arange(40) % 10)
        >>> loaders = {"train": DataLoader(data, batch_size=10)}
        >>> loaders["validation"] = DataLoader(data, batch_size=20)
        >>> engines = {"model": model, "optimizer": optimizer, "trainer": trainer}
        >>> run_dir = tempfile.mkdtemp()
        >>> handlers = attach_default_handlers(
        ...     Config(), trainer, evaluator, loaders, engines, run_dir
        ... )
        >>> _ = trainer.run(loaders["train"], max_epochs=2)
        Epoch 1
        -------------------------------
        loss: ...
        >>> [row["epoch"] for row in handlers.history.epochs], handlers.last_saved.name
        ([1, 2], 'training_checkpoint_2.pt')
        >>> sorted(handlers.to_save)  # what its checkpoints save, and a resume loads
        ['best_checkpoint', 'history', 'model', 'optimizer', 'train_loss', 'trainer']
    """
    output_dir = Path(output_dir)
    saved = dict(to_save)
    epoch_header = attach_epoch_header(trainer)
    loss_logging = attach_loss_logging(trainer, config.log_interval)
    history = saved["history"] = MetricsHistory()
    best_checkpoint = early_stopping = None
    if "validation" in loaders:
        attach_evaluation(
            trainer, evaluator, loaders["validation"], "Validation", history=history, every=config.validate_every
        )
        best_checkpoint = saved["best_checkpoint"] = attach_best_model_checkpoint(
            evaluator,
            trainer,
            scored_model if scored_model is not None else to_save["model"],
            output_dir,
            config.monitor,
        )
        if config.patience:
            early_stopping = saved["early_stopping"] = attach_early_stopping(
                trainer, evaluator, config.patience, config.monitor
            )
    # Its NaN check at an epoch's last iteration stops the trainer before any EPOCH_COMPLETED handler
    # (evaluation, checkpoints) runs: Ignite skips them after a terminate() at ITERATION_COMPLETED.
    train_loss = saved["train_loss"] = attach_epoch_stats(trainer, history, to_save["optimizer"], NAN_CHECK_EVERY)
    if idist.get_rank() == 0:
        attach_metrics_csv(trainer, history, output_dir / "metrics.csv")
    target = None
    if config.target_accuracy is not None and "validation" in loaders:  # before the checkpoint of its epoch
        target = saved["target_accuracy"] = attach_target_accuracy(trainer, history, config.target_accuracy)
    checkpoint = attach_checkpointing(trainer, saved, output_dir, config.n_saved)
    return StandardHandlers(
        epoch_header, loss_logging, history, train_loss, checkpoint, best_checkpoint, early_stopping, target, saved
    )

"""Event handlers for the trainer and evaluator: each function attaches one behaviour and returns it.

Attach them alone or together; ``fmnist_ignite.training.attach_default_handlers`` composes them all
in the order they depend on each other (evaluation before the checkpoints that save its results).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import (
    Checkpoint,
    EarlyStopping,
    LRScheduler,
    ProgressBar,
    global_step_from_engine,
)

from fmnist_ignite.config import Config
from fmnist_ignite.display import choose_display
from fmnist_ignite.distributed import agreed_max
from fmnist_ignite.durable import DurableDiskSaver, write_durably
from fmnist_ignite.statistics import accuracy_interval, accuracy_with_interval

Log = Callable[[str], None]


def score_function(monitor: str) -> Callable[[Engine], float]:
    """Higher is better: the evaluator's accuracy, or its loss negated."""
    return Checkpoint.get_default_score_fn(monitor, -1.0 if monitor == "loss" else 1.0)


def attach_epoch_header(trainer: Engine, log: Log = print) -> Callable[[Engine], None]:
    """Print the tutorial's ``Epoch N`` header and dashes when an epoch starts."""

    def print_header(engine: Engine) -> None:
        log(f"Epoch {engine.state.epoch}\n-------------------------------")

    trainer.add_event_handler(Events.EPOCH_STARTED, print_header)
    return print_header


def attach_loss_logging(trainer: Engine, every: int = 100, log: Log = print) -> Callable[[Engine], None]:
    """Every ``every`` batches of an epoch, from its first, print ``loss: 2.313032  [    0/60000]``.

    The count is samples seen before this batch, out of the samples in the epoch, as in the tutorial
    (over all processes when a ``TensorLoader`` is sharded across several).
    """

    def every_n_in_epoch(engine: Engine, iteration: int) -> bool:
        return (iteration - 1) % engine.state.epoch_length % every == 0

    def log_loss(engine: Engine) -> None:
        loader = engine.state.dataloader
        batch_index = (engine.state.iteration - 1) % engine.state.epoch_length
        loss = float(engine.state.output)
        seen = batch_index * loader.batch_size * getattr(loader, "world_size", 1)
        log(f"loss: {loss:>7f}  [{seen:>5d}/{len(loader.dataset):>5d}]")

    trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=every_n_in_epoch), log_loss)
    return log_loss


class MetricsHistory:
    """One row per epoch (``{"epoch": 3, "val_loss": ..., "val_accuracy": ..., ...}``), filled in by
    handlers as the epoch ends; saved and loaded with the checkpoints, so a resumed run keeps it whole.
    """

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def record(self, epoch: int, **values: float) -> None:
        """Add ``values`` to the row of ``epoch``, starting that row if it is new."""
        if not self.epochs or self.epochs[-1]["epoch"] != epoch:
            self.epochs.append({"epoch": epoch})
        self.epochs[-1].update({name: float(value) for name, value in values.items()})

    def best(self, key: str) -> dict | None:
        """The row with the best ``key`` (lowest for a loss, else highest); the first one on ties."""
        rows = [row for row in self.epochs if key in row]
        if not rows:
            return None
        sign = -1.0 if key.endswith("loss") else 1.0
        return max(rows, key=lambda row: sign * row[key])

    def state_dict(self) -> dict:
        return {"epochs": [dict(row) for row in self.epochs]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.epochs = [dict(row) for row in state_dict["epochs"]]


def format_metrics(name: str, metrics: dict) -> str:
    """``Validation: Accuracy: 87.3% (95% CI 86.4-88.2%), Avg loss: 0.352101``, the tutorial's block with
    the split named and the accuracy's 95% Wilson interval (when ``metrics`` has the ``count`` of images)."""
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
    loader,
    name: str = "Validation",
    log: Log = print,
    history: MetricsHistory | None = None,
    prefix: str = "val",
) -> MetricsHistory:
    """After each training epoch, run ``evaluator`` on ``loader``, print its metrics and record them
    in ``history`` (a new one by default) as ``<prefix>_loss`` and ``<prefix>_accuracy``."""
    history = history if history is not None else MetricsHistory()

    def evaluate(engine: Engine) -> None:
        metrics = evaluator.run(loader).metrics
        history.record(
            engine.state.epoch,
            **{f"{prefix}_{key}": metrics[key] for key in ("loss", "accuracy")},
            **interval_columns(prefix, metrics),
        )
        log(format_metrics(name, metrics) + "\n")

    trainer.add_event_handler(Events.EPOCH_COMPLETED, evaluate)
    return history


def attach_checkpointing(trainer: Engine, to_save: dict, output_dir: str | Path, n_saved: int = 2) -> Checkpoint:
    """Save ``to_save`` (model, optimizer, trainer, ...) after each epoch, keeping the last ``n_saved``.

    Files are ``training_checkpoint_<epoch>.pt``; writes are atomic and fsynced
    (a temporary file, fsynced, then a rename), so a crash or power loss never leaves a half-written one.
    """
    checkpoint = Checkpoint(
        to_save,
        DurableDiskSaver(output_dir),
        filename_prefix="training",
        n_saved=n_saved,
        global_step_transform=lambda engine, event: engine.state.epoch,
        include_self=True,  # its list of saved files, so a resumed run keeps deleting the oldest
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    return checkpoint


def attach_best_model_checkpoint(
    evaluator: Engine, trainer: Engine, model, output_dir: str | Path, monitor: str = "loss"
) -> Checkpoint:
    """Keep the model weights of the best validation score, named ``best_model_<epoch>_<score>.pt``."""
    checkpoint = Checkpoint(
        {"model": model},
        DurableDiskSaver(output_dir),
        filename_prefix="best",
        n_saved=1,
        score_function=score_function(monitor),
        score_name="val_accuracy" if monitor == "accuracy" else "neg_val_loss",
        global_step_transform=global_step_from_engine(trainer),
    )
    evaluator.add_event_handler(Events.COMPLETED, checkpoint)
    return checkpoint


def attach_early_stopping(trainer: Engine, evaluator: Engine, patience: int, monitor: str = "loss") -> EarlyStopping:
    """Stop ``trainer`` after ``patience`` evaluations without a better validation ``monitor``.

    Added on the evaluator's COMPLETED directly: ``EarlyStopping.attach(evaluator)`` would also reset
    it when each evaluation starts, and it would never count past one.
    """
    early_stopping = EarlyStopping(patience=patience, score_function=score_function(monitor), trainer=trainer)
    evaluator.add_event_handler(Events.COMPLETED, early_stopping)
    return early_stopping


def attach_one_cycle_lr(trainer: Engine, optimizer, max_lr: float, total_steps: int) -> LRScheduler:
    """One-cycle learning rate: up to ``max_lr`` over the first quarter of the steps, then annealed.

    Ignite's ``LRScheduler`` around torch's ``OneCycleLR``, stepped at each iteration start.
    """
    scheduler = LRScheduler(
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=0.25)
    )
    trainer.add_event_handler(Events.ITERATION_STARTED, scheduler)
    return scheduler


def attach_progress_bar(trainer: Engine, enabled: bool | None = None) -> ProgressBar | None:
    """A tqdm bar over each epoch's batches with the running loss; by default only where the display is a
    terminal (``fmnist_ignite.display``): not in a notebook, a file or a SLURM log."""
    if enabled is None:
        enabled = choose_display("auto") == "terminal"
    if not enabled:
        return None
    bar = ProgressBar(persist=False)
    bar.attach(trainer, output_transform=lambda loss: {"loss": float(loss)})
    return bar


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


NAN_CHECK_EVERY = 50  # iterations between checks of the running loss sum for a NaN or an infinity


class EpochLossAverage:
    """The mean training loss over the epoch so far (Keras' running average), kept as a tensor sum.

    Written by hand rather than with Ignite's ``Average`` because that one resets whenever an epoch
    starts, also when a run resumes in the middle of it; this one's state is checkpointed instead.

    With ``check_every`` it also stops the trainer on a non-finite loss, in place of a per-step
    ``TerminateOnNan``: a sum of losses is non-finite as soon as one of them is, so checking the sum
    every ``check_every`` iterations and at each epoch's last one (before the epoch's handlers run:
    evaluation, checkpoints) misses no NaN and never lets an epoch-end checkpoint hold NaN weights;
    a stop's checkpoint asks ``finite()`` first. Over several processes the check is agreed (one
    all-reduce per check, not per step), so all stop at the same iteration.
    """

    def __init__(self, check_every: int | None = None, params: list | None = None) -> None:
        self.total, self.count = torch.zeros(()), 0
        self.check_every = check_every
        self.params = params or []  # checked with the losses: a finite loss can still give a NaN update
        self.stopped_nonfinite = False  # the check found a non-finite loss and terminated the trainer

    def attach(self, trainer: Engine) -> EpochLossAverage:
        trainer.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        return self

    def _start_epoch(self, engine: Engine) -> None:
        if engine.state.iteration % engine.state.epoch_length == 0:  # not a resume mid-epoch
            self.total, self.count = torch.zeros(()), 0

    def _add(self, engine: Engine) -> None:
        loss = engine.state.output.detach()
        if self.total.device != loss.device:  # the first batch of an epoch: keep the sum where the loss is
            self.total = self.total.to(loss.device)
        self.total += loss
        self.count += 1
        iteration = engine.state.iteration
        due = self.check_every and (iteration % self.check_every == 0 or iteration % engine.state.epoch_length == 0)
        if due and not self.finite():
            self.stopped_nonfinite = True
            engine.terminate()

    def finite(self) -> bool:
        """Whether every loss summed this epoch, and the weights now, are finite, in every process (all
        must ask together)."""
        sums = [self.total.detach().float().cpu(), *(p.detach().sum().float().cpu() for p in self.params)]
        return not agreed_max(int(not bool(torch.isfinite(torch.stack(sums)).all())))

    @property
    def value(self) -> float:
        """The mean over all processes' batches (every process must ask, as at EPOCH_COMPLETED)."""
        total, count = self.total, torch.tensor(float(self.count))
        if idist.get_world_size() > 1:
            total, count = idist.all_reduce(total.clone()), idist.all_reduce(count)
        return float(total) / max(float(count), 1.0)

    def state_dict(self) -> dict:
        return {"total": self.total.cpu(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.total, self.count = state["total"], state["count"]


def attach_epoch_stats(
    trainer: Engine, history: MetricsHistory, optimizer, nan_check_every: int | None = None
) -> EpochLossAverage:
    """Record each epoch's mean training loss, learning rate and wall time in ``history``.

    Returns the loss average, which a checkpoint should save for an exact resume mid-epoch; with
    ``nan_check_every`` it also stops the trainer on a non-finite loss (``EpochLossAverage``).
    """
    params = [param for group in optimizer.param_groups for param in group["params"]]
    average = EpochLossAverage(nan_check_every, params).attach(trainer)

    def record(engine: Engine) -> None:
        history.record(
            engine.state.epoch,
            train_loss=average.value,
            lr=optimizer.param_groups[0]["lr"],
            epoch_time_s=engine.state.times[Events.EPOCH_COMPLETED.name],
        )

    trainer.add_event_handler(Events.EPOCH_COMPLETED, record)
    return average


def metrics_csv(history: MetricsHistory) -> str:
    """The history as CSV text, one row per epoch; a column with no value that epoch stays empty."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history.epochs)
    return out.getvalue()


def attach_metrics_csv(trainer: Engine, history: MetricsHistory, path: Path) -> None:
    """Rewrite ``path`` from ``history`` after every epoch (attach it after evaluation and epoch stats: rows complete).

    Rewriting it whole from the checkpointed history keeps it right after a resume: no epoch twice.
    """
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: write_durably(path, metrics_csv(history)))


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

"""``train(config)``: the tutorial's run done right, composed from the engines and handlers."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from ignite.handlers import Checkpoint
from ignite.utils import manual_seed
from tqdm import tqdm

from fmnist_ignite.config import Config
from fmnist_ignite.data import get_data_loaders
from fmnist_ignite.engines import create_evaluator, create_trainer, make_optimizer, resolve_device
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.handlers import (
    Log,
    attach_best_model_checkpoint,
    attach_checkpointing,
    attach_early_stopping,
    attach_epoch_header,
    attach_evaluation,
    attach_loss_logging,
    attach_progress_bar,
    format_metrics,
)
from fmnist_ignite.model import Net


@dataclass
class TrainResult:
    """What a run leaves: per-epoch validation history, test metrics and where the checkpoints are."""

    history: list[dict]
    test_metrics: dict
    scored_weights: str  # which weights the test metrics are of, e.g. "best (epoch 4)" or "last (epoch 5)"
    output_dir: Path
    epochs_run: int
    stopped_early: bool
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    handlers: dict = field(default_factory=dict, repr=False)


def prepare_output_dir(config: Config) -> Path:
    """Create the output directory and prove it writable now, not after the first epoch.

    A directory that already holds checkpoints is refused, so a new run never overwrites an earlier one.
    """
    output_dir = Path(config.output_dir or time.strftime("runs/%Y%m%d-%H%M%S"))
    if output_dir.is_dir() and any(output_dir.glob("*.pt")):
        raise FmnistError(f"{output_dir} already holds checkpoints of an earlier run: choose another --output-dir")
    probe = output_dir / ".write-test"
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FmnistError(f"output directory {output_dir} is not writable: {exc.strerror or exc}") from None
    return output_dir


def attach_default_handlers(
    config: Config, trainer, evaluator, loaders: dict, to_save: dict, output_dir: Path, log: Log = print
) -> dict:
    """Attach every handler of a standard run, in dependency order, and return them by name.

    Evaluation comes first so the best-model checkpoint and early stopping see this epoch's metrics,
    and the training checkpoint comes last so it saves their updated state.
    """
    handlers = {
        "epoch_header": attach_epoch_header(trainer, log),
        "loss_logging": attach_loss_logging(trainer, config.log_interval, log),
    }
    if "validation" in loaders:
        handlers["history"] = to_save["history"] = attach_evaluation(
            trainer, evaluator, loaders["validation"], "Validation", log
        )
        handlers["best_checkpoint"] = to_save["best_checkpoint"] = attach_best_model_checkpoint(
            evaluator, trainer, to_save["model"], output_dir, config.monitor
        )
        if config.patience:
            handlers["early_stopping"] = to_save["early_stopping"] = attach_early_stopping(
                trainer, evaluator, config.patience, config.monitor
            )
    handlers["checkpoint"] = attach_checkpointing(trainer, to_save, output_dir, config.n_saved)
    return handlers


def train(config: Config, log: Log | None = None) -> TrainResult:
    """Train on the train split, select on validation, score the test split once with the chosen weights."""
    config.validate()
    device = resolve_device(config.device)
    output_dir = prepare_output_dir(config)
    manual_seed(config.seed)
    loaders = get_data_loaders(config, device)

    model = Net(config.dropout).to(device)
    optimizer = make_optimizer(config, model)
    trainer = create_trainer(model, optimizer, device)
    evaluator = create_evaluator(model, device)
    bar = attach_progress_bar(trainer, enabled=None if config.progress else False)
    log = log or (tqdm.write if bar else print)
    to_save = {"model": model, "optimizer": optimizer, "trainer": trainer}
    handlers = attach_default_handlers(config, trainer, evaluator, loaders, to_save, output_dir, log)

    trainer.run(loaders["train"], max_epochs=config.epochs)
    log("Training completed")

    history = handlers.get("history")
    best = history.best(config.monitor) if history else None
    best_checkpoint = handlers.get("best_checkpoint")
    if best_checkpoint is not None and best_checkpoint.last_checkpoint is not None:
        best_path = Path(best_checkpoint.last_checkpoint)
        Checkpoint.load_objects({"model": model}, torch.load(best_path, map_location=device, weights_only=True))
        scored = f"best (epoch {best['epoch']})"
    else:
        best_path = None
        scored = f"last (epoch {trainer.state.epoch})"
    test_metrics = dict(create_evaluator(model, device).run(loaders["test"]).metrics)
    log(format_metrics(f"Test, {scored} weights", test_metrics))
    last_path = Path(handlers["checkpoint"].last_checkpoint)
    log(f"Checkpoints in {output_dir}: {last_path.name}" + (f", {best_path.name}" if best_path else ""))
    return TrainResult(
        history=list(history.epochs) if history else [],
        test_metrics=test_metrics,
        scored_weights=scored,
        output_dir=output_dir,
        epochs_run=trainer.state.epoch,
        stopped_early=trainer.state.epoch < config.epochs,
        best_checkpoint=best_path,
        last_checkpoint=last_path,
        handlers=handlers,
    )

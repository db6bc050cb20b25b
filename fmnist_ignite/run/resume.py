"""What a run checkpoints, and how a resumed run gets it back: the weights before the data is loaded (a
wrong file fails at once), the thread count its run computed with, then every other part's state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ignite.distributed as idist

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.distributed import unwrap
from fmnist_ignite.core.models import match_saved_layout
from fmnist_ignite.core.threads import applied_threads, apply_threads, plan_threads
from fmnist_ignite.files.checkpoints import load_checkpoint
from fmnist_ignite.files.saved_config import SavedConfig
from fmnist_ignite.handlers.schedule import attach_one_cycle_lr
from fmnist_ignite.handlers.standard import StandardHandlers
from fmnist_ignite.run.checkpoints import (
    RandomState,
    ThreadCount,
    carry_best_model,
    check_epochs_left,
    check_schedule_fits,
    kept_threads,
    must_fit,
    restore,
)
from fmnist_ignite.run.engines import RunEngines
from fmnist_ignite.run.rundir import RunDirectory


def load_weights_and_threads(run_dir: RunDirectory, config: Config, engines: RunEngines, world_size: int) -> Any:
    """The checkpoint a resume continues from (None for a fresh run), its weights loaded into the model;
    and the threads this process computes with (a resume: its run's count, unless ``config.threads`` says)."""
    resume, checkpoint = run_dir.resume_from, run_dir.checkpoint
    if resume and checkpoint is None:  # another process found it: every process reads it itself
        checkpoint = load_checkpoint(resume, map_location="cpu")
    if resume is not None and checkpoint is not None:
        with must_fit(resume):  # before the data is loaded: a wrong file fails at once
            match_layout(engines, checkpoint)
            unwrap(engines.model).load_state_dict(checkpoint["model"])
    kept = kept_threads(checkpoint) if checkpoint is not None else None
    if kept or config.threads or applied_threads() is None:  # a resume computes as its run did
        processes = idist.get_nproc_per_node() if world_size > 1 else 1
        apply_threads(plan_threads(config.threads, processes, kept))
    return checkpoint


def match_layout(engines: RunEngines, checkpoint: dict) -> None:
    """A CNN (and its moving average) in the layout its checkpoint's weights were saved in: a run begun before
    2026-12-02's change goes on with batch norm before the pooling, as it began (``CNN.match_layout``). The
    average follows the model's weights, so that a checkpoint whose two disagree fails here, at once."""
    weights = checkpoint.get("model")
    if isinstance(weights, dict):
        match_saved_layout(unwrap(engines.model), weights)
        if engines.ema is not None:
            match_saved_layout(engines.ema.ema_model, weights)


def state_to_save(config: Config, engines: RunEngines, batches_per_epoch: int) -> dict[str, Any]:
    """Everything a training checkpoint holds, by key (the one-cycle schedule attached here, with its state)."""
    to_save: dict[str, Any] = {
        "model": engines.model,
        "optimizer": engines.optimizer,
        "trainer": engines.trainer,
        "random_state": RandomState(engines.generator),
        "threads": ThreadCount(),
        "config": SavedConfig(config),
    }
    if engines.ema is not None:
        to_save["ema_model"] = engines.ema.ema_model
    if config.scheduler == "onecycle":
        to_save["lr_scheduler"] = attach_one_cycle_lr(
            engines.trainer, engines.optimizer, config.lr, config.epochs * batches_per_epoch
        )
    return to_save


def resume_state(
    resume: Path,
    checkpoint: Any,
    to_save: dict[str, Any],
    handlers: StandardHandlers,
    config: Config,
    batches_per_epoch: int,
    output_dir: Path | None,
) -> None:
    """Restore every part's state from ``checkpoint`` and check the run can go on as asked (epochs left, the
    schedule's length); ``output_dir`` (rank 0's): where the best model so far is carried to, if elsewhere."""
    to_load = {k: v for k, v in to_save.items() if k != "config"}
    restore(resume, checkpoint, {**to_load, "checkpointer": handlers.checkpoint})
    check_epochs_left(config, to_save["trainer"], resume)
    check_schedule_fits(to_save.get("lr_scheduler"), config.epochs, batches_per_epoch, resume)
    if output_dir is not None and handlers.best_checkpoint is not None:
        carry_best_model(handlers.best_checkpoint, resume.parent, output_dir)

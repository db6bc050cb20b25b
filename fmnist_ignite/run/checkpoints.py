"""What a run checkpoints and how a resumed run gets it back: the random state it carries, the checks that a
checkpoint fits the run, the weights loaded before the data (a wrong file fails at once), the thread count its
run computed with, then every other part's state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from ignite.handlers import Checkpoint, LRScheduler

from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import MAX_THREADS, Config
from fmnist_ignite.core.distributed import unwrap
from fmnist_ignite.core.models import match_saved_layout
from fmnist_ignite.core.threads import applied_threads, apply_threads, plan_threads
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.checkpoints import CHECKPOINT_NAME, MAX_CHECKPOINT_BYTES, load_checkpoint
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.reading import read_bounded
from fmnist_ignite.files.saved_config import SavedConfig
from fmnist_ignite.handlers.schedule import attach_one_cycle_lr
from fmnist_ignite.handlers.standard import StandardHandlers
from fmnist_ignite.run.engines import PROCESS_RNG_LOCK, RunEngines
from fmnist_ignite.run.rundir import RunDirectory


class RandomState:
    """The random generators a run draws from, saved so that a resumed run draws the same: the run's own
    (``generator``, which the built-in models' dropout draws from; ``run.engines.seeded_model``) and torch's
    process-wide ones (which a model of your own may draw from, with torch's ``nn.Dropout``).

    Args:
        generator: the run's own generator; None: only the process-wide ones.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def state_dict(self) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """The generators' states: "cpu" and "cuda" (torch's process-wide), "generator" (the run's own)."""
        with PROCESS_RNG_LOCK:
            state: dict[str, torch.Tensor | list[torch.Tensor]] = {"cpu": torch.get_rng_state()}
            if torch.cuda.is_available():
                state["cuda"] = torch.cuda.get_rng_state_all()
        if self.generator is not None:
            state["generator"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Put the generators back as ``state`` has them. A checkpoint saved before runs had their own
        generator has none for it: the run's goes on from the process-wide one of its device, which is what
        dropout drew from then. A run resumed on another kind of device than its checkpoint's cannot draw the
        same: its own generator stays as it was seeded."""
        with PROCESS_RNG_LOCK:
            torch.set_rng_state(state["cpu"])
            if "cuda" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda"])
        if self.generator is not None:
            own = state["generator"] if "generator" in state else _process_wide_state(state, self.generator.device)
            if isinstance(own, torch.Tensor) and own.shape == self.generator.get_state().shape:
                self.generator.set_state(own)


def _process_wide_state(state: dict, device: torch.device) -> torch.Tensor | None:
    """The state a checkpoint holds of torch's process-wide generator of ``device``, if it holds it."""
    if device.type == "cpu":
        return state["cpu"]
    if device.type == "cuda" and "cuda" in state:
        index = device.index if device.index is not None else torch.cuda.current_device()
        return state["cuda"][index] if index < len(state["cuda"]) else None
    return None


@contextmanager
def must_fit(path: Path) -> Iterator[None]:
    """Turn a state dict that does not fit (wrong shapes, keys, types) into one line naming the file."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise FmnistError(f"{path}: does not fit this model and configuration ({str(exc).splitlines()[0]})") from None


class ThreadCount:
    """The number of threads the run computes with, kept in each checkpoint: it changes the float arithmetic,
    so a resume computes with it again (``Training`` applies it before the state is restored)."""

    def state_dict(self) -> dict[str, int]:
        return {"threads": torch.get_num_threads()}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to do here: ``kept_threads`` read it when the checkpoint was opened."""


def kept_threads(checkpoint: dict) -> int | None:
    """The thread count a checkpoint's run computed with, when it kept a sane one."""
    kept = checkpoint.get("threads")
    count = kept.get("threads") if isinstance(kept, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_THREADS else None


def restore(path: Path, checkpoint: dict, to_load: Mapping[str, object]) -> None:
    """Load every object the checkpoint holds state for, or fail with one line naming the file."""
    with must_fit(path):
        Checkpoint.load_objects({k: v for k, v in to_load.items() if k in checkpoint}, checkpoint)


def check_epochs_left(config: Config, trainer: Engine, resume: Path) -> None:
    """A resumed run may add epochs, not take them away."""
    state = trainer.state
    assert state.epoch_length is not None  # restored from a checked training checkpoint, which holds it
    started = state.epoch + (1 if state.iteration % state.epoch_length else 0)
    if config.epochs < started:
        raise FmnistError(
            "{resume} is from epoch {started} of its run; {epochs} is fewer: pass {enough} or more to continue it",
            resume=resume,
            started=started,
            epochs=named(Config, "epochs", config.epochs),
            enough=named(Config, "epochs", started),
        )


def carry_best_model(handler: Checkpoint, source: Path, target: Path) -> None:
    """A run resumed into another directory than its checkpoint's: copy the best-model files the restored
    ``handler`` remembers from the checkpoint's directory, so the run keeps its best weights (only files named as
    checkpoints, only regular files; what is missing stays missing and is said when it is needed)."""
    if Path(source).resolve() == Path(target).resolve():
        return
    for _, filename in handler.state_dict()["_saved"]:
        name = str(filename)
        if not CHECKPOINT_NAME.match(name):
            continue
        with suppress(FmnistError):  # a link, a huge or missing file: not carried; said when the weights are needed
            data = read_bounded(Path(source) / name, MAX_CHECKPOINT_BYTES, "a best model")
            if data is not None:
                write_durably(Path(target) / name, data)


def check_schedule_fits(scheduler: LRScheduler | None, epochs: int, epoch_length: int, resume: Path) -> None:
    """A restored one-cycle schedule is planned for its run's length; it cannot be stretched to ``epochs``."""
    planned = epochs * epoch_length
    if scheduler is None:
        return
    one_cycle = scheduler.lr_scheduler
    assert isinstance(one_cycle, torch.optim.lr_scheduler.OneCycleLR)  # the only schedule a run attaches
    if one_cycle.total_steps != planned:
        kept = one_cycle.total_steps // epoch_length
        raise FmnistError(
            "{resume}: its one-cycle learning rate was planned for {kept} epochs and cannot be stretched to {epochs}: "
            "resume with {planned}",
            resume=resume,
            kept=kept,
            epochs=epochs,
            planned=named(Config, "epochs", kept),
        )


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
    """A CNN (and its moving average) in the layout its checkpoint's weights were saved in: a run begun in the
    earlier layout goes on with batch norm before the pooling, as it began (``CNN.match_layout``). The
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

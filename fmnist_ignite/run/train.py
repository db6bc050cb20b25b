"""``train(config)``: one run of any number of processes, on one path (``run.launch``), from Python or the
command line; each process composes its part with ``Training``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import suppress

import torch
from ignite.engine import Engine

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.models import match_saved_layout
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.handlers.loss_logging import Log
from fmnist_ignite.run.launch import launch, launched_externally
from fmnist_ignite.run.result import TrainResult
from fmnist_ignite.run.rundir import RunDirectory, claim_run_directory
from fmnist_ignite.run.summary import close_summary
from fmnist_ignite.run.training import Training


def train(
    config: Config,
    log: Log | None = None,
    extra_handlers: Iterable[Callable[[Engine], object]] = (),
    model: torch.nn.Module | None = None,
) -> TrainResult | None:
    """Train on the train split, select on validation, score the test split once with the chosen weights.

    One path for any number of processes (``config.nproc_per_node``, ``nnodes``, or under torchrun or
    srun). With spawned processes ``extra_handlers`` and ``model`` must be picklable (defined at module
    level), and ``log`` applies to this process only.

    Args:
        config: the run's settings (with the environment's, then validated).
        log: where the run's text lines go; None: printed (in a notebook, kept by the live view).
        extra_handlers: called with each process's trainer after the standard handlers are attached.
        model: a model of your own instead of the built-in ``config.model``; it gets rank 0's trained weights.

    Returns:
        Rank 0's result; None on the machines of a multi-machine run other than node rank 0's.

    Raises:
        FmnistError: bad settings (``seeds`` among them: ``train_seeds`` trains those), data or output directory.
        TrainingInterrupted: Ctrl-C or SIGTERM stopped the run (resumable).
        NonFiniteLoss: the training loss became NaN or infinite.
    """
    config = config.with_environment().validate()
    if config.seeds:
        raise FmnistError(f"seeds {config.seeds!r} asks for one run per seed: train_seeds(config) trains them")
    spawning = config.world_size > 1 and not launched_externally()
    run_dir = claim_run_directory(config, log or print) if spawning and config.node_rank == 0 else None
    if run_dir is not None:  # the launcher holds the lock for its workers
        config = config.replace(output_dir=str(run_dir.path), resume=str(run_dir.resume_from or "") or None)
    handed = RunDirectory(run_dir.path, run_dir.resume_from) if run_dir else None
    try:
        result = launch(config, run_training, None if spawning else log, tuple(extra_handlers), model, handed)
    except BaseException as exc:
        if run_dir is not None:
            with suppress(OSError):  # a full disk must not hide the error
                close_summary(run_dir.path / "summary.json", exc)
        raise
    finally:
        if run_dir is not None:
            run_dir.release()
    if result is not None and model is not None and result.model is not None and result.model is not model:
        weights = result.model.state_dict()
        match_saved_layout(model, weights)  # a resume of a run begun in the CNN's layout before 2026-12-02
        model.load_state_dict(weights)  # rank 0's weights, in the caller's own module
        result.model = model
    return result


def run_training(
    config: Config,
    log: Log | None,
    extra_handlers: tuple,
    model: torch.nn.Module | None = None,
    run_dir: RunDirectory | None = None,
) -> TrainResult:
    """One process's part of a run (module level, so spawned processes can import it)."""
    with Training(config, log, model, run_dir) as training:
        for attach in extra_handlers:
            attach(training.trainer)
        return training.run()

"""A run's ``summary.json`` as the run keeps it: its fixed part written when the run is set up, brought up
to date after each epoch and at the end (``RunSummary`` is the file's contract, in ``files.summary``)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.device import cpu_capability
from fmnist_ignite.core.distributed import unwrap
from fmnist_ignite.core.precision import measured
from fmnist_ignite.files.summary import SUMMARY_FILE, RunSummary, write_summary
from fmnist_ignite.handlers.standard import StandardHandlers
from fmnist_ignite.run.engines import RunEngines
from fmnist_ignite.run.result import best_validation, versions


class RunRecord:
    """The summary of one run; only rank 0 writes it to ``output_dir/summary.json``."""

    def __init__(
        self,
        config: Config,
        engines: RunEngines,
        handlers: StandardHandlers,
        output_dir: Path,
        resumed_from: Path | None,
        started: float,
        rank: int,
        world_size: int,
    ) -> None:
        module = type(unwrap(engines.model))
        self.summary = RunSummary(
            processes=world_size,
            config=dataclasses.asdict(config),
            versions=versions(),
            device=str(engines.device),
            cpu=cpu_capability(),
            model=f"{config.model} ({module.__module__}.{module.__qualname__})",
            precision={"used": engines.precision, "why": engines.precision_reason, **(measured(engines.model) or {})},
            threads=torch.get_num_threads(),
            seed=config.seed,
            resumed_from=str(resumed_from) if resumed_from else None,
            output_dir=str(output_dir),
        )
        self.monitor, self.trainer, self.handlers = config.monitor, engines.trainer, handlers
        self.path = output_dir / SUMMARY_FILE if rank == 0 else None
        self.started = started

    def update(self, **updates: object) -> None:
        """Bring the summary up to date with the trainer and the handlers, then with ``updates`` (``RunSummary``
        fields: ``status``, ``test``, ...), and write it (rank 0)."""
        summary, state, history = self.summary, self.trainer.state, self.handlers.history
        best = history.best(f"val_{self.monitor}")
        summary.epochs_done = state.epoch - (1 if state.epoch_length and state.iteration % state.epoch_length else 0)
        summary.best_epoch = best["epoch"] if best else None
        summary.best_validation = best_validation(best, self.monitor)
        summary.checkpoints = {
            kind: str(path) if path else None
            for kind, path in (("last", self.handlers.last_saved), ("best", self.handlers.best_saved))
        }
        summary.wall_time_s = round(time.perf_counter() - self.started, 3)
        summary.history = history.epochs
        for name, value in updates.items():
            setattr(summary, name, value)
        if self.path is not None:
            write_summary(self.path, summary)

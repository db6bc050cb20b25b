"""Where a run's lines and progress go: a live view in a notebook, a progress bar and lines on a terminal,
lines alone in a file or a SLURM log; nothing from the processes but rank 0."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ignite.engine import Engine
from ignite.handlers import ProgressBar
from tqdm import tqdm

from fmnist_ignite.config.settings import Config
from fmnist_ignite.handlers.loss_logging import Log
from fmnist_ignite.handlers.progress import attach_progress_bar
from fmnist_ignite.ui.console import safe_stdout, say
from fmnist_ignite.ui.display import choose_display

if TYPE_CHECKING:  # the view's module is imported when a notebook shows one
    from fmnist_ignite.handlers.notebook import NotebookView


def quiet_log(line: str) -> None:
    """A ``Log`` that says nothing (the processes but rank 0's)."""


@dataclass
class RunOutput:
    """How one process's run shows itself: ``display`` ("notebook", "terminal" or "plain"), the progress
    ``bar`` (a terminal's), the notebook ``view`` (attached once the handlers are), and ``log``, where each
    line goes."""

    display: str
    bar: ProgressBar | None
    view: NotebookView | None
    log: Log


def route_output(config: Config, trainer: Engine, rank: int, log: Log | None) -> RunOutput:
    """Choose the display (``config.display``, rank 0 only), attach the progress bar it has, and send the
    lines to ``log`` (default: printed, above the bar), also kept by the notebook view to show folded."""
    display = choose_display(config.display) if rank == 0 else "plain"
    bar = attach_progress_bar(trainer, enabled=config.progress and display == "terminal")
    if rank != 0:  # only rank 0 prints
        log = quiet_log
    view = None
    if display == "notebook":
        from fmnist_ignite.handlers.history import MetricsHistory
        from fmnist_ignite.handlers.notebook import NotebookView, tee

        view = NotebookView(MetricsHistory(), f"Training {config.model}", config.monitor, config.progress)
        log = tee(log, view.log) if log else view.log  # the text lines: kept, shown folded at the end
    return RunOutput(display, bar, view, log or (above_bar if bar else say))


def above_bar(line: str) -> None:
    """A line printed above the progress bar, through a ``SafeStream``."""
    tqdm.write(line, file=safe_stdout())

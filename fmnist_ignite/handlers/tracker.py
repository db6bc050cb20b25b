"""A tracked run, as each experiment tracker keeps it (``--tracker``): the ``Tracker`` every tracker's class
subclasses (``MlflowTracker``, ``WandbTracker``), and what they share: how a setting and a URI are shown, and
how a tracker's start is kept quiet and bounded without changing the user's own settings.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

DEFAULT_PROJECT = "fmnist-ignite"  # the MLflow experiment and the W&B project, unless the environment names one


class Tracker(ABC):
    """One tracked run: its id, where it is kept, and Ignite's logger that writes it.

    Args:
        run_id: the tracked run's id (kept in ``tracking.json``).
        where: where the tracked run is kept, in words (a store URI or a directory).
        logger: Ignite's ``MLflowLogger`` or ``WandBLogger``.
    """

    name: ClassVar[str]  # the --tracker name: "mlflow", "wandb"
    package: ClassVar[str]  # the package it needs, and the fmnist-ignite extra that installs it

    def __init__(self, run_id: str, where: str, logger: Any) -> None:
        self.run_id, self.where, self.logger = run_id, where, logger

    @classmethod
    @abstractmethod
    def start(cls, output_dir: Path, run_id: str | None, params: dict[str, Any]) -> Tracker:
        """Start the tracked run of the run directory ``output_dir`` (``run_id``'s, to continue one), its
        parameters ``params``."""

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step`` (an epoch) in this tracker's run."""

    @abstractmethod
    def log_files(self, paths: Iterable[Path]) -> None:
        """Keep ``paths`` (the best checkpoint, the plots) with the tracked run."""

    @abstractmethod
    def close(self, finished: bool) -> None:
        """End the tracked run: finished, or killed when a stop or a failure ended the run (a resume opens
        it again)."""

    def logged_epochs(self) -> set[int] | None:
        """The epochs the tracked run already holds; None where the tracker cannot say."""
        return None


def shown_param(value: Any) -> str | int | float | bool:
    """A setting as a tracker's parameter: numbers and flags as they are, anything else as text."""
    return value if isinstance(value, str | int | float | bool) else str(value)


def shown_uri(uri: str) -> str:
    """``uri`` as a line may show it: a password in it replaced by ``***``."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


@contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """Hold back the INFO lines of the loggers ``names`` (and their children) for the block: warnings and
    errors still show."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@contextmanager
def environment_defaults(defaults: dict[str, str]) -> Iterator[None]:
    """Set each of ``defaults`` the environment does not set for the block, and take it out again after:
    a user's own setting wins, and nothing is left behind."""
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)

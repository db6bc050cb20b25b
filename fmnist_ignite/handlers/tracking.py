"""Experiment tracking through Ignite's own loggers: ``MLflowLogger`` and ``WandBLogger`` (``--tracker``).

Offline by default, as on a cluster without internet: MLflow writes to a local SQLite store in the run
directory's parent (``mlflow.db``, artifacts in ``mlartifacts/``; ``mlflow ui --backend-store-uri
sqlite:///PARENT/mlflow.db`` shows it) unless ``MLFLOW_TRACKING_URI`` names a server; W&B runs in offline
mode (``wandb sync`` uploads it later) unless ``WANDB_MODE`` says otherwise. Each tracked run's id is kept
in the run directory (``tracking.json``), so a resumed run continues the same tracked run.

Starting is bounded and quiet. A tracking server that cannot be reached is one line naming where, before any
epoch is trained: MLflow's client waits 10 s a request and retries twice while the run starts (a closed port or
a host that does not resolve fails at once, a server that accepts and never answers after about 34 s), W&B
online gives up after 30 s (its ``init_timeout``); a user's own ``MLFLOW_HTTP_REQUEST_*`` or
``WANDB_INIT_TIMEOUT`` wins. Runs started at once in one parent directory (a SLURM array) create the SQLite
store one at a time, under ``PARENT/mlflow.db.lock``, without MLflow's or alembic's log lines.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.tracking import read_tracked_runs, write_tracked_runs
from fmnist_ignite.handlers.history import MetricsHistory
from fmnist_ignite.handlers.mlflow_tracker import MLFLOW_CLIENT_DEFAULTS, MlflowTracker
from fmnist_ignite.handlers.tracker import Tracker, environment_defaults
from fmnist_ignite.handlers.wandb_tracker import WandbTracker

TRACKER_CLASSES: dict[str, type[Tracker]] = {"mlflow": MlflowTracker, "wandb": WandbTracker}
logger = logging.getLogger(__name__)


def require_trackers(names: Iterable[str]) -> None:
    """Refuse a tracker whose package is missing at once, in one line naming the extra to install."""
    for name in names:
        package = TRACKER_CLASSES[name].package
        if importlib.util.find_spec(package) is None:
            raise FmnistError(
                "{tracker} needs the {package} package: pip install 'fmnist-ignite[{package}]'",
                tracker=named(Config, "tracker", name),
                package=package,
            )


def attach_trackers(
    names: Iterable[str],
    trainer: Engine,
    history: MetricsHistory,
    output_dir: Path,
    params: dict[str, Any],
) -> list[Tracker]:
    """Start (or, for a run that has one in ``tracking.json``, continue) a tracked run in each tracker, and
    log each finished epoch's row of ``history`` (train loss, validation loss and accuracy, learning rate,
    epoch time) at the epoch as step. Call it on rank 0 only, after the handlers that fill ``history``. The line
    saying where each run is tracked is this module's logger's.

    Args:
        names: the trackers, of ``TRACKERS``.
        trainer: the trainer whose epochs are logged.
        history: the run's per-epoch history (``StandardHandlers.history``).
        output_dir: the run directory.
        params: the run's settings, logged as the tracked run's parameters (a resume adds the new ones only).

    Returns:
        The trackers, in the order given.

    Raises:
        FmnistError: a tracker's package is missing, ``tracking.json`` is damaged, or a tracker could not start
            its run (a tracking server that does not answer: within the bounds the module says).
    """
    names = list(names)
    require_trackers(names)
    kept = read_tracked_runs(output_dir)
    trackers: list[Tracker] = []
    with environment_defaults(MLFLOW_CLIENT_DEFAULTS):  # the start, and closing a half-started set, bounded
        for name in names:
            try:
                trackers.append(TRACKER_CLASSES[name].start(output_dir, kept.get(name), params))
            except Exception as exc:  # the tracker's own errors (a bad tracking URI, a store it cannot write)
                for started in trackers:
                    with suppress(Exception):
                        started.close(finished=False)
                if isinstance(exc, FmnistError):  # said in one line already
                    raise
                words = str(exc).strip().splitlines()
                raise FmnistError(
                    "{tracker}: could not start its run ({kind}: {why})",
                    tracker=named(Config, "tracker", name),
                    kind=type(exc).__name__,
                    why=words[0][:200] if words else "",
                ) from None
        write_tracked_runs(output_dir, {**kept, **{t.name: t.run_id for t in trackers}})
        for tracker in trackers:
            resumed = " (continued)" if kept.get(tracker.name) == tracker.run_id else ""
            logger.info(f"Tracking: {tracker.name} run {tracker.run_id}{resumed} in {tracker.where}")
            logged = tracker.logged_epochs() if resumed else None
            if logged is not None:  # an epoch checkpointed, but killed before it was logged: logged now, once
                for row in history.epochs:
                    if row["epoch"] not in logged:
                        tracker.log_metrics(epoch_metrics(row), row["epoch"])

    @trainer.on(Events.EPOCH_COMPLETED)
    def log_epoch(engine: Engine) -> None:
        row = history.epochs[-1] if history.epochs and history.epochs[-1]["epoch"] == engine.state.epoch else {}
        for tracker in trackers:
            tracker.log_metrics(epoch_metrics(row), engine.state.epoch)

    return trackers


def epoch_metrics(row: dict[str, float]) -> dict[str, float]:
    """An epoch's row of the history as a tracker's metrics: every finite value but the epoch itself."""
    return {k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}

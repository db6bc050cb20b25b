"""Experiment tracking through Ignite's own loggers: ``MLflowLogger`` and ``WandBLogger`` (``--tracker``).

Offline by default, as on a cluster without internet: MLflow writes to a local SQLite store in the run
directory's parent (``mlflow.db``, artifacts in ``mlartifacts/``; ``mlflow ui --backend-store-uri
sqlite:///PARENT/mlflow.db`` shows it) unless ``MLFLOW_TRACKING_URI`` names a server; W&B runs in offline
mode (``wandb sync`` uploads it later) unless ``WANDB_MODE`` says otherwise. Each tracked run's id is kept
in the run directory (``tracking.json``), so a resumed run continues the same tracked run.
"""

from __future__ import annotations

import importlib.util
import math
import os
import secrets
import string
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.tracking import read_tracked_runs, write_tracked_runs
from fmnist_ignite.handlers.history import MetricsHistory

EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}  # the tracker's package -> its fmnist-ignite extra
DEFAULT_PROJECT = "fmnist-ignite"  # the MLflow experiment and the W&B project, unless the environment names one


def require_trackers(names: Iterable[str]) -> None:
    """Refuse a tracker whose package is missing at once, in one line naming the extra to install."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise FmnistError(f"--tracker {name} needs the {name} package: pip install 'fmnist-ignite[{EXTRAS[name]}]'")


@dataclass
class Tracker:
    """One tracked run: which tracker, its run id, where it is kept, and Ignite's logger that writes it.

    Attributes:
        name: "mlflow" or "wandb".
        run_id: the tracked run's id (kept in ``tracking.json``).
        where: where the tracked run is kept, in words (a store URI or a directory).
        logger: Ignite's ``MLflowLogger`` or ``WandBLogger``.
    """

    name: str
    run_id: str
    where: str
    logger: Any

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step`` (an epoch) in this tracker's run."""
        if self.name == "mlflow":
            self.logger.log_metrics(metrics, step=step)
        else:
            self.logger.log(metrics, step=step)

    def logged_epochs(self) -> set[int] | None:
        """The epochs the tracked run already holds (MLflow: asked of its store); None where the tracker
        cannot say (W&B offline)."""
        if self.name != "mlflow":
            return None
        import mlflow

        return {metric.step for metric in mlflow.tracking.MlflowClient().get_metric_history(self.run_id, "train_loss")}

    def log_files(self, paths: Iterable[Path]) -> None:
        """Keep ``paths`` (the best checkpoint, the plots) with the tracked run."""
        for path in paths:
            if self.name == "mlflow":
                self.logger.log_artifact(str(path))
            else:
                self.logger.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, finished: bool) -> None:
        """End the tracked run: FINISHED, or KILLED when a stop or a failure ended the run (a resume opens
        it again)."""
        if self.name == "mlflow":
            import mlflow

            mlflow.end_run(status="FINISHED" if finished else "KILLED")
        else:
            self.logger.finish(exit_code=0 if finished else 1)


def attach_trackers(
    names: Iterable[str],
    trainer: Engine,
    history: MetricsHistory,
    output_dir: Path,
    params: dict[str, Any],
    log: Any = print,
) -> list[Tracker]:
    """Start (or, for a run that has one in ``tracking.json``, continue) a tracked run in each tracker, and
    log each finished epoch's row of ``history`` (train loss, validation loss and accuracy, learning rate,
    epoch time) at the epoch as step. Call it on rank 0 only, after the handlers that fill ``history``.

    Args:
        names: the trackers, of ``TRACKERS``.
        trainer: the trainer whose epochs are logged.
        history: the run's per-epoch history (``StandardHandlers.history``).
        output_dir: the run directory.
        params: the run's settings, logged as the tracked run's parameters (a resume adds the new ones only).
        log: where the line saying where each run is tracked goes.

    Returns:
        The trackers, in the order given.

    Raises:
        FmnistError: a tracker's package is missing, or ``tracking.json`` is damaged.
    """
    names = list(names)
    require_trackers(names)
    kept = read_tracked_runs(output_dir)
    start = {"mlflow": start_mlflow, "wandb": start_wandb}
    trackers: list[Tracker] = []
    for name in names:
        try:
            trackers.append(start[name](output_dir, kept.get(name), params))
        except Exception as exc:  # the tracker's own errors (a bad tracking URI, a store it cannot write)
            for started in trackers:
                with suppress(Exception):
                    started.close(finished=False)
            words = str(exc).strip().splitlines()
            raise FmnistError(
                f"--tracker {name}: could not start its run ({type(exc).__name__}: {words[0][:200] if words else ''})"
            ) from None
    write_tracked_runs(output_dir, {**kept, **{t.name: t.run_id for t in trackers}})
    for tracker in trackers:
        resumed = " (continued)" if kept.get(tracker.name) == tracker.run_id else ""
        log(f"Tracking: {tracker.name} run {tracker.run_id}{resumed} in {tracker.where}")
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


def start_mlflow(output_dir: Path, run_id: str | None, params: dict[str, Any]) -> Tracker:
    """An MLflow run through Ignite's ``MLflowLogger``: ``run_id``'s, or a new one named after the run
    directory, in ``MLFLOW_TRACKING_URI``'s store, else ``sqlite:///PARENT/mlflow.db``."""
    import mlflow
    from ignite.handlers.mlflow_logger import MLflowLogger

    parent = Path(output_dir).resolve().parent
    given = os.environ.get("MLFLOW_TRACKING_URI")
    uri = given or f"sqlite:///{parent / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    if given is None:  # MLflow puts the URI in the environment: the next run (another parent) must not see it
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    if mlflow.active_run() is not None:  # a run left open in this process (a notebook's earlier cell)
        mlflow.end_run()
    if run_id is not None:
        mlflow.start_run(run_id=run_id)
    else:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", DEFAULT_PROJECT)
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            local = None if given else str(parent / "mlartifacts")
            experiment_id = mlflow.create_experiment(name, artifact_location=local)
        mlflow.start_run(experiment_id=experiment_id, run_name=Path(output_dir).name)
    logger = MLflowLogger()
    active = mlflow.active_run()
    assert active is not None  # started just above
    logged = set(mlflow.get_run(active.info.run_id).data.params)
    new = {k: shown_param(v) for k, v in params.items() if k not in logged}
    if new:
        mlflow.log_params(new)
    return Tracker("mlflow", active.info.run_id, uri, logger)


def start_wandb(output_dir: Path, run_id: str | None, params: dict[str, Any]) -> Tracker:
    """A W&B run through Ignite's ``WandBLogger``: offline unless ``WANDB_MODE`` says otherwise, its files in
    the run directory (``wandb/``), resumed by ``run_id`` when there is one."""
    import wandb
    from ignite.handlers.wandb_logger import WandBLogger

    mode = os.environ.get("WANDB_MODE", "offline")
    run_id = run_id or "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    logger = WandBLogger(
        project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
        name=Path(output_dir).name,
        id=run_id,
        resume="allow",
        dir=str(output_dir),
        mode=mode,
        config={k: shown_param(v) for k, v in params.items()},
        allow_val_change=True,
        settings=wandb.Settings(silent=True),
    )
    where = f"{Path(output_dir) / 'wandb'} ({mode}" + ("; wandb sync uploads it)" if mode == "offline" else ")")
    return Tracker("wandb", run_id, where, logger)


def shown_param(value: Any) -> str | int | float | bool:
    """A setting as a tracker's parameter: numbers and flags as they are, anything else as text."""
    return value if isinstance(value, str | int | float | bool) else str(value)

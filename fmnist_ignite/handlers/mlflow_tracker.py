"""MLflow through Ignite's ``MLflowLogger`` (``--tracker mlflow``): a local SQLite store in the run directory's
parent (``mlflow.db``, artifacts in ``mlartifacts/``) unless ``MLFLOW_TRACKING_URI`` names a server.

A SQLite store is opened (created, migrated) and the run started under ``STORE.lock``, one process at a time
(MLflow's own creation races: ``duplicate column name``), with MLflow's and alembic's log lines held back.
While the run starts, MLflow's HTTP client gives up on a server after about 34 s at most
(``MLFLOW_CLIENT_DEFAULTS``), unless the user set its ``MLFLOW_HTTP_REQUEST_*`` variables.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.handlers.tracker import (
    DEFAULT_PROJECT,
    Tracker,
    environment_defaults,
    quiet_loggers,
    shown_param,
    shown_uri,
)

# MLflow's HTTP client while a run starts, where the environment does not say (MLflow's own: 120 s a request, 7
# retries backing off 2 s up to 120 s, minutes for a server that is not there): 10 s a request, 2 retries 0 and 2 s
# apart (plus MLflow's jitter of up to 1 s), so at most about 34 s
MLFLOW_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
STORE_LOCK_TIMEOUT = 300.0  # seconds to wait for the runs ahead of this one to open a shared SQLite store


class MlflowTracker(Tracker):
    """An MLflow run through Ignite's ``MLflowLogger``."""

    name = "mlflow"
    package = "mlflow"

    @classmethod
    def start(cls, output_dir: Path, run_id: str | None, params: dict[str, Any]) -> MlflowTracker:
        """An MLflow run through Ignite's ``MLflowLogger``: ``run_id``'s, or a new one named after the run
        directory, in ``MLFLOW_TRACKING_URI``'s store, else ``sqlite:///PARENT/mlflow.db``.

        A SQLite store is opened (created, migrated) and the run started under ``STORE.lock``, one process at a
        time, with MLflow's and alembic's log lines held back. Called within ``attach_trackers``, MLflow's client
        gives up on a server after about 34 s at most (``MLFLOW_CLIENT_DEFAULTS``).

        Raises:
            FmnistError: the tracking server cannot be reached (one line naming the URI), or the store's lock
                stays held by another run for ``STORE_LOCK_TIMEOUT`` seconds.
        """
        import mlflow
        from ignite.handlers.mlflow_logger import MLflowLogger

        parent = Path(output_dir).resolve().parent
        given = os.environ.get("MLFLOW_TRACKING_URI")
        uri = given or f"sqlite:///{parent / 'mlflow.db'}"
        started = time.monotonic()
        try:
            with store_lock(uri), quiet_loggers("mlflow", "alembic"):
                mlflow.set_tracking_uri(uri)
                if (
                    given is None
                ):  # MLflow puts the URI in the environment: the next run (another parent) must not see it
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
        except Exception as exc:
            why = unreachable(exc) if urlsplit(uri).scheme in ("http", "https") else None
            if why is None:
                raise
            with suppress(Exception):  # nothing half-started left open in this process
                mlflow.end_run(status="KILLED")
            raise FmnistError(
                "{tracker}: no MLflow tracking server answers at {uri} (MLFLOW_TRACKING_URI): {why}; gave up after "
                "{waited:.0f} s",
                tracker=named(Config, "tracker", "mlflow"),
                uri=shown_uri(uri),
                why=why,
                waited=time.monotonic() - started,
            ) from None
        return cls(active.info.run_id, shown_uri(uri), logger)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.logger.log_metrics(metrics, step=step)

    def logged_epochs(self) -> set[int] | None:
        """The epochs the tracked run already holds, asked of its store."""
        import mlflow

        return {metric.step for metric in mlflow.tracking.MlflowClient().get_metric_history(self.run_id, "train_loss")}

    def log_files(self, paths: Iterable[Path]) -> None:
        for path in paths:
            self.logger.log_artifact(str(path))

    def close(self, finished: bool) -> None:
        import mlflow

        with environment_defaults(MLFLOW_CLIENT_DEFAULTS):  # a server gone since the start: bounded too
            mlflow.end_run(status="FINISHED" if finished else "KILLED")


def unreachable(exc: BaseException) -> str | None:
    """Why a server could not be reached, in words, when ``exc`` (or an error it was raised from) is a
    network failure; None for any other error."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(error, socket.gaierror) for error in chain):
        return "its host name does not resolve"
    if any(isinstance(error, TimeoutError) for error in chain):
        wait = os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT")
        return f"no answer within {wait} s a request" if wait else "no answer"
    if any(isinstance(error, ConnectionRefusedError) for error in chain):
        return "connection refused"
    failures = [error for error in chain if isinstance(error, OSError)]  # requests' errors are OSErrors too
    return (failures[-1].strerror or str(failures[-1]).splitlines()[0][:200]) if failures else None


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store URI; None for any other store (a server, SQLite in memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold ``STORE.lock`` beside a SQLite store ``uri`` names, for one process at a time to create or migrate
    it (MLflow's own creation races: ``duplicate column name``); nothing for another store.

    Raises:
        FmnistError: the lock stays held by another process for ``STORE_LOCK_TIMEOUT`` seconds.
    """
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    from filelock import FileLock, Timeout  # torch's dependency, so always there

    lock = FileLock(f"{path}.lock", timeout=STORE_LOCK_TIMEOUT)
    try:
        lock.acquire()
    except Timeout:
        raise FmnistError(
            "{tracker}: {path}.lock stayed held by another run for {waited:.0f} s",
            tracker=named(Config, "tracker", "mlflow"),
            path=path,
            waited=STORE_LOCK_TIMEOUT,
        ) from None
    try:
        yield
    finally:
        lock.release()

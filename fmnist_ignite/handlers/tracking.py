"""Experiment tracking through Ignite's own loggers: ``MLflowLogger`` and ``WandBLogger`` (``--tracker``).

Offline by default, as on a cluster without internet: MLflow writes to a local SQLite store in the run
directory's parent (``mlflow.db``, artifacts in ``mlartifacts/``; ``mlflow ui --backend-store-uri
sqlite:///PARENT/mlflow.db`` shows it) unless ``MLFLOW_TRACKING_URI`` names a server; W&B runs in offline
mode (``wandb sync`` uploads it later) unless ``WANDB_MODE`` says otherwise. Each tracked run's id is kept
in the run directory (``tracking.json``), so a resumed run continues the same tracked run.

Starting is bounded and quiet. A tracking server that cannot be reached is one line naming where, before any
epoch is trained: MLflow's client waits 10 s a request and retries twice while the run starts (measured: about
3 s for a closed port or a host that does not resolve, 33 s for a server that accepts and never answers), W&B
online gives up after 30 s (its ``init_timeout``); a user's own ``MLFLOW_HTTP_REQUEST_*`` or
``WANDB_INIT_TIMEOUT`` wins. Runs started at once in one parent directory (a SLURM array) create the SQLite
store one at a time, under ``PARENT/mlflow.db.lock``, without MLflow's or alembic's log lines.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
import netrc
import os
import secrets
import socket
import string
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, redirect_stderr, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ignite.engine import Engine, Events

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.tracking import read_tracked_runs, write_tracked_runs
from fmnist_ignite.handlers.history import MetricsHistory

EXTRAS = {"mlflow": "mlflow", "wandb": "wandb"}  # the tracker's package -> its fmnist-ignite extra
DEFAULT_PROJECT = "fmnist-ignite"  # the MLflow experiment and the W&B project, unless the environment names one
# MLflow's HTTP client while a run starts, where the environment does not say (MLflow's own: 120 s a request, 7
# retries backing off 2 s up to 120 s, minutes for a server that is not there): 10 s a request, 2 retries 0 and 2 s
# apart (plus MLflow's jitter of up to 1 s), so at most about 34 s
MLFLOW_CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
WANDB_INIT_TIMEOUT = 30.0  # seconds W&B online has to start its run (W&B's own: 90), unless WANDB_INIT_TIMEOUT says
STORE_LOCK_TIMEOUT = 300.0  # seconds to wait for the runs ahead of this one to open a shared SQLite store
OFFLINE_MODES = ("offline", "dryrun", "disabled")  # the WANDB_MODEs that reach no server


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
        FmnistError: a tracker's package is missing, ``tracking.json`` is damaged, or a tracker could not start
            its run (a tracking server that does not answer: within the bounds the module says).
    """
    names = list(names)
    require_trackers(names)
    kept = read_tracked_runs(output_dir)
    start = {"mlflow": start_mlflow, "wandb": start_wandb}
    trackers: list[Tracker] = []
    with environment_defaults(MLFLOW_CLIENT_DEFAULTS):  # the start, and closing a half-started set, bounded
        for name in names:
            try:
                trackers.append(start[name](output_dir, kept.get(name), params))
            except Exception as exc:  # the tracker's own errors (a bad tracking URI, a store it cannot write)
                for started in trackers:
                    with suppress(Exception):
                        started.close(finished=False)
                if isinstance(exc, FmnistError):  # said in one line already
                    raise
                words = str(exc).strip().splitlines()
                raise FmnistError(
                    f"--tracker {name}: could not start its run ({type(exc).__name__}: "
                    f"{words[0][:200] if words else ''})"
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
    except Exception as exc:
        why = unreachable(exc) if urlsplit(uri).scheme in ("http", "https") else None
        if why is None:
            raise
        with suppress(Exception):  # nothing half-started left open in this process
            mlflow.end_run(status="KILLED")
        raise FmnistError(
            f"--tracker mlflow: no MLflow tracking server answers at {shown_uri(uri)} (MLFLOW_TRACKING_URI): "
            f"{why}; gave up after {time.monotonic() - started:.0f} s"
        ) from None
    return Tracker("mlflow", active.info.run_id, shown_uri(uri), logger)


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


def shown_uri(uri: str) -> str:
    """``uri`` as a line may show it: a password in it replaced by ``***``."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


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
            f"--tracker mlflow: {path}.lock stayed held by another run for {STORE_LOCK_TIMEOUT:.0f} s"
        ) from None
    try:
        yield
    finally:
        lock.release()


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


def start_wandb(output_dir: Path, run_id: str | None, params: dict[str, Any]) -> Tracker:
    """A W&B run through Ignite's ``WandBLogger``: offline unless ``WANDB_MODE`` says otherwise, its files in
    the run directory (``wandb/``), resumed by ``run_id`` when there is one.

    Online, W&B has ``WANDB_INIT_TIMEOUT`` seconds (30 unless the environment says) to start its run, and its
    own lines are held back unless it may have to ask for a login (no key in the environment or ``~/.netrc``).

    Raises:
        FmnistError: an online run could not be started (one line naming W&B's server).
    """
    import wandb
    from ignite.handlers.wandb_logger import WandBLogger

    mode = os.environ.get("WANDB_MODE", "offline")
    online = mode not in OFFLINE_MODES
    run_id = run_id or "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
    settings: dict[str, Any] = {"silent": True}
    if "WANDB_INIT_TIMEOUT" not in os.environ:  # wandb.init's settings override the environment: the user's wins
        settings["init_timeout"] = WANDB_INIT_TIMEOUT
    held: AbstractContextManager[Any] = redirect_stderr(io.StringIO())
    if online and wandb_may_ask_for_login():  # its prompt must show
        held = nullcontext()
    started = time.monotonic()
    try:
        with held:
            logger = WandBLogger(
                project=os.environ.get("WANDB_PROJECT", DEFAULT_PROJECT),
                name=Path(output_dir).name,
                id=run_id,
                resume="allow",
                dir=str(output_dir),
                mode=mode,
                config={k: shown_param(v) for k, v in params.items()},
                allow_val_change=True,
                settings=wandb.Settings(**settings),
            )
    except Exception as exc:
        if not online:
            raise
        lines = str(exc).strip().splitlines()
        why = lines[-1].rsplit(": ", 1)[-1][:200] if lines else ""
        raise FmnistError(
            f"--tracker wandb: W&B could not start its online run at {wandb_base_url()} "
            f"({type(exc).__name__}: {why}; gave up after {time.monotonic() - started:.0f} s); "
            "WANDB_MODE=offline keeps the run on disk for wandb sync"
        ) from None
    where = f"{Path(output_dir) / 'wandb'} ({mode}" + ("; wandb sync uploads it)" if mode == "offline" else ")")
    return Tracker("wandb", run_id, where, logger)


def wandb_base_url() -> str:
    """The W&B server a run goes to: ``WANDB_BASE_URL``, else W&B's own setting (``wandb login --host``)."""
    given = os.environ.get("WANDB_BASE_URL")
    if given:
        return shown_uri(given)
    with suppress(Exception):
        import wandb

        return shown_uri(str(wandb.setup().settings.base_url))
    return "https://api.wandb.ai"


def wandb_may_ask_for_login() -> bool:
    """Whether W&B online may have to ask for a login: no key (or identity token) in the environment, and
    none for its server's host in ``~/.netrc`` (``NETRC`` names another file)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return False
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or ""
    with suppress(Exception):  # no file, or one netrc cannot read: W&B may ask
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is None
    return True


def shown_param(value: Any) -> str | int | float | bool:
    """A setting as a tracker's parameter: numbers and flags as they are, anything else as text."""
    return value if isinstance(value, str | int | float | bool) else str(value)

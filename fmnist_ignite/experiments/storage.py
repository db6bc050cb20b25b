"""Where a study lives: Optuna's journal file (the default) or an RDB database, as Optuna's FAQ advises.

Optuna recommends against SQLite for parallel optimisation and says it does not work on NFS; for several
processes on one machine or a shared file system it recommends ``JournalStorage`` over a journal file (an
append-only log, written under a lock file that works on NFS), and for many machines an RDB server
(PostgreSQL, MySQL). A new study's default is therefore ``STUDY_DIR/study.journal``; a study created
before, with ``STUDY_DIR/study.db``, keeps opening its SQLite file.

Optuna's journal storage has no heartbeat of its own (only ``RDBStorage`` has), and this library relies on
one to retry a dead worker's trial: ``HeartbeatJournalStorage`` records each running trial's heartbeat in
the journal (a system attribute, the worker's clock) so that Optuna's heartbeat thread, its
``fail_stale_trials`` and the retry callback work the same on both storages. That base class,
``optuna.storages._heartbeat.BaseHeartbeat``, is the one private name this library uses: Optuna asks a storage
for heartbeats through it alone. setup.cfg bounds Optuna to the versions tests/test_storage.py checks this
adapter against (the methods it implements are those Optuna calls).

A SQLite study that another process holds locked (a write, a backup, ``BEGIN EXCLUSIVE`` in a shell) is
waited for: each access of a worker waits up to ``SQLITE_TIMEOUT_S`` (SQLite's busy timeout; Optuna does
not retry) and goes on once the lock is gone. Locked for longer, the access fails, and the worker stops with
one line that names the database and the lock (``storage_trouble``); a heartbeat that cannot be written is
missed, not a traceback of Optuna's heartbeat thread (``WaitingRDBStorage``).
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat  # the one private name: see the module's docstring
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from fmnist_ignite.config.commands import TuneSettings
from fmnist_ignite.config.fields import named
from fmnist_ignite.errors import FmnistError

JOURNAL_NAME = "study.journal"  # a new study's storage, in its directory
OLD_DATABASE_NAME = "study.db"  # the storage of a study created before the journal was the default
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
SQLITE_HEADER = b"SQLite format 3\x00"
SQLITE_TIMEOUT_S = 60  # how long a worker's access waits for a SQLite study another process holds locked
MAX_JOURNAL_BYTES = 1 << 30  # Optuna reads a journal whole; a study of thousands of trials is a few MB
HEARTBEAT_ATTR = "fmnist:heartbeat"  # a running trial's last heartbeat in a journal, seconds since the epoch


class StorageKind(enum.StrEnum):
    """What a study's storage is."""

    JOURNAL = "journal"  # Optuna's journal file
    RDB = "rdb"  # a database by SQLAlchemy URL: SQLite, PostgreSQL, MySQL


@dataclass(frozen=True)
class StudyStorage:
    """A study's storage, as resolved from ``--storage`` and the study's directory.

    Attributes:
        kind: a journal file or an RDB database.
        location: the journal file's path, or the database's SQLAlchemy URL.
    """

    kind: StorageKind
    location: str

    def __str__(self) -> str:
        return f"journal file {self.location}" if self.kind == StorageKind.JOURNAL else self.location


def resolve_storage(study_dir: Path, given: str | None) -> StudyStorage:
    """The storage ``--storage`` names, else the study directory's: its old ``study.db`` if it has one,
    else the journal file ``study.journal``.

    Args:
        study_dir: the study's directory.
        given: ``--storage``: a SQLAlchemy URL (``postgresql+psycopg://...``, ``sqlite:///...``), the path of
            an existing SQLite study (``.db``, ``.sqlite``), or a journal file's path (created if missing).

    Raises:
        FmnistError: a SQLite path that is not an existing SQLite file.
    """
    if given is None:
        old = Path(study_dir) / OLD_DATABASE_NAME
        if old.is_file() and not old.is_symlink():
            return StudyStorage(StorageKind.RDB, f"sqlite:///{old}")
        return StudyStorage(StorageKind.JOURNAL, str(Path(study_dir) / JOURNAL_NAME))
    if "://" in given:
        return StudyStorage(StorageKind.RDB, given)
    path = Path(given)
    if path.suffix.lower() in SQLITE_SUFFIXES:
        if not is_sqlite_file(path):
            raise FmnistError(
                "{given}: not an existing SQLite study; a new study's storage is a journal file ({journal}) or a "
                "database URL (sqlite:///{path} creates one)",
                given=named(TuneSettings, "storage", given),
                journal=named(TuneSettings, "storage", "PATH.journal"),
                path=given,
            )
        return StudyStorage(StorageKind.RDB, f"sqlite:///{path}")
    return StudyStorage(StorageKind.JOURNAL, str(path))


def is_sqlite_file(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) that starts as a SQLite database does."""
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def open_storage(storage: StudyStorage, heartbeat: int) -> BaseStorage:
    """Optuna's storage object for ``storage``, with a heartbeat every ``heartbeat`` seconds and a dead
    worker's trial (three heartbeats missed) queued again by Optuna's retry callback.

    Raises:
        FmnistError: a journal path that is a link or not a regular file, a journal over ``MAX_JOURNAL_BYTES``,
            or a directory that cannot be made.
    """
    retry = RetryHeartbeatStaleTrialCallback(3, inherit_intermediate_values=True)
    if storage.kind == StorageKind.RDB:
        engine_kwargs: dict[str, object] = (
            {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if storage.location.startswith("sqlite") else {}
        )
        return WaitingRDBStorage(
            storage.location,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat,
            grace_period=3 * heartbeat,
            heartbeat_stale_trial_callback=retry,
        )
    path = Path(storage.location)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise FmnistError(f"the study's journal {path} is not a regular file (a link is not followed)")
    if path.is_file() and path.stat().st_size > MAX_JOURNAL_BYTES:
        raise FmnistError(
            f"the study's journal {path} is over {MAX_JOURNAL_BYTES:,} bytes: refused unread (a study's is a few MB)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FmnistError(f"cannot make the study's directory {path.parent}: {exc.strerror}") from None
    return HeartbeatJournalStorage(path, heartbeat, 3 * heartbeat, retry)


class WaitingRDBStorage(RDBStorage):
    """Optuna's ``RDBStorage`` whose heartbeat, when the database cannot be written now (a SQLite file locked
    for longer than ``SQLITE_TIMEOUT_S``, a server away), is missed: Optuna's heartbeat thread goes on to the
    next one instead of ending with a traceback. Three missed in a row, and another worker retries the trial,
    as a dead worker's; the trial's own accesses (its reports, its end) are what stop the worker if the
    database stays out of reach."""

    def record_heartbeat(self, trial_id: int) -> None:
        """Write the trial's heartbeat, or miss this one if the database cannot be written now."""
        with suppress(StorageInternalError, SQLAlchemyError):
            super().record_heartbeat(trial_id)


def storage_error(exc: BaseException) -> BaseException | None:
    """The error of a study's storage that ``exc`` is, or was raised from (also while Optuna handled it): the
    database's own (SQLAlchemy's), else Optuna's wrapper of it; None where there is none."""
    seen: BaseException | None = exc
    wrapper = None
    while seen is not None:
        if isinstance(seen, SQLAlchemyError):
            return seen
        if isinstance(seen, StorageInternalError):
            wrapper = wrapper or seen
        seen = seen.__cause__ if seen.__cause__ is not None else None if seen.__suppress_context__ else seen.__context__
    return wrapper


def is_locked(error: BaseException) -> bool:
    """Whether a storage's error (``storage_error``'s) is SQLite's busy timeout running out: the database was
    held locked by another connection for longer than ``SQLITE_TIMEOUT_S``."""
    first = (str(error).splitlines() or [""])[0]
    return "database is locked" in first or "database table is locked" in first


def storage_trouble(error: BaseException, storage: StudyStorage) -> str:
    """A storage's ``error`` (``storage_error``'s) in words that name the storage: "the study's database
    sqlite:///s.db stayed locked for over 60 s, longer than a worker waits ((sqlite3.OperationalError) database
    is locked)" for a SQLite lock; else the storage and the error's first line."""
    words = (str(error).splitlines() or [type(error).__name__])[0][:200] or type(error).__name__
    if is_locked(error):
        return (
            f"the study's database {storage} stayed locked for over {SQLITE_TIMEOUT_S:g} s, longer than a worker "
            f"waits ({words})"
        )
    return f"the study's storage {storage}: {words}"


@contextmanager
def failures_in_one_line(storage: StudyStorage) -> Iterator[None]:
    """Turn an error of the study's storage (``storage_error``) raised in the block into one line that names
    the storage (``storage_trouble``): a worker that reads or writes its study outside a trial (before the
    first, in the report after the last) stops with it, not a traceback. ``FmnistError`` passes as it is."""
    try:
        yield
    except FmnistError:
        raise
    except Exception as exc:
        error = storage_error(exc)
        if error is None:
            raise
        raise FmnistError(
            f"this worker stopped: {storage_trouble(error, storage)}; run the same command again when it can go on"
        ) from None


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's ``JournalStorage`` over a journal file, with heartbeats (which Optuna gives only RDBs).

    A running trial's heartbeat is a system attribute holding the worker's ``time.time()``; a trial is
    stale when neither its heartbeat nor its start is more recent than ``grace_period`` seconds (the start
    counts because Optuna's retry copies the dead trial's attributes, its last heartbeat included, into
    the trial that retries it). Workers on several machines compare their clocks: keep them in step (NTP),
    which a grace period of minutes makes forgiving.

    Args:
        path: the journal file (created if missing), locked by Optuna's symlink lock (NFS-safe).
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without a heartbeat after which a running trial is stale.
        stale_trial_callback: what to do with a stale trial once it is failed (Optuna's retry callback).
    """

    def __init__(
        self,
        path: Path,
        heartbeat_interval: int,
        grace_period: int,
        stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None,
    ) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        """Write the trial's heartbeat (nothing, if another worker already failed it as stale)."""
        with suppress(UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        running = self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        return [
            self.get_trial_id_from_study_id_trial_number(study_id, trial.number)  # public, where _trial_id is not
            for trial in running
            if now - last_sign_of_life(trial) > self.grace_period
        ]

    def get_heartbeat_interval(self) -> int | None:
        return self.heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self.stale_trial_callback


def last_sign_of_life(trial: FrozenTrial) -> float:
    """The later of a running trial's heartbeat (read back from the journal: checked) and its start."""
    beat = trial.system_attrs.get(HEARTBEAT_ATTR)
    started = trial.datetime_start.timestamp() if trial.datetime_start is not None else 0.0
    if isinstance(beat, bool) or not isinstance(beat, int | float) or not math.isfinite(beat):
        return started
    return max(float(beat), started)

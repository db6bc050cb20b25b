"""Where a study lives: the journal file by default, an old study.db kept, --storage's forms, the journal's
heartbeat (a dead worker's trial retried), and optuna-dashboard opening our journal."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import small_config_file
from helpers import load_study
from ignite.engine import Events

optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")

from optuna.trial import TrialState  # noqa: E402

from fmnist_ignite.cli.main import main  # noqa: E402
from fmnist_ignite.config.commands import TuneSettings  # noqa: E402
from fmnist_ignite.errors import FmnistError  # noqa: E402
from fmnist_ignite.experiments import storage as storage_module  # noqa: E402
from fmnist_ignite.experiments import tuning  # noqa: E402
from fmnist_ignite.experiments.storage import (  # noqa: E402
    HEARTBEAT_ATTR,
    HeartbeatJournalStorage,
    StorageKind,
    StudyStorage,
    open_storage,
    resolve_storage,
)
from fmnist_ignite.experiments.study import counted_trials, open_study  # noqa: E402
from fmnist_ignite.experiments.tuning import tune  # noqa: E402

SPACE = {"lr": [0.05, 0.1], "optimizer": ["sgd"]}


def test_a_new_study_lives_in_a_journal_file_in_its_directory(small_config, tmp_path):
    study_dir = tmp_path / "study"
    result = tune(small_config.replace(output_dir=str(study_dir), epochs=1), 2, space=SPACE)
    assert (study_dir / "study.journal").is_file() and not (study_dir / "study.db").exists()
    assert isinstance(result.study._storage, HeartbeatJournalStorage)
    reloaded = load_study(study_dir)  # what another process reads back from the file
    assert [t.state for t in reloaded.get_trials()] == [TrialState.COMPLETE] * 2
    assert [t.value for t in reloaded.get_trials()] == [t.value for t in result.study.get_trials()]


def test_a_study_created_with_study_db_keeps_its_sqlite_database(small_config, tmp_path):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    old = optuna.create_study(study_name="fmnist", storage=f"sqlite:///{study_dir / 'study.db'}")
    old.enqueue_trial({"lr": 0.1, "optimizer": "sgd"})
    tune(small_config.replace(output_dir=str(study_dir), epochs=1), 2, space=SPACE)
    assert not (study_dir / "study.journal").exists()
    trials = optuna.load_study(study_name="fmnist", storage=f"sqlite:///{study_dir / 'study.db'}").get_trials()
    assert len(trials) == 2 and trials[0].params["lr"] == 0.1  # the old study's queued trial ran first


def test_storage_forms_resolve_to_what_they_name(tmp_path):
    assert resolve_storage(tmp_path, None) == StudyStorage(StorageKind.JOURNAL, str(tmp_path / "study.journal"))
    url = "postgresql+psycopg://u@127.0.0.1:5432/studies"
    assert resolve_storage(tmp_path, url) == StudyStorage(StorageKind.RDB, url)
    shared = tmp_path / "shared" / "fmnist.journal"
    assert resolve_storage(tmp_path, str(shared)) == StudyStorage(StorageKind.JOURNAL, str(shared))
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'old.db'}")
    assert resolve_storage(tmp_path, str(tmp_path / "old.db")).location == f"sqlite:///{tmp_path / 'old.db'}"


@pytest.mark.parametrize("content", [None, b"not a database"])
def test_a_sqlite_path_that_is_no_sqlite_study_is_one_line(tmp_path, content):
    path = tmp_path / "study.db"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(
        FmnistError,
        match=r"^storage='.*study.db': not an existing SQLite study; .* journal file \(storage='PATH.journal'\)",
    ):
        resolve_storage(tmp_path, str(path))
    assert path.exists() == (content is not None)  # nothing created


def test_a_journal_that_is_a_link_is_refused_and_its_target_untouched(small_config, tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("someone's notes\n")
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    (study_dir / "study.journal").symlink_to(target)
    with pytest.raises(FmnistError, match=r"journal .*study.journal is not a regular file \(a link is not followed\)"):
        tune(small_config.replace(output_dir=str(study_dir), epochs=1), 1, space=SPACE)
    assert target.read_text() == "someone's notes\n"


def test_a_damaged_journal_is_one_line(small_config, tmp_path, capsys):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    (study_dir / "study.journal").write_bytes(b'{"op_code": 0, "worker_id": "x", "study_name": "fmnist"\n')
    code = main(["tune", "--trials", "1", "--output-dir", str(study_dir), "--data-dir", small_config.data_dir])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1, err
    assert err.startswith("error: cannot open the study 'fmnist' in journal file ") and "Traceback" not in err


def test_a_journal_path_elsewhere_is_used_and_shared_by_two_studies_directories(small_config, tmp_path):
    journal = tmp_path / "shared" / "fmnist.journal"
    for name, trials in (("a", 1), ("b", 2)):  # the second worker joins the first's study from elsewhere
        config = small_config.replace(output_dir=str(tmp_path / name), epochs=1)
        tune(config, TuneSettings(trials, storage=str(journal)), space=SPACE)
    assert journal.is_file() and not (tmp_path / "a" / "study.journal").exists()
    study = load_study(tmp_path, storage=str(journal))
    assert [t.state for t in study.get_trials() if "surplus" not in t.user_attrs] == [TrialState.COMPLETE] * 2


def started_trial(storage: HeartbeatJournalStorage, study: optuna.Study, **system_attrs):
    trial_id = storage.create_new_trial(study._study_id)
    for key, value in system_attrs.items():
        storage.set_trial_system_attr(trial_id, key, value)
    return trial_id


def test_a_running_trial_without_heartbeats_is_failed_and_queued_again(tmp_path, monkeypatch):
    from fmnist_ignite.experiments import storage as storage_module

    study = open_study(StudyStorage(StorageKind.JOURNAL, str(tmp_path / "s.journal")), "fmnist", heartbeat=1)
    storage = study._storage
    assert isinstance(storage, HeartbeatJournalStorage) and storage.grace_period == 3
    dead = started_trial(storage, study)
    storage.record_heartbeat(dead)
    assert storage._get_stale_trial_ids(study._study_id) == []
    later = time.time() + 10  # ten seconds on: the first trial's worker sent nothing since
    monkeypatch.setattr(storage_module, "time", SimpleNamespace(time=lambda: later))
    alive = started_trial(storage, study)
    storage.record_heartbeat(alive)
    assert storage._get_stale_trial_ids(study._study_id) == [dead]
    counted = counted_trials(study)  # fails the stale trial, and Optuna's retry queues it again
    states = {t._trial_id: t.state for t in study.get_trials()}
    assert states[dead] == TrialState.FAIL and states[alive] == TrialState.RUNNING
    retry = [t for t in study.get_trials() if t.state == TrialState.WAITING]
    assert len(retry) == 1 and retry[0].system_attrs["failed_trial"] == dead
    assert [t._trial_id for t in counted] == [alive]


def test_the_heartbeat_adapter_is_what_the_installed_optuna_calls_within_the_versions_allowed(tmp_path):
    """The one private name the library uses (``BaseHeartbeat``): Optuna within setup.cfg's bound, every method
    Optuna's heartbeat thread and ``fail_stale_trials`` call implemented, and the journal seen as heartbeat-enabled.
    Run with another Optuna first on ``PYTHONPATH`` (``pip install --target``) to check that version: 5.0.0 passes
    this file and test_tuning.py's quick tier, as 5.1.0 does."""
    import configparser

    from helpers import ROOT
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    extras = configparser.ConfigParser()
    extras.read(ROOT / "setup.cfg")
    (requirement,) = [line for line in extras["options.extras_require"]["tune"].splitlines() if "optuna" in line]
    assert Version(optuna.__version__) in SpecifierSet(requirement.strip().removeprefix("optuna"))
    assert BaseHeartbeat.__abstractmethods__ <= set(vars(HeartbeatJournalStorage))
    storage = HeartbeatJournalStorage(tmp_path / "s.journal", 1, 3, None)
    assert is_heartbeat_enabled(storage) and storage.get_heartbeat_interval() == 1


def test_a_retried_trial_is_not_stale_for_the_heartbeat_it_inherited(tmp_path):
    study = open_study(StudyStorage(StorageKind.JOURNAL, str(tmp_path / "s.journal")), "fmnist", heartbeat=1)
    storage = study._storage
    study.add_trial(  # what Optuna's retry writes: the dead trial's attributes, its old heartbeat among them
        optuna.trial.create_trial(state=TrialState.WAITING, system_attrs={HEARTBEAT_ATTR: time.time() - 60})
    )
    trial = study.ask()  # the waiting trial, started now
    assert trial._trial_id == 0 and storage._get_stale_trial_ids(study._study_id) == []


@pytest.mark.parametrize("beat", ["soon", float("nan"), True, [1]])
def test_a_heartbeat_read_back_that_is_no_time_counts_as_none(tmp_path, beat):
    study = open_study(StudyStorage(StorageKind.JOURNAL, str(tmp_path / "s.journal")), "fmnist", heartbeat=1)
    storage = study._storage
    started_trial(storage, study, **{HEARTBEAT_ATTR: beat})  # a copied or tampered journal
    assert storage._get_stale_trial_ids(study._study_id) == []  # just started: alive, whatever the attribute


def test_optuna_dashboard_opens_our_journal_and_our_old_database(small_config, tmp_path):
    dashboard = pytest.importorskip("optuna_dashboard._storage_url", reason="optuna-dashboard is not installed")
    study_dir = tmp_path / "study"
    tune(small_config.replace(output_dir=str(study_dir), epochs=1), 1, space=SPACE)
    storage = dashboard.get_storage(str(study_dir / "study.journal"))  # `optuna-dashboard PATH`'s loader
    (summary,) = storage.get_all_studies()
    trials = storage.get_all_trials(summary._study_id)
    assert summary.study_name == "fmnist" and [t.state for t in trials] == [TrialState.COMPLETE]
    optuna.copy_study(from_study_name="fmnist", from_storage=storage, to_storage=f"sqlite:///{tmp_path / 'c.db'}")
    rdb = dashboard.get_storage(f"sqlite:///{tmp_path / 'c.db'}")
    assert [t.value for t in rdb.get_all_trials(rdb.get_all_studies()[0]._study_id)] == [trials[0].value]


def test_open_storage_makes_the_journals_directory(tmp_path):
    journal = tmp_path / "new" / "dir" / "s.journal"
    storage = open_storage(StudyStorage(StorageKind.JOURNAL, str(journal)), 30)
    assert journal.is_file() and isinstance(storage, HeartbeatJournalStorage)


def test_storage_flag_in_the_log_line(small_config, tmp_path, said):
    tune(small_config.replace(output_dir=str(tmp_path / "s"), epochs=1), 1, space=SPACE)
    assert said()[0].startswith(f"Study 'fmnist' in journal file {Path(tmp_path / 's' / 'study.journal')}: 1 trials")


def test_a_journal_over_its_bound_is_refused_unread(tmp_path, monkeypatch):
    from fmnist_ignite.experiments import storage as storage_module

    journal = tmp_path / "s.journal"
    journal.write_bytes(b"x" * 2048)
    monkeypatch.setattr(storage_module, "MAX_JOURNAL_BYTES", 1024)
    with pytest.raises(FmnistError, match=r"s\.journal is over 1,024 bytes: refused unread"):
        open_storage(StudyStorage(StorageKind.JOURNAL, str(journal)), 30)


class Lock:
    """Another connection's ``BEGIN EXCLUSIVE`` on a SQLite study, as another process takes it: taken once, and
    let go after ``hold`` seconds (a timer) or when the test says (``release``)."""

    def __init__(self, database: Path, hold: float | None = None) -> None:
        self.database, self.hold = database, hold
        self.connection: sqlite3.Connection | None = None
        self.taken_at = self.released_at = 0.0

    def take(self) -> None:
        if self.connection is None:
            self.connection = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
            self.connection.execute("BEGIN EXCLUSIVE")
            self.taken_at = time.monotonic()
            if self.hold is not None:
                threading.Timer(self.hold, self.release).start()

    def release(self) -> None:
        if self.connection is not None and not self.released_at:
            self.released_at = time.monotonic()
            self.connection.execute("ROLLBACK")
            self.connection.close()


@pytest.fixture
def sqlite_tune(tmp_path, monkeypatch, capsys):
    """``fmnist-ignite tune --storage sqlite:///study.db`` (one 2-epoch trial on synthetic data, a heartbeat a
    second) in this process; returns its exit code and standard error."""
    config = small_config_file(tmp_path, epochs=2)
    space = tmp_path / "space.yaml"
    space.write_text("lr: {low: 0.01, high: 0.1}\n")
    crashed: list[BaseException | None] = []  # what any thread (Optuna's heartbeat) ended with, unhandled
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args.exc_value))
    args = ["tune", "--config", config, "--storage", f"sqlite:///{tmp_path / 'study.db'}", "--trials", "1"]
    args += ["--output-dir", tmp_path / "study", "--space", space, "--heartbeat", "1"]

    def run() -> tuple[int, str]:
        capsys.readouterr()
        code = main([str(arg) for arg in args])
        assert crashed == []
        return code, capsys.readouterr().err.strip()

    return run


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
def test_a_sqlite_study_locked_for_less_than_the_wait_is_waited_for_and_the_trial_carries_on(
    sqlite_tune, tmp_path, monkeypatch
):
    monkeypatch.setattr(storage_module, "SQLITE_TIMEOUT_S", 3)
    lock, epoch_2 = Lock(tmp_path / "study.db", hold=1.0), []
    real_training = tuning.Training

    class LockingTraining(real_training):  # the study is locked from the trial's second step, for a second
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda engine: lock.take())
            self.trainer.add_event_handler(Events.EPOCH_STARTED(once=2), lambda e: epoch_2.append(time.monotonic()))

    monkeypatch.setattr(tuning, "Training", LockingTraining)
    try:
        code, err = sqlite_tune()
    finally:
        lock.release()  # already let go by its timer, unless the run failed first
    assert code == 0 and "Traceback" not in err, err
    assert lock.taken_at < lock.released_at <= epoch_2[0]  # epoch 1's report waited for the lock to go
    (trial,) = load_study(tmp_path, storage=f"sqlite:///{tmp_path / 'study.db'}").get_trials()
    assert trial.state == TrialState.COMPLETE and sorted(trial.intermediate_values) == [1, 2]


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
@pytest.mark.parametrize("locked_in", ["a trial", "the report"])
def test_a_sqlite_study_locked_past_the_wait_stops_the_worker_with_one_line_naming_it_and_no_trial_is_lost(
    sqlite_tune, tmp_path, monkeypatch, locked_in
):
    monkeypatch.setattr(storage_module, "SQLITE_TIMEOUT_S", 1)
    database = tmp_path / "study.db"
    lock = Lock(database)  # held until the worker has stopped
    real_training, real_report = tuning.Training, tuning.Worker.report

    class LockingTraining(real_training):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if locked_in == "a trial":
                self.trainer.add_event_handler(Events.ITERATION_COMPLETED(once=2), lambda engine: lock.take())

    def locking_report(worker):
        lock.take()
        return real_report(worker)

    monkeypatch.setattr(tuning, "Training", LockingTraining)
    if locked_in == "the report":
        monkeypatch.setattr(tuning.Worker, "report", locking_report)
    try:
        code, err = sqlite_tune()
    finally:
        lock.release()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(
        f"error: this worker stopped: the study's database sqlite:///{database} stayed locked for over 1 s, longer "
        "than a worker waits ((sqlite3.OperationalError) database is locked); "
    ), err
    assert err.endswith("run the same command again when it can go on"), err
    if locked_in == "a trial":
        assert "; trial 0 goes back to the queue" in err
        time.sleep(max(0.0, lock.taken_at + 4.5 - time.monotonic()))  # the last heartbeat (to the second) 3 s old
        monkeypatch.setattr(tuning, "Training", real_training)
        code, err = sqlite_tune()  # the same command again: the trial is continued, not lost
        assert code == 0, err
    trials = load_study(tmp_path, storage=f"sqlite:///{database}").get_trials()
    if locked_in == "a trial":  # failed as its worker stopped, and finished by its retry
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
        assert trials[1].system_attrs["failed_trial"] == 0
    else:
        assert [t.state for t in trials] == [TrialState.COMPLETE]


def test_a_sqlite_study_locked_when_a_worker_opens_it_is_waited_for_once_then_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(storage_module, "SQLITE_TIMEOUT_S", 1)
    database = tmp_path / "study.db"
    lock = Lock(database)
    lock.take()
    started = time.monotonic()
    try:
        with pytest.raises(FmnistError) as info:
            open_study(StudyStorage(StorageKind.RDB, f"sqlite:///{database}"), "fmnist", heartbeat=1)
    finally:
        lock.release()
    assert str(info.value) == (
        f"cannot open the study 'fmnist': the study's database sqlite:///{database} stayed locked for over 1 s, "
        "longer than a worker waits ((sqlite3.OperationalError) database is locked)"
    )
    assert time.monotonic() - started < 4  # one wait, not one for each of the five tries a race for the tables gets
    open_study(StudyStorage(StorageKind.RDB, f"sqlite:///{database}"), "fmnist", heartbeat=1)  # let go: it opens

"""A study: where it lives (its storage), how its trials are pruned, the settings it pins, its budget, and the
directory each trial runs in."""

from __future__ import annotations

import json
import shutil
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from fmnist_ignite.config.commands import TuneSettings
from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.experiments import storage as study_storage
from fmnist_ignite.experiments.storage import StudyStorage, open_storage
from fmnist_ignite.files.saved_config import CHANGEABLE_ON_RESUME, storable_config

# The heartbeat and its retry callback are marked experimental by Optuna; this library relies on them on purpose.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def default_pruner(epochs: int) -> optuna.pruners.BasePruner:
    """Stop a trial in the bottom quarter of the others at the same epoch, not before a third of its
    epochs: early epochs (a one-cycle warm-up, a small batch's first steps) say little of the last."""
    return optuna.pruners.PercentilePruner(75.0, n_startup_trials=5, n_warmup_steps=max(2, epochs // 3))


def open_study(
    storage: StudyStorage,
    study_name: str,
    heartbeat: int,
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> optuna.Study:
    """The study in ``storage``, created by the first worker and joined by the others.

    Raises:
        FmnistError: the study cannot be opened; a SQLite database another process holds locked for longer than
            ``SQLITE_TIMEOUT_S`` is said as such (``storage_trouble``).
    """
    from sqlalchemy.exc import DBAPIError

    error: Exception  # set by every try that does not return
    started = time.monotonic()
    for attempt in range(5):  # workers starting together race to create the tables: the losers try again
        try:
            return optuna.create_study(
                storage=open_storage(storage, heartbeat),
                study_name=study_name,
                direction="maximize",
                sampler=sampler or optuna.samplers.TPESampler(),
                pruner=pruner or default_pruner(epochs=3),
                load_if_exists=True,
            )
        except DBAPIError as exc:
            error = exc
            if time.monotonic() - started >= study_storage.SQLITE_TIMEOUT_S:  # a lock that outlasted the wait
                break
            time.sleep(0.2 * (attempt + 1))
        except FmnistError:
            raise
        except Exception as exc:  # a bad URL, a missing driver, a damaged journal, a locked database, ...
            error = exc
            break
    found = study_storage.storage_error(error) or error  # the database's words, not Optuna's wrapper's
    if study_storage.is_locked(found):
        raise FmnistError(f"cannot open the study {study_name!r}: {study_storage.storage_trouble(found, storage)}")
    words = str(found).splitlines()[0] if str(found) else type(found).__name__
    raise FmnistError(f"cannot open the study {study_name!r} in {storage}: {words}")


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that use up the budget: finished, running, diverged or failed by their own settings (a dead
    worker's are failed first, and go back to the queue: those do not count)."""
    fail_stale_trials(study)
    used = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in used or "diverged" in t.user_attrs or "failed" in t.user_attrs
    ]


def trial_directory(study_dir: Path, trial: FrozenTrial) -> Path:
    """Where a trial runs: a retried trial continues in the directory of the trial it retries."""
    origin = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)  # read back from the storage: checked
    if isinstance(origin, int) and not isinstance(origin, bool) and 0 <= origin <= trial.number:  # sane
        return trial_directory_by_number(study_dir, origin)
    return trial_directory_by_number(study_dir, trial.number)


def trial_directory_by_number(study_dir: Path, number: int) -> Path:
    return Path(study_dir) / f"trial-{number:04d}"


def remove_trial_directory(study_dir: Path, trial: FrozenTrial) -> None:
    """Delete the directory a finished trial ran in (``--keep-trials best|none``): only ``STUDY_DIR/trial-NNNN``
    named from the trial's number, a real directory inside the study's, never a path the study's storage
    holds (a shared or copied database may name any directory)."""
    directory = trial_directory(study_dir, trial)
    root = Path(study_dir).resolve()
    if directory.is_symlink() or not directory.is_dir() or directory.resolve().parent != root:
        return
    shutil.rmtree(directory, ignore_errors=True)


def study_settings(config: Config, space: dict) -> dict:
    """What every trial of a study shares: the space, and each setting not searched that changes what a
    trial computes (as a resume sees it), its length included; not where or how a worker runs."""
    shared = {
        name: value
        for name, value in storable_config(config).items()
        if name not in space and (name == "epochs" or name not in CHANGEABLE_ON_RESUME)
    }
    return json.loads(json.dumps({"space": space, **shared}))  # as the study's storage gives it back


def pin_study_settings(study: optuna.Study, given: dict) -> None:
    """The first worker records the study's settings; a worker with others is refused in one line, as a
    resume is, so no study ranks trials of different runs against each other."""
    if "settings" not in study.user_attrs:
        study.set_user_attr("settings", given)
    pinned = study.user_attrs["settings"]  # read back: of two first workers, one wrote it
    differences = [
        f"{name}: {pinned.get(name)!r} -> {given.get(name)!r}"
        for name in sorted(set(pinned) | set(given))
        if pinned.get(name) != given.get(name)
    ]
    if differences:
        raise FmnistError(
            "study {name!r} was started with other settings; give the same to join it, or name another {study}: "
            "{differences}",
            name=study.study_name,
            study=named(TuneSettings, "study"),
            differences=", ".join(differences),
        )

"""Finding hyperparameters with an Optuna study whose trials are real runs of this library, scored on the
validation split only (the test split is never read). The learning-rate finder, which needs no Optuna, is
``fmnist_ignite.experiments.lr_finder``.

A study lives in Optuna's journal file in its directory (or a database: ``experiments.storage``), so
workers started in several terminals, on several machines or as SLURM array tasks share it. A worker that dies mid-trial
stops sending heartbeats; another worker then marks that trial failed and runs it again, resuming from
the dead trial's last checkpoint. Ctrl-C or SIGTERM saves the running trial's checkpoint and queues it
again, so the next worker continues it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import optuna
from ignite.engine import Engine, Events
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError

from fmnist_ignite.analysis.predictions import keep_validation_predictions
from fmnist_ignite.config.commands import TuneSettings
from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config, best_row
from fmnist_ignite.errors import (
    CouldNotWrite,
    DirectoryInUse,
    FmnistError,
    NonFiniteLoss,
    TrainingInterrupted,
    shell_command,
)
from fmnist_ignite.experiments.confirm import best_versus_rest, confirm_top, trial_predictions_path
from fmnist_ignite.experiments.search_space import (
    DEFAULT_SPACE,
    RUN_SETTINGS,
    check_search_space,
    read_search_space,
    suggest,
)
from fmnist_ignite.experiments.seeds import parse_seeds
from fmnist_ignite.experiments.storage import (
    StudyStorage,
    failures_in_one_line,
    resolve_storage,
    storage_trouble,
)
from fmnist_ignite.experiments.study import (
    counted_trials,
    default_pruner,
    open_study,
    pin_study_settings,
    remove_trial_directory,
    study_settings,
    trial_directory,
    trial_directory_by_number,
)
from fmnist_ignite.experiments.study_report import (
    plot_study,
    shown,
    trial_outcome,
    trials_rows,
    trials_table,
    write_best_config,
)
from fmnist_ignite.files.durable import open_log
from fmnist_ignite.files.layout import resumable_checkpoints
from fmnist_ignite.files.saved_config import storable_config
from fmnist_ignite.run.launch import NOISY_LOGGERS, quiet, setup_process
from fmnist_ignite.run.signals import Stopped, StopRequests, catching_stop_signals, raising
from fmnist_ignite.run.training import Training
from fmnist_ignite.ui.console import lines_to, to_file

logger = logging.getLogger(__name__)


def attach_pruning(trial: optuna.Trial, trainer: Engine, evaluator: Engine, metric: str = "accuracy") -> list:
    """Report each epoch's validation metric to the trial, and end training when the pruner calls it hopeless.

    Training ends after the epoch's checkpoint.

    Args:
        trial: the Optuna trial the run is.
        trainer: the trainer to stop.
        evaluator: the validation evaluator, whose metric is reported after each of its runs.
        metric: the evaluator's metric to report.

    Returns:
        A list that holds the epoch it was pruned at, once it is.

    Examples:
        >>> import optuna
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import attach_pruning
        >>> pruner = optuna.pruners.ThresholdPruner(lower=0.5)
        >>> study = optuna.create_study(direction="maximize", pruner=pruner)
        >>> trial = study.ask()
        >>> trainer = Engine(lambda engine, batch: None)
        >>> evaluator = Engine(lambda engine, batch: None)
        >>> @evaluator.on(Events.COMPLETED)
        ... def score(engine):  # accuracy 0.6, then 0.4: below the threshold
        ...     engine.state.metrics["accuracy"] = 0.8 - 0.2 * trainer.state.epoch
        >>> @trainer.on(Events.EPOCH_COMPLETED)
        ... def validate(engine):
        ...     evaluator.run([0])
        >>> pruned = attach_pruning(trial, trainer, evaluator)
        >>> trainer.run([0], max_epochs=5).epoch, pruned
        (2, [2])
    """
    pruned: list[int] = []

    def report(engine: Engine) -> None:
        trial.report(engine.state.metrics[metric], trainer.state.epoch)
        if trial.should_prune():
            pruned.append(trainer.state.epoch)
            trainer.terminate()

    evaluator.add_event_handler(Events.COMPLETED, report)
    return pruned


def selected_accuracy(history: list[dict], monitor: str) -> float:
    """The validation accuracy of the epoch a run keeps (the best by its ``monitor``): a trial's score."""
    kept = best_row(history, f"val_{monitor}")
    if kept is None:
        raise FmnistError("the trial kept no validated epoch to score it by")
    return kept["val_accuracy"]


def what_stopped_the_worker(exc: BaseException) -> BaseException | None:
    """The error that ended a worker and that the worker can say in one line: a failed trial's own (a full
    disk, memory), or the study's storage's (a database locked beyond its timeout; the database's own words,
    not Optuna's wrapper of them), also where Optuna raised another error while handling it; None for
    anything else (a bug: its traceback is what helps)."""
    seen: BaseException | None = exc
    wrapper = None
    while seen is not None:
        if isinstance(seen, (FmnistError, OSError, SQLAlchemyError)):
            return seen
        if isinstance(seen, optuna.exceptions.StorageInternalError):
            wrapper = wrapper or seen
        seen = seen.__cause__ if seen.__cause__ is not None else None if seen.__suppress_context__ else seen.__context__
    return wrapper


class TrialFailed(Exception):
    """A trial's run failed in a way that running it again would repeat: the trial is marked failed, and the
    study goes on with the next."""


class BudgetReached(Exception):
    """Other workers started the study's last trials while this one asked for another."""


@dataclass
class TuneResult:
    """The study, its directory, and its best trial's configuration file.

    Attributes:
        study: the Optuna study, with all its trials (this worker's and others').
        study_dir: its directory.
        best_config: its best trial's configuration file (``best.yaml``); None if no trial completed.
    """

    study: optuna.Study
    study_dir: Path
    best_config: Path | None

    def __repr__(self) -> str:
        trials = self.study.get_trials(deepcopy=False)
        return f"TuneResult(study {self.study.study_name!r}, {len(trials)} trials, best config {self.best_config})"

    def _repr_html_(self) -> str:
        """The trials table, in a notebook."""
        from fmnist_ignite.ui.html import table_html

        trials = self.study.get_trials(deepcopy=False)
        title, rows = trials_rows(trials, list(dict.fromkeys(name for t in trials for name in t.params)))
        return table_html(rows, f"Study {self.study.study_name} in {self.study_dir}: {title}")


class Worker:
    """One worker on a study: runs trials until the study has ``trials`` of them or ``timeout`` passes."""

    def __init__(
        self,
        config: Config,
        study: TuneSettings,
        space: dict,
        pruner: optuna.pruners.BasePruner | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
    ) -> None:
        self.config, self.space = config, space
        self.trials, self.keep_trials = study.trials, study.keep_trials
        self.study_dir = study_directory(config, study)
        self.storage = storage_of(self.study_dir, study)
        self.study = open_study(self.storage, study.study, study.heartbeat, pruner, sampler)
        pin_study_settings(self.study, study_settings(config, space))
        self.running: optuna.Trial | None = None

    def objective(self, trial: optuna.Trial) -> float:
        """One trial: a training run of this library with the sampled settings, scored on validation."""
        if sum(t.number < trial.number for t in counted_trials(self.study)) >= self.trials:
            trial.set_user_attr("surplus", True)
            self.study.stop()
            raise BudgetReached(f"the study's {self.trials} trials were started by other workers")
        self.running = trial
        params = suggest(trial, self.space)
        directory = trial_directory(self.study_dir, self.study.get_trials(deepcopy=False)[trial.number])
        retried = directory.name != f"trial-{trial.number:04d}"
        config = self.config.replace(
            **params,
            output_dir=str(directory),
            resume="auto" if retried else None,
            score_test=False,
            plots=False,
            progress=False,
            seeds=None,
        )
        trial.set_user_attr("config", {k: v for k, v in storable_config(config).items() if k not in RUN_SETTINGS})
        trial.set_user_attr("output_dir", str(directory))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        settings = ", ".join(f"{k}={shown(v)}" for k, v in params.items())
        logger.info(f"Trial {trial.number}: {settings}" + (f" (continues {directory.name})" if retried else ""))
        directory.mkdir(parents=True, exist_ok=True)
        with open_log(directory / "train.log") as out, lines_to(to_file(out)):  # the run's lines; the worker's: stdout
            try:
                with Training(config) as training:
                    pruned = attach_pruning(trial, training.trainer, training.evaluator)
                    result = training.run()
            except NonFiniteLoss as exc:
                trial.set_user_attr("diverged", str(exc))
                raise
            except (TrainingInterrupted, CouldNotWrite, DirectoryInUse):
                raise  # passing: the trial goes back to the queue, and the worker stops (run())
            except FmnistError as exc:  # its settings fail every time (out of memory for its batch size, ...)
                trial.set_user_attr("failed", str(exc))
                raise TrialFailed(str(exc)) from None
        trial.set_user_attr("epochs", result.epochs_run)
        if pruned:
            raise optuna.TrialPruned(f"the pruner stopped it after epoch {pruned[0]}")
        keep_validation_predictions(training, trial_predictions_path(self.study_dir, trial.number))  # to compare trials
        return selected_accuracy(result.history, config.monitor)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Say how the trial ended; stop once the budget is used up; with --keep-trials none, remove a
        finished trial's directory."""
        self.running = None
        if "surplus" not in trial.user_attrs:
            logger.info(f"Trial {trial.number}: {trial_outcome(trial)}")
        if self.keep_trials == "none" and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            remove_trial_directory(self.study_dir, trial)
        if len(counted_trials(study)) >= self.trials:
            study.stop()

    def run(self, timeout: float | None = None) -> None:
        """Run trials; a stop signal saves the running trial's checkpoint and queues it for the next worker."""
        if len(counted_trials(self.study)) >= self.trials:
            logger.info(f"The study already has its {self.trials} trials")
            return
        setup_process(self.config)
        requests = StopRequests()
        optuna_logger = optuna.logging.get_logger("optuna")
        level = optuna_logger.level
        optuna_logger.setLevel(logging.ERROR)  # a failed trial's warning and traceback: the line below says it
        try:
            with catching_stop_signals(requests), raising(requests), quiet(NOISY_LOGGERS):
                self.study.optimize(
                    self.objective,
                    timeout=timeout,
                    catch=(NonFiniteLoss, BudgetReached, TrialFailed),
                    callbacks=[self.after_trial],
                )
        except (TrainingInterrupted, Stopped) as exc:
            what = self._queue_again()
            signum = exc.signum if isinstance(exc, Stopped) else exc.exit_code - 128
            raise TrainingInterrupted(
                f"interrupted by a stop signal: {what}; run the same command to go on with the study",
                128 + signum,
            ) from None
        except Exception as raised:
            cause = what_stopped_the_worker(raised)
            if cause is None:
                raise
            what = self._queue_again()
            if isinstance(cause, OSError):
                reason = f"{cause.filename}: " * bool(cause.filename) + str(cause.strerror or cause)
            elif isinstance(cause, FmnistError):
                reason = str(cause)
            else:  # the storage's: named, with the database's words
                reason = storage_trouble(cause, self.storage)
            raise FmnistError(
                f"this worker stopped: {reason}; {what}; run the same command again when it can go on"
            ) from None
        finally:
            optuna_logger.setLevel(level)

    def _queue_again(self) -> str:
        """Put the trial this worker was running back in the study's queue (as a dead worker's would be, by
        its heartbeat, if the storage cannot be written now); say so."""
        if self.running is None:
            return "no trial was running"
        number = self.running.number
        directory = trial_directory_by_number(self.study_dir, number)
        with suppress(Exception):  # the storage may be what failed: then the trial's heartbeat goes stale
            trial = self.study.get_trials(deepcopy=False)[number]
            directory = trial_directory(self.study_dir, trial)
            if trial.state == TrialState.FAIL:
                RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)(self.study, trial)
        kept = resumable_checkpoints(directory)
        return f"trial {number} goes back to the queue" + (", to continue from its checkpoint" if kept else "")

    def report(self) -> Path | None:
        """Print the trials (best first), write best.yaml and the plots, tidy the trial directories."""
        trials = [t for t in self.study.get_trials(deepcopy=False) if "surplus" not in t.user_attrs]
        logger.info(trials_table(trials, list(self.space)))
        verdict = best_versus_rest(trials, self.study_dir)
        if verdict:
            logger.info(verdict)
        best_config = None
        if any(t.state == TrialState.COMPLETE for t in trials):
            best = self.study.best_trial
            best_config = self.study_dir / "best.yaml"
            write_best_config(best, best_config, self.study.study_name)
            logger.info(f"Best: trial {best.number}, validation accuracy {best.value:.4f}; its settings: {best_config}")
            logger.info(f"Train it: {shell_command('fmnist-ignite train', config=best_config)}")
            if self.keep_trials == "best":
                for trial in trials:
                    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and trial.number != best.number:
                        remove_trial_directory(self.study_dir, trial)
            plots = plot_study(self.study, self.study_dir)
            logger.info(f"Plots: {', '.join(p.name for p in plots)}" if plots else "Plots skipped (need matplotlib)")
        size = sum(p.stat().st_size for p in self.study_dir.rglob("*") if p.is_file())
        logger.info(f"Disk: {size / 1e6:.1f} MB in {self.study_dir} (trial directories kept: {self.keep_trials})")
        return best_config


def study_directory(config: Config, study: TuneSettings) -> Path:
    """Where a study keeps its trials and reports: ``config.output_dir``, else ``runs/tune-STUDY``."""
    return Path(config.output_dir or f"runs/tune-{study.study}")


def storage_of(study_dir: Path, study: TuneSettings) -> StudyStorage:
    """The study's storage: ``study.storage``, else its directory's (``study.journal``, or an old
    ``study.db``)."""
    return resolve_storage(study_dir, study.storage)


def tune(
    config: Config,
    study: TuneSettings | int,
    space: dict | None = None,
    fixed: tuple[str, ...] = (),
    pruner: optuna.pruners.BasePruner | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> TuneResult:
    """Search hyperparameters with Optuna (TPE, percentile pruning).

    Each trial trains with ``config`` plus the sampled settings and is scored by the validation accuracy of
    the epoch it keeps. The study lives in ``config.output_dir`` (else ``runs/tune-STUDY``). Several workers
    calling this with the same storage and study name share the study and its budget.
    ``study.confirm_top`` (``--confirm-top K``): then re-train the top K trials once per seed of
    ``config.seeds`` on the validation split only, and write the one with the best mean to ``best.yaml``.

    Args:
        config: the trials' settings, before the sampled ones; it needs a validation split.
        study: how the study runs (its trials, storage, name, ...; ``fmnist-ignite tune``'s flags), or just
            its number of trials.
        space: the search space; None: ``study.space``'s file, else ``DEFAULT_SPACE``.
        fixed: settings that are not searched (given by a flag or the config file).
        pruner: Optuna's pruner, instead of the default (percentile pruning).
        sampler: Optuna's sampler, instead of the default (TPE).

    Raises:
        FmnistError: settings a study cannot run with (``resume``, several processes, no validation split,
            ``confirm_top`` without seeds) or a search space with nothing left to search.
    """
    study = (TuneSettings(trials=study) if isinstance(study, int) else study).validate()
    if config.resume:
        raise FmnistError(
            "a study continues on its own: run the same tune command again, without {resume}",
            resume=named(Config, "resume"),
        )
    if config.world_size > 1:
        raise FmnistError(
            "trials run in one process each: start several tune workers instead of {processes}",
            processes=named(Config, "nproc_per_node"),
        )
    if config.val_size == 0:
        raise FmnistError("trials are scored on the validation split: set a validation size > 0")
    confirm = study.confirm_top
    if confirm and not config.seeds:
        raise FmnistError(
            "{confirm} re-trains the top trials once per seed: give {seeds} (3, or 1,2,3)",
            confirm=named(TuneSettings, "confirm_top", confirm),
            seeds=named(Config, "seeds"),
        )
    if config.seeds:
        parse_seeds(config.seeds, config.seed + 1)
    config.validate()
    if space is None and study.space:
        space = read_search_space(study.space)
    space = {k: v for k, v in check_search_space(space or DEFAULT_SPACE).items() if k not in fixed}
    if not space:
        raise FmnistError("every setting of the search space is fixed by a flag or the config file: nothing to search")
    study_dir = study_directory(config, study)
    study_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial is reported in one line, below
    storage = storage_of(study_dir, study)
    with failures_in_one_line(storage):
        worker = Worker(config, study, space, pruner or default_pruner(config.epochs), sampler)
        logger.info(f"Study {study.study!r} in {storage}: {study.trials} trials, searching {', '.join(space)}")
        started = time.perf_counter()
        worker.run(study.timeout)
        logger.info(f"This worker's part: {time.perf_counter() - started:.0f} s")
        best_config = worker.report()
        if confirm and best_config is not None:
            confirmed = confirm_top(worker.study, study_dir, config, confirm)
            best_config = confirmed[0] if confirmed else best_config
    return TuneResult(worker.study, study_dir, best_config)

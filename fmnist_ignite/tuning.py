"""Finding hyperparameters with an Optuna study whose trials are real runs of this library, scored on the
validation split only (the test split is never read). The learning-rate finder, which needs no Optuna, is
``fmnist_ignite.lr_finder``.

A study lives in an RDB storage (a SQLite file in its directory by default), so workers started in
several terminals, on several machines or as SLURM array tasks share it. A worker that dies mid-trial
stops sending heartbeats; another worker then marks that trial failed and runs it again, resuming from
the dead trial's last checkpoint. Ctrl-C or SIGTERM saves the running trial's checkpoint and queues it
again, so the next worker continues it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from ignite.engine import Engine, Events
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from fmnist_ignite.config import Config, settings
from fmnist_ignite.configfile import read_settings_file
from fmnist_ignite.confirm import accuracy_cell, best_versus_rest, confirm_top, trial_predictions_path
from fmnist_ignite.durable import write_durably
from fmnist_ignite.errors import FmnistError, NonFiniteLoss, TrainingInterrupted
from fmnist_ignite.handlers import Log
from fmnist_ignite.launch import setup_process
from fmnist_ignite.predictions import keep_validation_predictions
from fmnist_ignite.repeat import parse_seeds
from fmnist_ignite.reports import pyplot
from fmnist_ignite.rundir import CHANGEABLE_ON_RESUME, storable_config
from fmnist_ignite.signals import Stopped, StopRequests, catching_stop_signals, raising
from fmnist_ignite.training import Training

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# --------------------------------------------------------------------------------------- search space

# How a trial runs (config.py marks each setting): not searched, and not kept in a trial's settings.
RUN_SETTINGS = tuple(name for name, s in settings().items() if not s.tunable)

# What a study searches unless told otherwise: a list is a choice, a mapping a range (log: on a log scale).
DEFAULT_SPACE = {
    "lr": {"low": 1e-4, "high": 3e-2, "log": True},
    "optimizer": ["sgd", "adam", "adamw"],
    "weight_decay": {"low": 1e-5, "high": 0.1, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "batch_size": [64, 128, 256, 512],
}


def check_search_space(space: object, source: str = "search space") -> dict:
    """Return ``space`` if every entry names a ``Config`` field with a choice list or a low/high range
    whose values ``Config`` accepts; else raise FmnistError naming the entry."""
    if not isinstance(space, dict) or not space:
        raise FmnistError(f"{source}: expected a mapping of setting: [choices] or {{low, high, log}}")
    fields = set(storable_config(Config()))
    for name, spec in space.items():
        if name not in fields or name in RUN_SETTINGS:
            raise FmnistError(f"{source}: {name!r} is not a setting a trial can vary")
        if isinstance(spec, list) and spec:
            values = spec
        elif isinstance(spec, dict) and set(spec) <= {"low", "high", "log", "step"} and {"low", "high"} <= set(spec):
            low, high = spec["low"], spec["high"]
            if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
                raise FmnistError(f"{source}: {name}: low must be a number below high, got {low} and {high}")
            if spec.get("log") and low <= 0:
                raise FmnistError(f"{source}: {name}: a log scale needs low > 0, got {low}")
            if spec.get("log") and spec.get("step") is not None:
                raise FmnistError(f"{source}: {name}: a range takes a step or a log scale, not both")
            values = [low, high]
        else:
            raise FmnistError(f"{source}: {name}: expected a list of choices or a mapping with low and high")
        for value in values:
            try:
                Config(**{name: value}).validate()
            except (FmnistError, TypeError) as exc:
                raise FmnistError(f"{source}: {name}: {value!r} is refused: {exc}") from None
    return space


def read_search_space(path: str | Path) -> dict:
    """A search space from a YAML (or JSON) file, checked entry by entry."""
    return check_search_space(read_settings_file(path), str(path))


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """One value for each entry of ``space``, drawn by the study's sampler."""
    params = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
        elif all(isinstance(spec[k], int) for k in ("low", "high")):
            params[name] = trial.suggest_int(
                name, spec["low"], spec["high"], step=spec.get("step", 1), log=spec.get("log", False)
            )
        else:
            params[name] = trial.suggest_float(
                name, spec["low"], spec["high"], step=spec.get("step"), log=spec.get("log", False)
            )
    return params


# -------------------------------------------------------------------------------------------- pruning


def attach_pruning(trial: optuna.Trial, trainer: Engine, evaluator: Engine, metric: str = "accuracy") -> list:
    """Report each epoch's validation ``metric`` to the trial and end training (after the epoch's
    checkpoint) when the study's pruner calls the trial hopeless. Returns a list that holds the
    epoch it was pruned at, once it is."""
    pruned: list[int] = []

    def report(engine: Engine) -> None:
        trial.report(engine.state.metrics[metric], trainer.state.epoch)
        if trial.should_prune():
            pruned.append(trainer.state.epoch)
            trainer.terminate()

    evaluator.add_event_handler(Events.COMPLETED, report)
    return pruned


# ---------------------------------------------------------------------------------------------- study


def selected_accuracy(history: list[dict], monitor: str) -> float:
    """The validation accuracy of the epoch a run keeps (the best by its ``monitor``): a trial's score."""
    key = f"val_{monitor}"
    kept = (min if monitor == "loss" else max)(history, key=lambda epoch: epoch[key])
    return kept["val_accuracy"]


class BudgetReached(Exception):
    """Other workers started the study's last trials while this one asked for another."""


@dataclass
class TuneResult:
    """The study, its directory, and its best trial's configuration file (None if no trial completed)."""

    study: optuna.Study
    study_dir: Path
    best_config: Path | None

    def _repr_html_(self) -> str:
        """The trials table, in a notebook."""
        from fmnist_ignite.notebook import table_html

        trials = self.study.get_trials(deepcopy=False)
        title, rows = trials_rows(trials, list(dict.fromkeys(name for t in trials for name in t.params)))
        return table_html(rows, f"Study {self.study.study_name} in {self.study_dir}: {title}")


KEEP_TRIALS = ("all", "best", "none")


def default_pruner(epochs: int) -> optuna.pruners.BasePruner:
    """Stop a trial in the bottom quarter of the others at the same epoch, not before a third of its
    epochs: early epochs (a one-cycle warm-up, a small batch's first steps) say little of the last."""
    return optuna.pruners.PercentilePruner(75.0, n_startup_trials=5, n_warmup_steps=max(2, epochs // 3))


def open_study(storage: str, study_name: str, heartbeat: int, pruner=None, sampler=None) -> optuna.Study:
    """The study in ``storage``, created by the first worker and joined by the others."""
    from sqlalchemy.exc import DBAPIError

    engine_kwargs = {"connect_args": {"timeout": 60}} if storage.startswith("sqlite") else {}
    for attempt in range(5):  # workers starting together race to create the tables: the losers try again
        try:
            return _open_study(storage, study_name, heartbeat, engine_kwargs, pruner, sampler)
        except DBAPIError as exc:
            error = exc
            time.sleep(0.2 * (attempt + 1))
        except Exception as exc:  # SQLAlchemy's other errors: a bad URL, a missing driver, ...
            error = exc
            break
    raise FmnistError(f"cannot open the study {study_name!r} in {storage}: {str(error).splitlines()[0]}")


def _open_study(storage: str, study_name: str, heartbeat: int, engine_kwargs: dict, pruner, sampler) -> optuna.Study:
    rdb = RDBStorage(
        storage,
        engine_kwargs=engine_kwargs,
        heartbeat_interval=heartbeat,
        grace_period=3 * heartbeat,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(3, inherit_intermediate_values=True),
    )
    return optuna.create_study(
        storage=rdb,
        study_name=study_name,
        direction="maximize",
        sampler=sampler or optuna.samplers.TPESampler(),
        pruner=pruner or default_pruner(epochs=3),
        load_if_exists=True,
    )


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that use up the budget: finished, diverged or running (a dead worker's are failed first)."""
    fail_stale_trials(study)
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) or "diverged" in t.user_attrs
    ]


def trial_directory(study_dir: Path, trial: FrozenTrial) -> Path:
    """Where a trial runs: a retried trial continues in the directory of the trial it retries."""
    origin = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return study_dir / f"trial-{trial.number if origin is None else origin:04d}"


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
            f"study {study.study_name!r} was started with other settings; give the same to join it, or name another "
            f"--study: {', '.join(differences)}"
        )


class Worker:
    """One worker on a study: runs trials until the study has ``trials`` of them or ``timeout`` passes."""

    def __init__(
        self,
        config: Config,
        trials: int,
        study_dir: Path,
        storage: str,
        study_name: str,
        space: dict,
        keep_trials: str = "all",
        heartbeat: int = 30,
        pruner=None,
        sampler=None,
        log: Log = print,
    ):
        self.config, self.trials, self.study_dir, self.space = config, trials, study_dir, space
        self.keep_trials, self.log = keep_trials, log
        self.study = open_study(storage, study_name, heartbeat, pruner, sampler)
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
        self.log(f"Trial {trial.number}: {settings}" + (f" (continues {directory.name})" if retried else ""))
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "train.log", "a") as out:
            with Training(config, log=lambda line: print(line, file=out, flush=True)) as training:
                pruned = attach_pruning(trial, training.trainer, training.evaluator)
                try:
                    result = training.run()
                except NonFiniteLoss as exc:
                    trial.set_user_attr("diverged", str(exc))
                    raise
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
            self.log(f"Trial {trial.number}: {trial_outcome(trial)}")
        if self.keep_trials == "none" and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            shutil.rmtree(trial.user_attrs.get("output_dir", ""), ignore_errors=True)
        if len(counted_trials(study)) >= self.trials:
            study.stop()

    def run(self, timeout: float | None = None) -> None:
        """Run trials; a stop signal saves the running trial's checkpoint and queues it for the next worker."""
        if len(counted_trials(self.study)) >= self.trials:
            self.log(f"The study already has its {self.trials} trials")
            return
        setup_process(self.config)
        requests = StopRequests()
        try:
            with catching_stop_signals(requests, self.log), raising(requests):
                self.study.optimize(
                    self.objective,
                    timeout=timeout,
                    catch=(NonFiniteLoss, BudgetReached),
                    callbacks=[self.after_trial],
                )
        except (TrainingInterrupted, Stopped) as exc:
            trial = self.running and self.study.get_trials(deepcopy=False)[self.running.number]
            if trial is not None and trial.state == TrialState.FAIL:
                RetryHeartbeatStaleTrialCallback(inherit_intermediate_values=True)(self.study, trial)
            signum = getattr(exc, "signum", None) or exc.exit_code - 128
            what = f"trial {trial.number} is queued again, to continue from its checkpoint" if trial else "no trial ran"
            raise TrainingInterrupted(
                f"interrupted by a stop signal: {what}; run the same command to go on with the study",
                128 + signum,
            ) from None

    def report(self) -> Path | None:
        """Print the trials (best first), write best.yaml and the plots, tidy the trial directories."""
        trials = [t for t in self.study.get_trials(deepcopy=False) if "surplus" not in t.user_attrs]
        self.log(trials_table(trials, list(self.space)))
        verdict = best_versus_rest(trials, self.study_dir)
        if verdict:
            self.log(verdict)
        best_config = None
        if any(t.state == TrialState.COMPLETE for t in trials):
            best = self.study.best_trial
            best_config = self.study_dir / "best.yaml"
            write_best_config(best, best_config, self.study.study_name)
            self.log(f"Best: trial {best.number}, validation accuracy {best.value:.4f}; its settings: {best_config}")
            self.log(f"Train it: fmnist-ignite train --config {best_config}")
            if self.keep_trials == "best":
                for trial in trials:
                    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and trial.number != best.number:
                        shutil.rmtree(trial.user_attrs.get("output_dir", ""), ignore_errors=True)
            plots = plot_study(self.study, self.study_dir)
            self.log(f"Plots: {', '.join(p.name for p in plots)}" if plots else "Plots skipped (need matplotlib)")
        size = sum(p.stat().st_size for p in self.study_dir.rglob("*") if p.is_file())
        self.log(f"Disk: {size / 1e6:.1f} MB in {self.study_dir} (trial directories kept: {self.keep_trials})")
        return best_config


def shown(value: object) -> str:
    """A sampled value, short: floats to three significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_outcome(trial: FrozenTrial) -> str:
    """How a finished trial ended, in a few words."""
    seconds = f"{trial.duration.total_seconds():.0f} s" if trial.duration else "?"
    if trial.state == TrialState.COMPLETE:
        return f"validation accuracy {trial.value:.4f} ({trial.user_attrs.get('epochs')} epochs, {seconds})"
    if trial.state == TrialState.PRUNED:
        last = list(trial.intermediate_values.items())[-1]
        return f"pruned at epoch {last[0]}, validation accuracy {last[1]:.4f} ({seconds})"
    return f"failed: {trial.user_attrs.get('diverged', 'see the warning above')}"


def trials_table(trials: list[FrozenTrial], names: list[str]) -> str:
    """The trials as a table: completed ones best first, then pruned, then failed and running."""
    title, table = trials_rows(trials, names)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in table]
    return "\n".join([title, *lines])


def trials_rows(trials: list[FrozenTrial], names: list[str]) -> tuple[str, list[list[str]]]:
    """The trials table's title and rows of cells, the headings first (``trials_table``'s order)."""
    order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.FAIL: 2, TrialState.RUNNING: 3}
    rows = sorted(trials, key=lambda t: (order.get(t.state, 4), -(t.value or 0.0), t.number))
    table = [["trial", "state", "val acc (95% CI)", "epochs", "time", *names]]
    for t in rows:
        value = t.value if t.value is not None else (list(t.intermediate_values.values()) or [math.nan])[-1]
        seconds = f"{t.duration.total_seconds():.0f}s" if t.duration else "-"
        params = [shown(t.params.get(n, "-")) for n in names]
        epochs = t.user_attrs.get("epochs", len(t.intermediate_values))
        accuracy = accuracy_cell(value, t.user_attrs.get("config", {}).get("val_size"))
        table.append([str(t.number), t.state.name.lower(), accuracy, str(epochs), seconds, *params])
    counts = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    summary = ", ".join(f"{sum(t.state == state for t in trials)} {name}" for name, state in counts.items())
    title = (
        f"{len(trials)} trials ({summary}); val acc: of the epoch each run keeps (pruned: the last reported), "
        "with its 95% Wilson interval"
    )
    return title, table


def write_best_config(trial: FrozenTrial, path: Path, study_name: str) -> None:
    """The best trial's settings, as a file ``--config`` takes."""
    import yaml

    header = (
        f"# Study {study_name}, trial {trial.number}: validation accuracy {trial.value:.4f}\n"
        f"# Train it: fmnist-ignite train --config {path}\n"
    )
    write_durably(path, header + yaml.safe_dump(trial.user_attrs["config"], sort_keys=False))


def plot_study(study: optuna.Study, directory: Path) -> list[Path]:
    """Optuna's optimisation history, parameter importances and intermediate values, as PNGs."""
    plt = pyplot()
    if plt is None:
        return []
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    plots = {
        "history.png": optuna_plots.plot_optimization_history,
        "importances.png": optuna_plots.plot_param_importances,
        "intermediate_values.png": optuna_plots.plot_intermediate_values,
    }
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # experimental, and importances of a few trials: noted in docs/tuning.md
                warnings.simplefilter("ignore")
                ax = plot(study)
        except (ValueError, RuntimeError):  # too few completed trials for importances, for example
            continue
        figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figure.savefig(directory / name, dpi=100)
        plt.close(figure)
        written.append(directory / name)
    return written


def tune(
    config: Config,
    trials: int,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str = "fmnist",
    output_dir: str | Path | None = None,
    space: dict | None = None,
    fixed: tuple[str, ...] = (),
    keep_trials: str = "all",
    heartbeat: int = 30,
    pruner=None,
    sampler=None,
    log: Log = print,
    confirm: int = 0,
) -> TuneResult:
    """Search hyperparameters with Optuna (TPE, percentile pruning): each trial trains with ``config`` plus
    the sampled settings and is scored by the validation accuracy of the epoch it keeps. ``fixed`` settings
    are not searched.

    Several workers calling this with the same storage and study name share the study and its budget.
    ``confirm`` (``--confirm-top K``): then re-train the top K trials once per seed of ``config.seeds`` on the
    validation split only, and write the one with the best mean to ``best.yaml``, with the evidence.
    """
    if trials < 1:
        raise FmnistError(f"--trials must be at least 1, got {trials}")
    if timeout is not None and timeout < 1:
        raise FmnistError(f"--timeout must be at least 1 second, got {timeout:g}")
    if heartbeat < 1:
        raise FmnistError(f"--heartbeat must be at least 1 second, got {heartbeat}")
    if keep_trials not in KEEP_TRIALS:
        raise FmnistError(f"unknown --keep-trials {keep_trials!r}: choose one of {', '.join(KEEP_TRIALS)}")
    if config.resume:
        raise FmnistError("a study continues on its own: run the same tune command again, without --resume")
    if config.world_size > 1:
        raise FmnistError("trials run in one process each: start several tune workers instead of --nproc-per-node")
    if config.val_size == 0:
        raise FmnistError("trials are scored on the validation split: set a validation size > 0")
    if confirm < 0:
        raise FmnistError(f"--confirm-top must be at least 1, got {confirm}")
    if confirm and not config.seeds:
        raise FmnistError(f"--confirm-top {confirm} re-trains the top trials once per seed: give --seeds (3, or 1,2,3)")
    if config.seeds:
        parse_seeds(config.seeds, config.seed + 1)
    config.validate()
    space = {k: v for k, v in check_search_space(space or DEFAULT_SPACE).items() if k not in fixed}
    if not space:
        raise FmnistError("every setting of the search space is fixed by a flag or the config file: nothing to search")
    study_dir = Path(output_dir or f"runs/tune-{study_name}")
    study_dir.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{study_dir / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each trial is reported in one line, below
    pruner = pruner or default_pruner(config.epochs)
    worker = Worker(config, trials, study_dir, storage, study_name, space, keep_trials, heartbeat, pruner, sampler, log)
    log(f"Study {study_name!r} in {storage}: {trials} trials, searching {', '.join(space)}")
    started = time.perf_counter()
    worker.run(timeout)
    log(f"This worker's part: {time.perf_counter() - started:.0f} s")
    best_config = worker.report()
    if confirm and best_config is not None:
        confirmed = confirm_top(worker.study, study_dir, config, confirm, log)
        best_config = confirmed[0] if confirmed else best_config
    return TuneResult(worker.study, study_dir, best_config)

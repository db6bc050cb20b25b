"""One configuration trained once per seed (``--seeds 0,1,2``): is a result the setting's, or the seed's?

Each seed is an ordinary run in ``PARENT/seed-N`` (checkpoints, summary, predictions, exact resume). The same
command again keeps the finished seeds, continues an interrupted one from its checkpoint and trains the rest;
a seed another process is training (its directory locked) is left to it, so several copies of the command (a
SLURM job array, say) share the seeds. ``PARENT/seeds_summary.json`` holds each seed's accuracies and their
mean, standard deviation and Student's t-interval, over the seeds finished so far.

Imports no torch until a run starts, so a bad ``--seeds`` is refused at once.
"""

from __future__ import annotations

import html
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fmnist_ignite.analysis.statistics import MeanInterval, mean_interval, percent_range
from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import MAX_SEED, Config, best_row
from fmnist_ignite.errors import Command, DirectoryInUse, FmnistError, TrainingInterrupted, shell_command
from fmnist_ignite.files.layout import resumable_checkpoints
from fmnist_ignite.files.saved_config import config_differences, saved_config, storable_config
from fmnist_ignite.files.summary import SUMMARY_FILE as RUN_SUMMARY_FILE
from fmnist_ignite.files.summary import RunSummary, read_summary
from fmnist_ignite.run.rundir import held_by

logger = logging.getLogger(__name__)
SEEDS_SUMMARY_FILE = "seeds_summary.json"
MAX_SEEDS = 1000  # runs of one setting; more is a typo (a billion would be refused only after building the list)


def parse_seeds(seeds: str | None, first: int = 0) -> list[int]:
    """``"0,1,2"``: those seeds; ``"3"``: three seeds from ``first`` on. One line for anything else."""
    text = str(seeds).strip()
    try:
        if "," in text:
            values = [int(part) for part in text.split(",") if part.strip()]
        else:
            count = int(text)
            if not 1 <= count <= MAX_SEEDS:
                raise FmnistError(
                    "{seeds}: a count of seeds must be in [1, {most}]",
                    seeds=named(Config, "seeds", seeds),
                    most=MAX_SEEDS,
                )
            values = list(range(first, first + count))
    except ValueError:
        raise FmnistError(
            "{seeds}: expected a list of seeds (0,1,2) or a count (3)", seeds=named(Config, "seeds", seeds)
        ) from None
    if not values or any(not 0 <= v <= MAX_SEED for v in values):
        raise FmnistError(
            "{seeds}: seeds are integers in [0, {most}]", seeds=named(Config, "seeds", seeds), most=MAX_SEED
        )
    if len(values) > MAX_SEEDS:
        raise FmnistError("{seeds}: at most {most} seeds", seeds=named(Config, "seeds", seeds), most=MAX_SEEDS)
    if len(set(values)) != len(values):
        raise FmnistError("{seeds}: a seed is named twice", seeds=named(Config, "seeds", seeds))
    return values


def seed_directory(parent: Path, seed: int) -> Path:
    return Path(parent) / f"seed-{seed}"


def kept_validation_accuracy(summary: RunSummary, monitor: str) -> dict | None:
    """The validation accuracy of the epoch a run keeps (the best by its ``monitor``), with its interval."""
    kept = best_row(summary.history, f"val_{monitor}")
    if kept is None or kept.get("val_accuracy") is None:
        return None
    low, high = kept.get("val_accuracy_ci_low"), kept.get("val_accuracy_ci_high")
    return {"epoch": kept["epoch"], "accuracy": kept["val_accuracy"], "ci95": [low, high] if low is not None else None}


def seed_record(seed: int, directory: Path, summary: RunSummary, monitor: str) -> dict:
    """What ``seeds_summary.json`` keeps of one seed's run, from its ``summary.json``."""
    test = summary.test
    return {
        "seed": seed,
        "output_dir": str(directory),
        "epochs_done": summary.epochs_done,
        "validation": kept_validation_accuracy(summary, monitor),
        "test": {"accuracy": test["accuracy"], "count": test.get("count"), "ci95": test.get("accuracy_ci95")}
        if test
        else None,
        "wall_time_s": summary.wall_time_s,
    }


def finished_summary(directory: Path, config: Config) -> RunSummary | None:
    """The summary of the finished run of ``config`` in ``directory``, or None when it is not finished, not
    there or damaged (then the run is scored again from its checkpoints, saying so). A run there with other
    settings is refused in one line."""
    saved = saved_config(directory)
    if saved is None:
        return None
    differences = config_differences(saved, config)
    if differences:
        raise FmnistError(
            "{directory} holds a run with other settings ({differences}): give the settings it was trained with, "
            "or another {output_dir} for these",
            directory=directory,
            differences=", ".join(differences),
            output_dir=named(Config, "output_dir"),
        )
    try:
        summary = read_summary(directory / RUN_SUMMARY_FILE)
    except FmnistError as exc:
        logger.warning(f"Seed {config.seed}: {exc}; its run is scored again")
        return None
    if summary is None:
        return None
    done = summary.finished and summary.config.get("epochs") == config.epochs
    return summary if done and (summary.test or not config.score_test) else None


@dataclass
class SeedsResult:
    """What ``train_seeds`` found: each finished seed's record and the statistics over them.

    Attributes:
        seeds: the seeds asked for.
        runs: each finished seed's record (its seed, epochs, validation and test accuracy), as the summary
            file holds them.
        pending: the seeds not finished (another process has them).
        validation: the mean, sd and t-interval of the validation accuracy over the finished seeds; None
            unless every finished one has it.
        test: the same of the test accuracy.
        summary_path: where the statistics are written (``seeds_summary.json``).
        output_dir: the parent directory of the seeds' runs (``seed-N``).
        summaries: each finished seed's ``summary.json``.
    """

    seeds: list[int]
    runs: list[dict]
    pending: list[int]
    validation: MeanInterval | None
    test: MeanInterval | None
    summary_path: Path
    output_dir: Path
    summaries: dict = field(default_factory=dict, repr=False)  # each finished seed's summary.json

    @property
    def complete(self) -> bool:
        return not self.pending

    def _statistics(self) -> list[str]:
        splits = (("validation", self.validation), ("test", self.test))
        return [f"{split} accuracy {mean_text(stats)}" for split, stats in splits if stats is not None]

    def __repr__(self) -> str:
        state = "complete" if self.complete else f"pending: {self.pending}"
        return f"SeedsResult(seeds {self.seeds}, {state}{''.join('; ' + s for s in self._statistics())})"

    def _repr_html_(self) -> str:
        """In a notebook: a row per seed, then the statistics over them."""
        from fmnist_ignite.ui.html import table_html

        pending = f"<p>Not finished yet (another process has them): {self.pending}</p>" if self.pending else ""
        stats = "".join(f"<p>{html.escape(line[0].upper() + line[1:])}</p>" for line in self._statistics())
        title = f"Seeds {self.seeds} in {self.output_dir}"
        return f"<div>{table_html(seeds_rows(self.runs), title)}{stats}{pending}</div>"


def statistics_over(runs: list[dict], split: str) -> MeanInterval | None:
    values = [run[split]["accuracy"] for run in runs if run.get(split)]
    return mean_interval(values) if values and len(values) == len(runs) else None


def write_seeds_summary(parent: Path, config: Config, seeds: list[int], runs: list[dict], pending: list[int]) -> dict:
    from fmnist_ignite.files.durable import write_durably

    validation, test = statistics_over(runs, "validation"), statistics_over(runs, "test")
    summary = {
        "seeds": seeds,
        "complete": not pending and len(runs) == len(seeds),
        "pending": pending,
        "runs": runs,
        "validation_accuracy": validation.as_dict() if validation else None,
        "test_accuracy": test.as_dict() if test else None,
        "interval": "Student's t-interval of the mean over the seeds (the seeds' spread only: the images are fixed)",
        "config": storable_config(config),
    }
    write_durably(parent / SEEDS_SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def mean_text(stats: MeanInterval) -> str:
    """``mean 90.38%, sd 0.49 points, 95% CI 89.17-91.59% (t, 2 df)``."""
    text = f"mean {100 * stats.mean:.2f}%"
    if stats.sd is None:
        return text + " (one seed: no spread)"
    assert stats.low is not None and stats.high is not None  # a spread comes with its interval
    interval = percent_range(max(stats.low, 0.0), min(stats.high, 1.0), 2)  # an accuracy's mean lies in [0, 100]%
    return f"{text}, sd {100 * stats.sd:.2f} points, 95% CI {interval} (t, {stats.n - 1} df)"


def seeds_rows(runs: list[dict]) -> list[list[str]]:
    """The headings, then a row per finished seed: its epochs and accuracies with their intervals."""
    rows = [["seed", "epochs", "validation (kept epoch)", "test"]]
    for run in runs:
        validation, test = run.get("validation"), run.get("test")
        rows.append(
            [
                str(run["seed"]),
                str(run.get("epochs_done")),
                interval_text(validation["accuracy"], validation.get("ci95")) if validation else "-",
                interval_text(test["accuracy"], test.get("ci95")) if test else "-",
            ]
        )
    return rows


def seeds_table(runs: list[dict]) -> str:
    rows = [[f"  {row[0]}", *row[1:]] for row in seeds_rows(runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows)


def interval_text(accuracy: float, ci: list | None) -> str:
    if not ci or ci[0] is None:
        return f"{100 * accuracy:.2f}%"
    return f"{100 * accuracy:.2f}% (95% CI {100 * ci[0]:.2f}-{100 * ci[1]:.2f}%)"


def train_seeds(config: Config, extra_handlers: Iterable[Callable] = ()) -> SeedsResult:
    """Train ``config`` once per seed of ``config.seeds``, each in ``OUTPUT_DIR/seed-N``.

    Finished seeds are kept, an interrupted one continues from its newest checkpoint, a seed another process
    is training is left to it. Its lines, and its runs', are log records, printed as ``train`` says; its own
    are this module's logger's (``fmnist_ignite.experiments.seeds``).

    Args:
        config: the runs' settings, with ``seeds`` (e.g. "0,1,2", or a count).
        extra_handlers: called with each run's trainer, as ``train`` takes them.

    Returns:
        Each seed's accuracies and their mean, sd and t-interval, also written to
        ``OUTPUT_DIR/seeds_summary.json``.

    Raises:
        FmnistError: no seeds given, or settings the runs refuse.
        TrainingInterrupted: a stop signal ended the run of the seed in progress, resumably.
    """
    from fmnist_ignite.run.launch import train

    if not config.seeds:
        raise FmnistError("no seeds given: set them, e.g. {seeds}", seeds=named(Config, "seeds", "0,1,2"))
    seeds = parse_seeds(config.seeds, config.seed)
    if config.resume not in (None, "auto"):
        raise FmnistError(
            "{seeds} continues each seed's run by itself (as {auto}): leave out {resume}, or resume that one run "
            "alone with {output_dir}",
            seeds=named(Config, "seeds"),
            auto=named(Config, "resume", "auto"),
            resume=named(Config, "resume", "PATH"),
            output_dir=named(Config, "output_dir", "PARENT/seed-N"),
        )
    config = config.with_environment().validate()
    parent = Path(config.output_dir or time.strftime("runs/%Y%m%d-%H%M%S-seeds"))
    parent.mkdir(parents=True, exist_ok=True)
    logger.info(f"Seeds {', '.join(map(str, seeds))}: one run each, in {parent}/seed-N")
    runs, pending, summaries = [], [], {}
    again = (("seeds", str(config.seeds)), ("output_dir", parent))  # how a stop goes on: the same seeds, here
    for seed in seeds:
        directory = seed_directory(parent, seed)
        seed_config = config.replace(seeds=None, seed=seed, output_dir=str(directory), resume=None)
        summary = finished_summary(directory, seed_config)
        if summary is None:
            holder = held_by(directory)
            if holder is not None:
                logger.info(f"Seed {seed}: another process (pid {holder}) is training it; left to it")
                pending.append(seed)
                continue
            resume = "auto" if resumable_checkpoints(directory) else None
            logger.info(f"Seed {seed}: {'continuing' if resume else 'training'} {directory}")
            try:
                train(seed_config.replace(resume=resume), tuple(extra_handlers))
            except TrainingInterrupted as stop:  # the seeds go on together: the finished kept, this one resumed
                stop.again = Command("fmnist-ignite train", "train_seeds(config.replace({}))", (), again)
                raise
            except DirectoryInUse:
                logger.info(f"Seed {seed}: another process took it first; left to it")
                pending.append(seed)
                continue
            summary = finished_summary(directory, seed_config)
            if summary is None:  # a machine other than rank 0's: its summary is there
                pending.append(seed)
                continue
        else:
            logger.info(f"Seed {seed}: finished earlier, kept ({directory})")
        summaries[seed] = summary.to_dict()
        runs.append(seed_record(seed, directory, summary, config.monitor))
        write_seeds_summary(parent, config, seeds, runs, [s for s in seeds if s not in summaries])
    written = write_seeds_summary(parent, config, seeds, runs, pending)
    result = SeedsResult(
        seeds,
        runs,
        pending,
        statistics_over(runs, "validation"),
        statistics_over(runs, "test"),
        parent / SEEDS_SUMMARY_FILE,
        parent,
        summaries,
    )
    if runs:
        logger.info(f"Seeds {', '.join(str(run['seed']) for run in runs)} of {parent}:")
        logger.info(seeds_table(runs))
        for name, stats in (("Validation", result.validation), ("Test", result.test)):
            if stats is not None:
                logger.info(f"{name} accuracy over {stats.n} seed{'s' * (stats.n > 1)}: {mean_text(stats)}")
    if pending:
        logger.info(
            f"Not finished here: seed{'s' * (len(pending) > 1)} {', '.join(map(str, pending))} (another process "
            "has them): the same command again, once they end, completes the summary"
        )
    logger.info(f"Summary: {parent / SEEDS_SUMMARY_FILE}" + ("" if written["complete"] else " (so far)"))
    return result


def run_seeds_command(config: Config, prog: str) -> int:
    """``train --seeds``: the seeds' runs, then their statistics; a stop says how to go on."""
    import sys

    parse_seeds(config.seeds, config.seed)  # a bad list is refused before torch is imported
    if config.output_dir is None:
        config = config.replace(output_dir=time.strftime("runs/%Y%m%d-%H%M%S-seeds"))
    assert config.output_dir is not None  # given, or named just above
    try:
        train_seeds(config)
    except TrainingInterrupted as exc:
        again = f"the same {prog} command with {shell_command('', output_dir=config.output_dir).strip()}"
        print(
            f"{exc.on_command_line()}\nTo go on (finished seeds are kept, this one continues): {again}", file=sys.stderr
        )
        return exc.exit_code
    return 0

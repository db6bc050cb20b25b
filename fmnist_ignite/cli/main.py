"""Command line for a training run: argparse flags onto ``Config``, errors as one line and exit code 2.

Parsing and checking the flags import no torch: ``--help``, ``--version`` and a bad flag answer at once;
the modules that do the work are imported when a command runs.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable

from fmnist_ignite.cli.commands import (
    run_compare,
    run_evaluate,
    run_export,
    run_lr_find,
    run_predict,
    run_report,
    run_runs,
    run_train,
    run_tune,
)
from fmnist_ignite.cli.parser import build_command_parser, build_parser
from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.ui.console import guard_console

# What a Ctrl-C outside a training run stopped, by command.
STOPPED = {
    "train": "before training started; nothing was saved",
    "lr-find": "the learning-rate finder stopped before it finished; nothing was written",
    "tune": "before the study started; nothing was saved",
    "evaluate": "the evaluation stopped before it finished; no file was written",
    "predict": "the predictions stopped; each line printed above is complete",
    "export": "the export stopped before it finished; no file was written",
    "compare": "the comparison stopped before it finished",
    "runs": "the listing stopped before it finished; no file was written",
    "report": "the reports stopped; each one printed above is complete",
}


def main(argv: list[str] | None = None) -> int:
    """``fmnist-ignite`` and ``python -m fmnist_ignite``: run a subcommand, return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_command_parser().parse_command(argv)
    runners = {
        "train": lambda: run_train(args, "fmnist-ignite train"),
        "lr-find": lambda: run_lr_find(args, argv[1:]),
        "tune": lambda: run_tune(args),
        "evaluate": lambda: run_evaluate(args),
        "predict": lambda: run_predict(args),
        "export": lambda: run_export(args),
        "compare": lambda: run_compare(args),
        "runs": lambda: run_runs(args),
        "report": lambda: run_report(args),
    }
    return guarded(runners[args.command], STOPPED[args.command])


def train_main(argv: list[str] | None = None) -> int:
    """``examples/run.py``: training flags only, return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    return guarded(lambda: run_train(args, shlex.join(["python", sys.argv[0]])), STOPPED["train"])


def guarded(run: Callable[[], int], stopped: str = STOPPED["train"]) -> int:
    """Run a command; a user's mistake becomes one line on stderr and exit code 2, never a traceback; Ctrl-C
    outside training says what ``stopped`` (exit code 130). Output never fails it (``guard_console``)."""
    with guard_console():
        return _guarded(run, stopped)


def _guarded(run: Callable[[], int], stopped: str) -> int:
    try:
        return run()
    except FmnistError as exc:
        print(f"error: {exc.on_command_line()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training (a run's own stop is a TrainingInterrupted)
        print(f"interrupted: {stopped}", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:  # torch's CPU allocator says so as a RuntimeError
        from fmnist_ignite.core.device import out_of_memory

        if not out_of_memory(exc):
            raise
        lower = FmnistError(
            "out of memory: lower {batch_size} or {eval_batch_size}, or use a larger machine",
            batch_size=named(Config, "batch_size"),
            eval_batch_size=named(Config, "eval_batch_size"),
        )
        print(f"error: {lower.on_command_line()}", file=sys.stderr)
        return 2
    except OSError as exc:  # a directory not writable, a read-only file system, a full disk outside a run
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2

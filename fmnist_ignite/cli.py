"""Command line for a training run: argparse flags onto ``Config``, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fmnist_ignite.config import (
    DEVICES,
    LOADERS,
    MONITORS,
    OPTIMIZERS,
    PRECISIONS,
    RECIPES,
    SCHEDULERS,
    Config,
    recipe,
)
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.training import TrainingInterrupted, train


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``examples/run.py``. A flag given overrides the recipe; the rest come from it."""
    d = Config()
    p = argparse.ArgumentParser(
        prog="run.py",
        description="Train the tutorial's MLP on Fashion-MNIST with PyTorch-Ignite: train, select on a "
        "validation split, then score the test set once. Defaults are the recipe's (the tutorial's: "
        "SGD, lr 1e-3, momentum 0.9, batch 64, 5 epochs).",
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--recipe", choices=RECIPES, default="tutorial", help="preset hyperparameters (default: tutorial)")
    p.add_argument("--epochs", type=int, help=f"maximum number of epochs ({d.epochs})")
    p.add_argument("--batch-size", type=int, help=f"training batch size ({d.batch_size})")
    p.add_argument("--lr", type=float, help=f"learning rate ({d.lr})")
    p.add_argument("--momentum", type=float, help=f"SGD momentum ({d.momentum})")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help=f"({d.optimizer})")
    p.add_argument("--weight-decay", type=float, help=f"({d.weight_decay})")
    p.add_argument("--dropout", type=float, help="dropout after each ReLU (0: the tutorial's model)")
    p.add_argument("--label-smoothing", type=float, help="of the training loss (0)")
    p.add_argument("--scheduler", choices=SCHEDULERS, help="learning-rate schedule (constant)")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--monitor", choices=MONITORS, help=f"validation metric that selects ({d.monitor})")
    p.add_argument("--val-size", type=int, help=f"training images held out for validation ({d.val_size})")
    p.add_argument("--data-dir", help=f"where to look for (or download) Fashion-MNIST ({d.data_dir})")
    p.add_argument("--output-dir", help="checkpoint directory (runs/<date>-<time>)")
    p.add_argument("--seed", type=int, help=f"seed of the initial weights and the data order ({d.seed})")
    p.add_argument("--device", choices=DEVICES, help=f"({d.device})")
    p.add_argument("--threads", type=int, help="CPU threads for torch (torch's default: one per core)")
    p.add_argument("--precision", choices=PRECISIONS, help=f"autocast precision ({d.precision})")
    p.add_argument("--log-interval", type=int, help=f"print the loss every N batches ({d.log_interval})")
    p.add_argument("--one-hot", action="store_true", help="use the tutorial's one-hot float targets")
    p.add_argument("--loader", choices=LOADERS, help=f"in-memory tensors, or torchvision-style ({d.loader})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a terminal)")
    p.add_argument(
        "--resume",
        metavar="PATH|auto",
        help="continue from a checkpoint file, or 'auto': the newest in --output-dir (else the newest run in runs/)",
    )
    p.add_argument(
        "--no-restore-best", action="store_true", help="score the test set with the last weights, not the best"
    )
    return p


NEGATED_FLAGS = {"no_progress": "progress", "no_restore_best": "restore_best"}


def config_from_args(args: argparse.Namespace) -> Config:
    """The recipe's configuration with every flag that was given on top."""
    given = dict(vars(args))
    name = given.pop("recipe")
    for flag, field in NEGATED_FLAGS.items():
        if given.pop(flag, False):
            given[field] = False
    return recipe(name, **given)


def resume_command(argv: list[str], checkpoint: Path) -> str:
    """The command line that continues this run from ``checkpoint``: the same flags, plus --resume."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--resume", "--output-dir"):
            skip = True
        elif not arg.startswith(("--resume=", "--output-dir=")):
            kept.append(arg)
    return shlex.join(["python", sys.argv[0], *kept, "--resume", str(checkpoint)])


def main(argv: list[str] | None = None) -> int:
    """Run training from command-line flags; return the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        train(config_from_args(args))
    except TrainingInterrupted as exc:
        print(f"{exc}\nTo resume: {resume_command(argv, exc.checkpoint)}", file=sys.stderr)
        return exc.exit_code
    except FmnistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before training started: nothing to save yet
        print("interrupted before training started; nothing was saved", file=sys.stderr)
        return 130
    return 0

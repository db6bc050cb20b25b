"""Command line for a training run: argparse flags onto ``Config``, errors as one line and exit code 2."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from fmnist_ignite.config import DEVICES, LOADERS, MONITORS, OPTIMIZERS, Config
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.training import TrainingInterrupted, train


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``examples/run.py``; defaults are the tutorial's hyperparameters."""
    d = Config()
    p = argparse.ArgumentParser(
        prog="run.py",
        description="Train the tutorial's MLP on Fashion-MNIST with PyTorch-Ignite: train, select on a "
        "validation split, then score the test set once.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--epochs", type=int, default=d.epochs, help="maximum number of epochs")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="training batch size")
    p.add_argument("--lr", type=float, default=d.lr, help="learning rate")
    p.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--dropout", type=float, default=d.dropout, help="dropout after each ReLU (0: the tutorial's)")
    p.add_argument("--patience", type=int, default=d.patience, help="early-stopping patience in epochs (0: off)")
    p.add_argument("--monitor", choices=MONITORS, default=d.monitor, help="validation metric that selects")
    p.add_argument("--val-size", type=int, default=d.val_size, help="training images held out for validation")
    p.add_argument("--data-dir", default=d.data_dir, help="where to look for (or download) Fashion-MNIST")
    p.add_argument("--output-dir", default=None, help="checkpoint directory (default: runs/<date>-<time>)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the model's initial weights and the data order")
    p.add_argument("--device", choices=DEVICES, default=d.device)
    p.add_argument("--log-interval", type=int, default=d.log_interval, help="print the loss every N batches")
    p.add_argument("--one-hot", action="store_true", help="use the tutorial's one-hot float targets")
    p.add_argument("--loader", choices=LOADERS, default=d.loader, help="in-memory tensors, or torchvision-style")
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


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        dropout=args.dropout,
        patience=args.patience,
        monitor=args.monitor,
        val_size=args.val_size,
        data_dir=args.data_dir,
        output_dir=args.output_dir,
        seed=args.seed,
        device=args.device,
        log_interval=args.log_interval,
        one_hot=args.one_hot,
        loader=args.loader,
        progress=not args.no_progress,
        resume=args.resume,
        restore_best=not args.no_restore_best,
    )


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

"""What each subcommand does; the modules that do the work are imported when it runs."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from fmnist_ignite.cli.parser import LR_FIND_FLAGS, TUNE_FLAGS, config_from_args, fixed_settings, without
from fmnist_ignite.errors import FmnistError, TrainingInterrupted


def run_lr_find(args: argparse.Namespace, argv: list[str]) -> int:
    config = config_from_args(without(args, LR_FIND_FLAGS)).with_environment().validate()
    for given, what in ((config.seeds, "--seeds"), (config.world_size > 1, "--nproc-per-node and --nnodes")):
        if given:
            raise FmnistError(f"lr-find runs one process with one seed (--seed): leave out {what}")
    output_dir = Path(config.output_dir or time.strftime("runs/%Y%m%d-%H%M%S-lr-find"))
    output_dir.mkdir(parents=True, exist_ok=True)  # before the batches: a directory it cannot write fails at once
    from fmnist_ignite.experiments.lr_finder import find_lr

    print(f"Learning-rate finder: {args.iterations} batches, lr from {args.start_lr:g} to {args.end_lr:g}")
    result = find_lr(config, args.start_lr, args.end_lr, args.iterations, output_dir / "lr_finder.png")
    print(f"Suggested learning rate: {result.suggestion:.3g} (where the loss fell fastest)")
    if not result.diverged:
        print(f"Note: the loss had not diverged by --end-lr {args.end_lr:g}: a larger --end-lr shows more of the curve")
    print("Plot: " + (str(result.plot_path) if result.plot_path else "skipped (pip install 'fmnist-ignite[plot]')"))
    kept = drop_flags(argv, ("--lr", "--output-dir", "--start-lr", "--end-lr", "--iterations"))
    print("Train with it: " + shlex.join(["fmnist-ignite", "train", *kept, "--lr", f"{result.suggestion:.3g}"]))
    return 0


def drop_flags(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """``argv`` without the given flags and their values (``--flag value`` or ``--flag=value``)."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token in flags:
            skip = True
        elif not token.startswith(tuple(f"{flag}=" for flag in flags)):
            kept.append(token)
    return kept


def run_tune(args: argparse.Namespace) -> int:
    config = config_from_args(without(args, TUNE_FLAGS)).with_environment().validate()
    try:
        from fmnist_ignite.experiments.search_space import read_search_space
        from fmnist_ignite.experiments.tuning import tune
    except ImportError as exc:
        raise FmnistError(f"tune needs Optuna ({exc}): pip install 'fmnist-ignite[tune]'") from None
    try:
        tune(
            config,
            args.trials,
            timeout=args.timeout,
            storage=args.storage,
            study_name=args.study,
            output_dir=config.output_dir,
            space=read_search_space(args.space) if args.space else None,
            fixed=fixed_settings(without(args, TUNE_FLAGS)),
            keep_trials=args.keep_trials,
            heartbeat=args.heartbeat,
            confirm=args.confirm_top,
        )
    except TrainingInterrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    return 0


def run_train(args: argparse.Namespace, prog: str) -> int:
    config = config_from_args(args).with_environment().validate()  # a bad value is refused before torch is imported
    if config.seeds:  # one run per seed, and their statistics
        from fmnist_ignite.experiments.seeds import run_seeds_command

        return run_seeds_command(config, prog)
    from fmnist_ignite.run.train import train

    try:
        train(config)
    except TrainingInterrupted as exc:
        hint = exc.checkpoint and f"\nTo resume: {prog} --resume auto --output-dir {shlex.quote(str(exc.output_dir))}"
        print(f"{exc}{hint or ''}", file=sys.stderr)
        return exc.exit_code
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from fmnist_ignite.analysis.inference import evaluate_checkpoint
    from fmnist_ignite.analysis.per_class import per_class_accuracy, per_class_table
    from fmnist_ignite.handlers.evaluation import format_metrics

    metrics = evaluate_checkpoint(args.checkpoint, args.data_dir, args.device)
    print(format_metrics("Test", metrics))
    print(per_class_table(per_class_accuracy(metrics["confusion"])))
    if args.top_losses:
        from fmnist_ignite.analysis.interpretation import interpret

        shown = interpret(args.checkpoint, args.data_dir, args.device).plot_top_losses(args.top_k, args.top_losses)
        print(f"Top losses: {args.top_losses}" if shown else "Top losses skipped (pip install 'fmnist-ignite[plot]')")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from fmnist_ignite.analysis.compare import compare_runs

    print(compare_runs(args.runs).text())
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from fmnist_ignite.analysis.inference import load_images, load_model, predict

    model = load_model(args.checkpoint)
    for image in args.images:
        names, pixels = load_images(image)
        for name, (label, probability) in zip(names, predict(model, pixels), strict=False):
            if args.json:
                print(json.dumps({"image": name, "class": label, "probability": probability}))
            else:  # a name with a newline or other control characters is quoted: it cannot forge a line
                print(f"{name if name.isprintable() else json.dumps(name)}: {label} ({probability:.1%})")
    return 0

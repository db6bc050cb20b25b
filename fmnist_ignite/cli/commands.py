"""What each subcommand does; the modules that do the work are imported when it runs."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from fmnist_ignite.cli.parser import config_from_args, fixed_settings, settings_from, without
from fmnist_ignite.config.commands import (
    EvaluateSettings,
    ExportSettings,
    LrFindSettings,
    PredictSettings,
    ReportSettings,
    RunsSettings,
    TuneSettings,
)
from fmnist_ignite.config.settings import EVAL_BATCH_SIZE, Config
from fmnist_ignite.errors import FmnistError, TrainingInterrupted, shell_command
from fmnist_ignite.files.layout import model_file


def run_lr_find(args: argparse.Namespace, argv: list[str]) -> int:
    config = config_from_args(without(args, LrFindSettings)).with_environment().validate()
    sweep = settings_from(args, LrFindSettings)
    for given, what in ((config.seeds, "--seeds"), (config.world_size > 1, "--nproc-per-node and --nnodes")):
        if given:
            raise FmnistError(f"lr-find runs one process with one seed (--seed): leave out {what}")
    output_dir = Path(config.output_dir or time.strftime("runs/%Y%m%d-%H%M%S-lr-find"))
    output_dir.mkdir(parents=True, exist_ok=True)  # before the batches: a directory it cannot write fails at once
    from fmnist_ignite.experiments.lr_finder import find_lr

    print(f"Learning-rate finder: {sweep.iterations} batches, lr from {sweep.start_lr:g} to {sweep.end_lr:g}")
    result = find_lr(config, sweep, plot_path=output_dir / "lr_finder.png")
    print(f"Suggested learning rate: {result.suggestion:.3g} (where the loss fell fastest)")
    if not result.diverged:
        end = f"{sweep.end_lr:g}"
        print(f"Note: the loss had not diverged by --end-lr {end}: a larger --end-lr shows more of the curve")
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
    config = config_from_args(without(args, TuneSettings)).with_environment().validate()
    study = settings_from(args, TuneSettings)
    try:
        from fmnist_ignite.experiments.tuning import tune
    except ImportError as exc:
        raise FmnistError(f"tune needs Optuna ({exc}): pip install 'fmnist-ignite[tune]'") from None
    try:
        tune(config, study, fixed=fixed_settings(without(args, TuneSettings)))
    except TrainingInterrupted as exc:
        print(exc.on_command_line(), file=sys.stderr)
        return exc.exit_code
    return 0


def run_train(args: argparse.Namespace, prog: str) -> int:
    config = config_from_args(args).with_environment().validate()  # a bad value is refused before torch is imported
    if config.seeds:  # one run per seed, and their statistics
        from fmnist_ignite.experiments.seeds import run_seeds_command

        return run_seeds_command(config, prog)
    from fmnist_ignite.run.launch import train

    try:
        train(config)
    except TrainingInterrupted as exc:
        if exc.checkpoint and exc.output_dir:
            resume = shell_command(prog, resume="auto", output_dir=exc.output_dir)
            print(f"{exc.on_command_line()}\nTo resume: {resume}", file=sys.stderr)
        else:
            print(exc.on_command_line(), file=sys.stderr)
        return exc.exit_code
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    where = Config(**{k: v for k, v in vars(args).items() if k in ("data_dir", "device")}).validate()
    shown = settings_from(args, EvaluateSettings)
    from fmnist_ignite.analysis.calibration import calibration_line
    from fmnist_ignite.analysis.inference import evaluate_checkpoint
    from fmnist_ignite.analysis.per_class import per_class_accuracy, per_class_counts, per_class_table
    from fmnist_ignite.handlers.evaluation import format_metrics

    checkpoint = model_file(args.checkpoint)  # a run directory: its best model, as export takes it
    metrics = evaluate_checkpoint(checkpoint, where.data_dir, where.device, calibrate=shown.calibrate)
    print(format_metrics("Test", metrics))
    print(calibration_line("test", metrics["calibration"], metrics["temperature"]))
    print(per_class_table(per_class_accuracy(metrics["confusion"]), per_class_counts(metrics["confusion"])))
    if shown.corruptions:
        from fmnist_ignite.analysis.corruptions import CORRUPTIONS_FILE
        from fmnist_ignite.analysis.inference import evaluate_corruptions

        results = evaluate_corruptions(checkpoint, where.data_dir, where.device, shown.corruption_seed)
        print(results.text())
        beside = checkpoint.parent
        results.write(beside / CORRUPTIONS_FILE)
        drawn = results.plot_examples(beside / "corruptions.png") is not None
        print(f"Corruptions: {beside / CORRUPTIONS_FILE}" + (f", {beside / 'corruptions.png'}" if drawn else ""))
    if shown.top_losses:
        from fmnist_ignite.analysis.interpretation import interpret

        grid = interpret(checkpoint, where.data_dir, where.device).plot_top_losses(shown.top_k, shown.top_losses)
        print(f"Top losses: {shown.top_losses}" if grid else "Top losses skipped (pip install 'fmnist-ignite[plot]')")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from fmnist_ignite.analysis.compare import compare_runs

    print(compare_runs(args.runs).text())
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from fmnist_ignite.analysis.export import OnnxClassifier
    from fmnist_ignite.analysis.inference import load_images, load_model, predict, predicted_classes
    from fmnist_ignite.data.loaders import to_float_images
    from fmnist_ignite.files.calibration import read_temperature

    shown = settings_from(args, PredictSettings)
    exported = OnnxClassifier(args.checkpoint) if Path(args.checkpoint).suffix == ".onnx" else None
    if exported is not None:
        temperature = exported.temperature() if shown.calibrate else None
    else:
        checkpoint = model_file(args.checkpoint)  # a run directory: its best model
        model = load_model(checkpoint)
        temperature = read_temperature(checkpoint) if shown.calibrate else None
    for image in args.images:
        names, pixels = load_images(image)
        found: list[tuple[str, float]] = []
        for batch in pixels.split(EVAL_BATCH_SIZE):  # the memory used does not grow with the file
            if exported is not None:
                found += predicted_classes(exported.logits(to_float_images(batch)), temperature)
            else:
                found += predict(model, batch, temperature)
        for name, (label, probability) in zip(names, found, strict=False):
            if shown.json:
                print(json.dumps({"image": name, "class": label, "probability": probability}))
            else:  # a name with a newline or other control characters is quoted: it cannot forge a line
                print(f"{name if name.isprintable() else json.dumps(name)}: {label} ({probability:.1%})")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from fmnist_ignite.analysis.export import export_model

    how = settings_from(args, ExportSettings)
    result = export_model(args.checkpoint, how.format, how.output)
    print(f"Exported {result.source} as {result.format.value}: {result.path}")
    print(f"Input: {result.metadata['input']}")
    if "temperature" in result.metadata:
        print(f"Temperature (fitted on validation; divide the logits by it): {result.metadata['temperature']}")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    from fmnist_ignite.experiments.listing import list_runs

    shown = settings_from(args, RunsSettings)
    table = list_runs(*args.dirs, sort=shown.sort, status=shown.status)
    if shown.csv:
        print(table.to_csv(), end="")
    elif shown.json:
        print(table.to_json())
    else:
        print(table)
    if shown.html:
        written = table.write_html(shown.html)
        print(f"Page: {written}", file=sys.stderr if shown.csv or shown.json else sys.stdout)
    return 0


def run_report(args: argparse.Namespace) -> int:
    shown = settings_from(args, ReportSettings)
    if shown.output and len(args.runs) > 1:
        raise FmnistError(f"--output names one page: give one RUN with it, not {len(args.runs)}")
    from fmnist_ignite.analysis.report import report

    for run in args.runs:
        print(f"Report: {report(run, shown.data_dir, shown.output, shown.top_k)}")
    return 0

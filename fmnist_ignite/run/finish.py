"""The end of a run, once training is over: the best weights restored, the test set scored once, the plots
drawn, the final summary written and the result handed back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from fmnist_ignite.analysis.calibration import calibration_line, calibration_report, fit_temperature, plot_reliability
from fmnist_ignite.analysis.per_class import per_class_accuracy, per_class_counts, per_class_intervals, per_class_table
from fmnist_ignite.analysis.predictions import PREDICTIONS_FILE, PredictionCollector
from fmnist_ignite.analysis.report import report_at_finish
from fmnist_ignite.analysis.statistics import accuracy_interval
from fmnist_ignite.core.distributed import broadcast_weights, unwrap
from fmnist_ignite.files.calibration import write_calibration
from fmnist_ignite.files.checkpoints import load_checkpoint
from fmnist_ignite.files.summary import RunStatus
from fmnist_ignite.handlers.evaluation import format_metrics
from fmnist_ignite.run.result import TrainResult
from fmnist_ignite.run.summary import test_extras
from fmnist_ignite.ui.plots import plot_confusion, plot_curves

PLOTS = ("curves.png", "confusion.png", "reliability.png")  # what plot() draws in the run directory

if TYPE_CHECKING:  # the run that finishes; it calls these
    from fmnist_ignite.run.training import Training


def restore_best(training: Training) -> str:
    """Load the best-validation weights (when asked and kept); return which weights the model holds."""
    best_path = training.handlers.best_saved
    if not (best_path and training.config.restore_best):
        if training.ema is not None:  # the last averaged weights are the ones scored
            unwrap(training.model).load_state_dict(training.ema.ema_model.state_dict())
        return f"last (epoch {training.trainer.state.epoch}{', averaged' if training.ema is not None else ''})"
    if training.rank == 0:  # rank 0 wrote it; the others may be on machines that cannot read it
        unwrap(training.model).load_state_dict(load_checkpoint(best_path, map_location=training.device))
    broadcast_weights(unwrap(training.model))
    best = training.handlers.history.best(f"val_{training.config.monitor}")
    assert best is not None  # a best model was saved, so its epoch's validation row is in the history
    return f"best (epoch {best['epoch']})"


def calibrate(training: Training, scored: str) -> float | None:
    """Fit the temperature of the weights the model holds on the validation split (Guo et al. 2017), keep
    it in ``calibration.json`` and say how calibrated the probabilities are, before and after; None (and
    nothing fitted) without a validation split."""
    loader = training.loaders.get("validation")
    if loader is None:
        return None
    collector = PredictionCollector()
    training.evaluate(loader, attach=collector.attach)
    probabilities, labels = collector.of_split(loader)
    temperature = fit_temperature(probabilities, labels)
    report = calibration_report(probabilities, labels, temperature)
    best = training.handlers.best_saved  # the file that holds the scored weights, when one does
    holder = best.name if best is not None and scored.startswith("best") else None
    if training.rank == 0:
        write_calibration(training.output_dir, temperature, holder, scored, report)
    training.calibration = {"temperature": temperature, "fitted_on": "validation", "validation": report}
    training.log(calibration_line("validation", report, temperature))
    return temperature


def score_test(training: Training, scored: str, temperature: float | None) -> Scored:
    """Test metrics, confusion matrix, calibration and probabilities of the model as it is (none when the
    test split is kept out)."""
    if not training.config.score_test:
        return Scored({}, None, None)
    collector = PredictionCollector()
    loader = training.loaders["test"]
    test = training.evaluate(loader, confusion_matrix=True, attach=collector.attach)
    confusion = test.pop("confusion").cpu()
    training.kept_predictions = collector.save(training.output_dir / PREDICTIONS_FILE, loader)
    probabilities, labels = collector.of_split(loader)
    test["calibration"] = calibration_report(probabilities, labels, temperature)
    training.log(format_metrics(f"Test, {scored} weights", test))
    training.log(calibration_line("test", test["calibration"], temperature))
    training.log(per_class_table(per_class_accuracy(confusion), per_class_counts(confusion)))
    return Scored(test, confusion, (probabilities, labels))


@dataclass
class Scored:
    """What scoring the test split found: its metrics (with their calibration block), the confusion matrix
    and each image's probabilities with its true class; empty when the test split is kept out."""

    test: dict
    confusion: torch.Tensor | None
    probabilities: tuple[np.ndarray, np.ndarray] | None


def plot(training: Training, scored: Scored, temperature: float | None) -> None:
    last, best = training.handlers.last_saved, training.handlers.best_saved
    assert last is not None  # training completed (at least one epoch), and each epoch saves a checkpoint
    training.log(f"Checkpoints in {training.output_dir}: {last.name}" + (f", {best.name}" if best else ""))
    if not (training.config.plots and training.rank == 0):
        return
    history, out, confusion = training.handlers.history, training.output_dir, scored.confusion
    plotted = plot_curves(history, out / "curves.png") is not None
    if plotted and confusion is not None and scored.probabilities is not None:
        plot_confusion(confusion, out / "confusion.png")
        plot_reliability(*scored.probabilities, temperature, out / "reliability.png")
    training.log(
        f"Plots: curves.png{', confusion.png, reliability.png' if confusion is not None else ''}"
        if plotted
        else "Plots skipped: matplotlib is not installed (pip install 'fmnist-ignite[plot]')"
    )


def finish_tracking(training: Training, scored: Scored) -> None:
    """Give each tracked run (``--tracker``) the test accuracy with its 95% Wilson interval, the test loss
    and ECE, the best checkpoint and the plots, and end it as finished."""
    if not training.trackers:
        return
    metrics: dict[str, float] = {}
    if scored.test:
        low, high = accuracy_interval(scored.test["accuracy"], scored.test["count"])
        metrics = {
            "test_accuracy": scored.test["accuracy"],
            "test_accuracy_ci_low": low,
            "test_accuracy_ci_high": high,
            "test_loss": scored.test["loss"],
            "test_ece": scored.test["calibration"]["ece"],
        }
    out, best = training.output_dir, training.handlers.best_saved
    files = [path for path in (best, *(out / name for name in PLOTS)) if path is not None and path.is_file()]
    for tracker in training.trackers:
        if metrics:
            tracker.log_metrics(metrics, training.trainer.state.epoch)
        tracker.log_files(files)
        tracker.close(finished=True)
    training.trackers = []


def finish(training: Training, weights: str, scored: Scored) -> TrainResult:
    """Write the final summary and return the result."""
    target = training.handlers.target
    if target is not None and not target.reached:
        best = max((row.get("val_accuracy", 0.0) for row in training.handlers.history.epochs), default=0.0)
        epochs = training.trainer.state.epoch
        training.log(
            f"Target not reached: validation accuracy {target.target:.2%} not reached in {epochs} epochs "
            f"(best {best:.2%})"
        )
    test, confusion = scored.test, scored.confusion
    classes = per_class_accuracy(confusion) if confusion is not None else {}
    stopped_early = training.trainer.state.epoch < training.config.epochs
    intervals = {"per_class_ci95": per_class_intervals(confusion)} if confusion is not None else {}
    training.write_summary(
        status=RunStatus.COMPLETED,
        stopped_early=stopped_early,
        scored_weights=weights,
        calibration=training.calibration,
        target=target.summary() if target is not None else None,
        test={**test, **test_extras(test, training.kept_predictions), "per_class_accuracy": classes, **intervals}
        if training.config.score_test
        else None,
    )
    report_at_finish(training)  # report.html, from the files just written
    return TrainResult(
        history=list(training.handlers.history.epochs),
        test_metrics=test,
        scored_weights=weights,
        output_dir=training.output_dir,
        epochs_run=training.trainer.state.epoch,
        stopped_early=stopped_early,
        best_checkpoint=training.handlers.best_saved,
        last_checkpoint=training.handlers.last_saved,
        per_class_accuracy=classes,
        confusion=confusion,
        model=unwrap(training.model),
        config=training.config,
    )

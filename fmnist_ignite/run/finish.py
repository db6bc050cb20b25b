"""The end of a run, once training is over: the best weights restored, the test set scored once, the plots
drawn, the final summary written and the result handed back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from fmnist_ignite.analysis.per_class import per_class_accuracy, per_class_table
from fmnist_ignite.analysis.predictions import PREDICTIONS_FILE, PredictionCollector
from fmnist_ignite.core.distributed import broadcast_weights, unwrap
from fmnist_ignite.files.checkpoints import load_checkpoint
from fmnist_ignite.files.summary import RunStatus
from fmnist_ignite.handlers.evaluation import format_metrics
from fmnist_ignite.run.result import TrainResult
from fmnist_ignite.run.summary import test_extras
from fmnist_ignite.ui.plots import plot_confusion, plot_curves

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


def score_test(training: Training, scored: str) -> tuple[dict, torch.Tensor | None]:
    """Test metrics and confusion matrix of the model as it is (none when the test split is kept out)."""
    if not training.config.score_test:
        return {}, None
    collector = PredictionCollector()
    test = training.evaluate(training.loaders["test"], confusion_matrix=True, attach=collector.attach)
    confusion = test.pop("confusion").cpu()
    training.kept_predictions = collector.save(training.output_dir / PREDICTIONS_FILE, training.loaders["test"])
    training.log(format_metrics(f"Test, {scored} weights", test))
    training.log(per_class_table(per_class_accuracy(confusion)))
    return test, confusion


def plot(training: Training, confusion: torch.Tensor | None) -> None:
    last, best = training.handlers.last_saved, training.handlers.best_saved
    assert last is not None  # training completed (at least one epoch), and each epoch saves a checkpoint
    training.log(f"Checkpoints in {training.output_dir}: {last.name}" + (f", {best.name}" if best else ""))
    if not (training.config.plots and training.rank == 0):
        return
    history = training.handlers.history
    plotted = plot_curves(history, training.output_dir / "curves.png") and (
        confusion is None or plot_confusion(confusion, training.output_dir / "confusion.png")
    )
    training.log(
        f"Plots: curves.png{', confusion.png' if confusion is not None else ''}"
        if plotted
        else "Plots skipped: matplotlib is not installed (pip install 'fmnist-ignite[plot]')"
    )


def finish(training: Training, scored: str, test: dict, confusion: torch.Tensor | None) -> TrainResult:
    """Write the final summary and return the result."""
    classes = per_class_accuracy(confusion) if confusion is not None else {}
    stopped_early = training.trainer.state.epoch < training.config.epochs
    training.write_summary(
        status=RunStatus.COMPLETED,
        stopped_early=stopped_early,
        scored_weights=scored,
        test={**test, **test_extras(test, training.kept_predictions), "per_class_accuracy": classes}
        if training.config.score_test
        else None,
    )
    return TrainResult(
        history=list(training.handlers.history.epochs),
        test_metrics=test,
        scored_weights=scored,
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

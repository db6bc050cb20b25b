"""``Training``: one process's part of a run, composed from the engines and the handlers, from its set-up to
its end (the best weights restored, the temperature fitted, the test set scored once, the plots, the summary).

It also makes the run safe to interrupt: checkpoints every epoch, a checkpoint on Ctrl-C or SIGTERM,
a stop on a NaN loss, and an exact resume (same batches, same weights) from any of those checkpoints.
Where its lines go (a notebook's live view, a terminal, a log file) and what ends it early, in one line,
are here too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from tqdm import tqdm

from fmnist_ignite.analysis.calibration import calibration_line, calibration_report, fit_temperature, plot_reliability
from fmnist_ignite.analysis.per_class import per_class_accuracy, per_class_counts, per_class_intervals, per_class_table
from fmnist_ignite.analysis.predictions import PREDICTIONS_FILE, PredictionCollector
from fmnist_ignite.analysis.report import report_at_finish
from fmnist_ignite.analysis.statistics import accuracy_interval
from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.device import out_of_memory
from fmnist_ignite.core.distributed import broadcast_weights, unwrap
from fmnist_ignite.core.engines import create_evaluator
from fmnist_ignite.core.threads import applied_threads
from fmnist_ignite.data.loaders import get_data_loaders
from fmnist_ignite.errors import (
    Command,
    CouldNotWrite,
    FmnistError,
    Message,
    NonFiniteLoss,
    TrainingInterrupted,
    said,
)
from fmnist_ignite.files.calibration import write_calibration
from fmnist_ignite.files.checkpoints import load_checkpoint
from fmnist_ignite.files.durable import disk_full
from fmnist_ignite.files.saved_config import storable_config
from fmnist_ignite.files.summary import RunStatus
from fmnist_ignite.handlers.evaluation import format_metrics
from fmnist_ignite.handlers.history import MetricsHistory
from fmnist_ignite.handlers.notebook import NotebookView, tee
from fmnist_ignite.handlers.progress import attach_progress_bar
from fmnist_ignite.handlers.standard import attach_default_handlers
from fmnist_ignite.handlers.tensorboard import attach_tensorboard, require_tensorboard
from fmnist_ignite.handlers.tracking import Tracker, attach_trackers, require_trackers
from fmnist_ignite.run.checkpoints import load_weights_and_threads, resume_state, state_to_save
from fmnist_ignite.run.engines import build_engines
from fmnist_ignite.run.record import RunRecord
from fmnist_ignite.run.result import TrainResult, test_extras
from fmnist_ignite.run.rundir import RunDirectory, claim_for_process, find_latest_checkpoint
from fmnist_ignite.run.signals import (
    Stopped,
    StopRequests,
    catching_stop_signals,
    raising,
    save_on_stop,
    stopping_trainer,
)
from fmnist_ignite.ui.console import Destination, destination, lines_to, no_lines, safe_stdout, say
from fmnist_ignite.ui.display import choose_display
from fmnist_ignite.ui.plots import plot_confusion, plot_curves

PLOTS = ("curves.png", "confusion.png", "reliability.png")  # what plot() draws in the run directory
logger = logging.getLogger(__name__)


@dataclass
class Scored:
    """What scoring the test split found: its metrics (with their calibration block), the confusion matrix
    and each image's probabilities with its true class; empty when the test split is kept out."""

    test: dict
    confusion: torch.Tensor | None
    probabilities: tuple[np.ndarray, np.ndarray] | None


@dataclass
class RunOutput:
    """How one process's run shows itself: ``display`` ("notebook", "terminal" or "plain"), the progress
    ``bar`` (a terminal's), the notebook ``view`` (attached once the handlers are), and the ``destination``
    of the run's lines while it runs (``fmnist_ignite.ui.console.lines_to``)."""

    display: str
    bar: ProgressBar | None
    view: NotebookView | None
    destination: Destination


def route_output(config: Config, trainer: Engine, rank: int) -> RunOutput:
    """Choose the display (``config.display``, rank 0 only), attach the progress bar it has, and choose where
    the lines go: where the caller sent them (``lines_to``), else printed, above the bar; in a notebook kept
    by the view as well, to show folded (only kept, unless the caller sent them somewhere)."""
    display = choose_display(config.display) if rank == 0 else "plain"
    bar = attach_progress_bar(trainer, enabled=config.progress and display == "terminal")
    chosen = destination()
    if rank != 0:  # only rank 0 says anything
        chosen = no_lines
    view = None
    if display == "notebook":
        view = NotebookView(MetricsHistory(), f"Training {config.model}", config.monitor, config.progress)
        chosen = view.log if chosen is say else tee(chosen, view.log)  # the text lines: kept, shown folded at the end
    elif bar is not None and chosen is say:
        chosen = above_bar
    return RunOutput(display, bar, view, chosen)


def above_bar(line: str) -> None:
    """A line printed above the progress bar, through a ``SafeStream``."""
    tqdm.write(line, file=safe_stdout())


def out_of_memory_error(exc: BaseException, config: Config, device: torch.device) -> FmnistError:
    """Memory ran out (a batch too large for this machine): one line naming the settings that size it."""
    return FmnistError(
        "out of memory on {device} ({why}): lower {batch_size} ({batch}) or {eval_batch_size} ({eval_batch}), or "
        "use a larger machine",
        device=device,
        why=str(exc).splitlines()[0][:120],
        batch_size=named(Config, "batch_size"),
        batch=config.batch_size,
        eval_batch_size=named(Config, "eval_batch_size"),
        eval_batch=config.eval_batch_size,
    )


def could_not_write(exc: OSError, output_dir: Path) -> CouldNotWrite:
    """A file the run could not write (a full disk, a directory gone), said in one line with what is safe."""
    latest = find_latest_checkpoint(output_dir)
    then = (
        Message(
            "the checkpoints already there are intact (newest: {newest}): free some space, then continue with {resume}",
            newest=latest.name,
            resume=named(Config, "resume", "auto"),
        )
        if latest
        else "no training checkpoint was kept: free some space, then start again"
    )
    return CouldNotWrite(
        "could not write {path}: {why}; {then}", path=exc.filename or output_dir, why=exc.strerror or exc, then=then
    )


def stopped_outside_training(
    stop: str, phase: str | None, resumed: bool, weights: Path | None, output_dir: Path
) -> str | Message:
    """A stop before training (``phase`` None) or after it (while ``phase``): what it left, in one line."""
    if phase is None:
        safe = f"the checkpoints in {output_dir} are as they were" if resumed else ""
        return f"{stop} before training started; " + (safe or "nothing was trained")
    return Message(
        "{stop} after training, while {phase}: the trained weights are in {weights}; score them with: {evaluate}",
        stop=stop,
        phase=phase,
        weights=weights,
        evaluate=Command.evaluate(weights or output_dir),
    )


def non_finite_loss(trainer: Engine, last: Path | None) -> NonFiniteLoss:
    """The loss became NaN or infinite: where, and the last good checkpoint."""
    loss = float("nan") if trainer.state.output is None else float(trainer.state.output)
    return NonFiniteLoss(
        "training stopped at epoch {epoch}, iteration {iteration}: the loss became {loss} at or before it (try a "
        "smaller {lr}); {kept}",
        epoch=trainer.state.epoch,
        iteration=trainer.state.iteration,
        loss=loss if not math.isfinite(loss) else "nan or inf (in this or another process)",
        lr=named(Config, "lr"),
        kept=f"the last good checkpoint is {last}" if last else "no epoch finished, so no checkpoint was kept",
    )


def in_one_line(exc: BaseException, config: Config, device: torch.device, output_dir: Path) -> BaseException:
    """The error a user is shown for ``exc``: a file not written or memory run out said in one line; any
    other error as it is."""
    if isinstance(exc, OSError):
        return could_not_write(exc, output_dir)
    if out_of_memory(exc):
        return out_of_memory_error(exc, config, device)
    return exc


class RunPhase(StrEnum):
    """What a run does once training is over, in the words a stop's message says it with."""

    RESTORING_BEST = "restoring the best weights"
    CALIBRATING = "fitting the temperature on the validation split"
    SCORING_TEST = "scoring the test set"
    PLOTTING = "drawing the plots"
    SUMMARIZING = "writing the summary"


class Training:
    """One run, set up: output directory claimed, model, engines, loaders and standard handlers attached.

    It resumes from a checkpoint if asked (``config.resume``). Its parts are attributes (``config``,
    ``model``, ``optimizer``, ``trainer``, ``evaluator``, ``ema``, ``loaders``, ``handlers``, ``output_dir``,
    ...), so code can attach more handlers before ``run()``.

    Its lines are log records of the package's loggers. While it sets up and runs, they go where the caller
    sent them (``fmnist_ignite.ui.console.lines_to``), else to standard output (above the progress bar), and
    in a notebook to the live view, shown folded at the end; the processes but rank 0's say nothing.

    Use it as a context manager (``with Training(config) as training: ...``): the directory is released on
    leaving, whether or not the run ran. ``stop()`` stops it from any thread, as SIGTERM would.

    Args:
        config: the run's settings (validated here).
        model: a model of your own (any module mapping N x 1 x 28 x 28 to N x 10 logits) instead of the
            built-in ``config.model``; the run records it as "custom".
        run_dir: the output directory as the launching process claimed it (the processes it spawned do not
            claim it again); None: this process claims it.
    """

    def __init__(
        self,
        config: Config,
        model: torch.nn.Module | None = None,
        run_dir: RunDirectory | None = None,
    ) -> None:
        self._started = time.perf_counter()
        config = config.replace(model="custom") if model is not None else config
        config.validate()
        if config.tensorboard:
            require_tensorboard()
        require_trackers(config.trackers)
        self.config = config
        self.rank, self.world_size = idist.get_rank(), idist.get_world_size()
        engines = self.engines = build_engines(config, model, self.world_size)
        self.device, self.model, self.optimizer = engines.device, engines.model, engines.optimizer
        self.trainer, self.evaluator, self.ema = engines.trainer, engines.evaluator, engines.ema
        self.precision, self.precision_reason = engines.precision, engines.precision_reason
        self._output = route_output(config, self.trainer, self.rank)
        self._requests = StopRequests()
        self._phase: RunPhase | None = None  # what the run does once training is over, for a stop's message
        self._record: RunRecord | None = None  # summary.json, once the run is set up
        self.kept_predictions: dict = {}  # where the test predictions went, once scored
        self.calibration: dict | None = None  # the temperature fitted on validation, once fitted
        self.trackers: list[Tracker] = []  # the MLflow and W&B runs (--tracker) rank 0 writes, while open
        with lines_to(self._output.destination):
            self.run_dir = claim_for_process(config, run_dir, self.rank, self.world_size)
        self.output_dir = self.run_dir.path
        try:
            with (
                lines_to(self._output.destination),
                catching_stop_signals(self._requests, note=False),
                raising(self._requests),
            ):
                self._set_up()
        except BaseException as exc:
            self.close()
            if isinstance(exc, Stopped):
                raise self._stopped() from None
            if out_of_memory(exc):
                raise out_of_memory_error(exc, config, self.device) from None
            raise

    def __enter__(self) -> Training:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Let another run have the output directory (``run()`` does it when it ends); a tracked run still
        open is ended as killed (a resume continues it)."""
        for tracker in self.trackers:
            with suppress(Exception):  # a tracker's store may be what failed
                tracker.close(finished=False)
        self.trackers = []
        self.run_dir.release()
        if self._output.view is not None:  # the notebook view's last state: how the run ended
            self._output.view.close(self._record.summary if self._record else None)

    def stop(self) -> None:
        """Stop the run as SIGTERM would: a checkpoint after the current batch, then ``TrainingInterrupted``
        (resumable). Thread-safe: call it from any thread, e.g. while ``run()`` trains in another."""
        self._requests.stop()

    def _set_up(self) -> None:
        """Read the checkpoint to resume from, load the data, attach the handlers and restore the state."""
        config, trainer, resume = self.config, self.trainer, self.run_dir.resume_from
        checkpoint = load_weights_and_threads(self.run_dir, config, self.engines, self.world_size)
        self.loaders = get_data_loaders(config, self.device, self.rank, self.world_size)
        batches = len(self.loaders["train"])
        scored, engines_state = self.engines.scored_model, state_to_save(config, self.engines, batches)
        self.handlers = attach_default_handlers(
            config, trainer, self.evaluator, self.loaders, engines_state, self.output_dir, scored
        )
        self._to_save = self.handlers.to_save  # the engines' state and the handlers': what a resume loads
        self.tensorboard = None  # Ignite's TensorboardLogger, with --tensorboard
        if config.tensorboard:
            self.tensorboard = attach_tensorboard(
                trainer, self.evaluator, self.optimizer, self.output_dir / "tb", config.log_interval
            )
        if resume:
            carry_to = self.output_dir if self.rank == 0 else None
            resume_state(resume, checkpoint, self._to_save, self.handlers, config, batches, carry_to)
        view = self._output.view
        if view is not None:  # after the handlers that fill the history, so each epoch's row is whole
            view.history = self.handlers.history
            view.title = f"Training {config.model} in {self.output_dir}"
            if resume:
                view.title += f", resumed from {resume.name} (iteration {trainer.state.iteration})"
            view.attach(trainer)
        if self.rank == 0:  # once data, checkpoint and settings passed every check: a refused run changes nothing
            self.run_dir.save_config(config)
            if config.trackers:  # after the handlers that fill the history: each epoch's row is whole
                history, params = self.handlers.history, storable_config(config)
                self.trackers = attach_trackers(config.trackers, trainer, history, self.output_dir, params)
        plan = applied_threads()
        if plan is not None:
            logger.info(plan.describe())
        logger.info(f"Precision: {self.precision} ({self.precision_reason})")
        self._record = RunRecord(
            config, self.engines, self.handlers, self.output_dir, resume, self._started, self.rank, self.world_size
        )
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: self.write_summary())

    def write_summary(self, **updates: Any) -> None:
        """Bring ``summary.json`` up to date: written when the run starts, after each epoch and at the end;
        ``updates`` are ``RunSummary`` fields (``status``, ``test``, ...)."""
        if self._record is None:
            raise RuntimeError("the run is not set up")
        self._record.update(**updates)

    def run(self) -> TrainResult:
        """Train (or finish training), then score the test split once with the chosen weights.

        A stop during training saves a checkpoint; one after it says where the trained weights are.
        Whatever ends the run, ``summary.json`` says how, and the directory is released.
        """
        try:
            with lines_to(self._output.destination), catching_stop_signals(self._requests):
                return self._run()
        except Stopped:
            raise self._stopped() from None
        except BaseException as exc:
            error = in_one_line(exc, self.config, self.device, self.output_dir)
            if self._record is not None and self._record.summary.status is RunStatus.RUNNING:
                with suppress(OSError):  # the disk may still be full
                    failure = "disk full" if disk_full(exc) else str(said(error, command_line=True))
                    self.write_summary(status=RunStatus.FAILED, failure=failure)
            if error is exc:
                raise
            raise error from None
        finally:
            self.close()

    def _stopped(self) -> TrainingInterrupted:
        """What a stop outside training means, said in one line; the summary records it."""
        weights = None if self._phase is None else self.handlers.best_saved or self.handlers.last_saved
        message = stopped_outside_training(
            self._requests.describe(), self._phase, bool(self.run_dir.resume_from), weights, self.output_dir
        )
        if self._record is not None:
            with suppress(OSError):  # a full disk must not hide the stop
                self.write_summary(status=RunStatus.INTERRUPTED)
        return TrainingInterrupted(message, 128 + self._requests.first, output_dir=self.output_dir)

    def _run(self) -> TrainResult:
        self.write_summary()
        self._requests.check()  # a stop asked for between set-up and run() ends the run before training
        self._train()
        self._phase = RunPhase.RESTORING_BEST  # before a stop noted since training raises here
        with raising(self._requests):
            weights = self._restore_best()
            self._phase = RunPhase.CALIBRATING
            temperature = self._calibrate(weights)
            self._phase = RunPhase.SCORING_TEST
            scored = self._score_test(weights, temperature)
            self._phase = RunPhase.PLOTTING
            self._plot(scored, temperature)
            self._finish_tracking(scored)
            self._phase = RunPhase.SUMMARIZING
            return self._finish(weights, scored)

    def _train(self) -> None:
        """Run the trainer to the last epoch; a stop saves a checkpoint, a non-finite loss ends the run."""
        config, trainer, handlers = self.config, self.trainer, self.handlers
        with stopping_trainer(trainer, self._requests):  # a run that stopped early is finished: scored again only
            if not handlers.stopped_early and (
                trainer.state.epoch < config.epochs or trainer.state.iteration % len(self.loaders["train"])
            ):
                trainer.run(self.loaders["train"], max_epochs=config.epochs)
        pbar = getattr(self._output.bar, "pbar", None)
        if pbar is not None:  # a stop mid-epoch: no bar line left for the message to start on
            pbar.close()
        # The losses are checked every few steps (EpochLossAverage), not each one: before a stop's
        # checkpoint is written, they are checked up to this step, so no checkpoint holds NaN weights.
        nonfinite = handlers.train_loss.stopped_nonfinite or not handlers.train_loss.finite()
        if self._requests and not nonfinite:  # saved while further signals are only noted: one stop, one checkpoint
            error = save_on_stop(self._requests, trainer, self._to_save, handlers.checkpoint, self.output_dir)
            self.write_summary(status=RunStatus.INTERRUPTED, interrupted_checkpoint=str(error.checkpoint))
            raise error
        if nonfinite:
            self.write_summary(status=RunStatus.NON_FINITE)
            raise non_finite_loss(trainer, handlers.last_saved)
        logger.info("Training completed")
        if handlers.stopped_early:
            logger.info(f"Early stopping: validation {config.monitor} did not improve for {config.patience} epochs")

    def evaluate(
        self, loader: Any, confusion_matrix: bool = False, attach: Callable[[Engine], object] | None = None
    ) -> dict[str, Any]:
        """Metrics of the model as it is now on ``loader``, with a fresh evaluator (no handlers fire but
        ``attach``'s, e.g. a ``PredictionCollector``'s)."""
        evaluator = create_evaluator(self.model, self.device, self.precision, confusion_matrix, tta=self.config.tta)
        if attach is not None:
            attach(evaluator)
        evaluator.logger.setLevel(logging.CRITICAL)  # an error or a stop signal here is reported in one line
        return dict(evaluator.run(loader).metrics)

    def _restore_best(self) -> str:
        """Load the best-validation weights (when asked and kept); return which weights the model holds."""
        best_path = self.handlers.best_saved
        if not (best_path and self.config.restore_best):
            if self.ema is not None:  # the last averaged weights are the ones scored
                unwrap(self.model).load_state_dict(self.ema.ema_model.state_dict())
            return f"last (epoch {self.trainer.state.epoch}{', averaged' if self.ema is not None else ''})"
        if self.rank == 0:  # rank 0 wrote it; the others may be on machines that cannot read it
            unwrap(self.model).load_state_dict(load_checkpoint(best_path, map_location=self.device))
        broadcast_weights(unwrap(self.model))
        best = self.handlers.history.best(f"val_{self.config.monitor}")
        assert best is not None  # a best model was saved, so its epoch's validation row is in the history
        return f"best (epoch {best['epoch']})"

    def _calibrate(self, scored: str) -> float | None:
        """Fit the temperature of the weights the model holds on the validation split (Guo et al. 2017), keep
        it in ``calibration.json`` and say how calibrated the probabilities are, before and after; None (and
        nothing fitted) without a validation split."""
        loader = self.loaders.get("validation")
        if loader is None:
            return None
        collector = PredictionCollector()
        self.evaluate(loader, attach=collector.attach)
        probabilities, labels = collector.of_split(loader)
        temperature = fit_temperature(probabilities, labels)
        report = calibration_report(probabilities, labels, temperature)
        best = self.handlers.best_saved  # the file that holds the scored weights, when one does
        holder = best.name if best is not None and scored.startswith("best") else None
        if self.rank == 0:
            write_calibration(self.output_dir, temperature, holder, scored, report)
        self.calibration = {"temperature": temperature, "fitted_on": "validation", "validation": report}
        logger.info(calibration_line("validation", report, temperature))
        return temperature

    def _score_test(self, scored: str, temperature: float | None) -> Scored:
        """Test metrics, confusion matrix, calibration and probabilities of the model as it is (none when the
        test split is kept out)."""
        if not self.config.score_test:
            return Scored({}, None, None)
        collector = PredictionCollector()
        loader = self.loaders["test"]
        test = self.evaluate(loader, confusion_matrix=True, attach=collector.attach)
        confusion = test.pop("confusion").cpu()
        self.kept_predictions = collector.save(self.output_dir / PREDICTIONS_FILE, loader)
        probabilities, labels = collector.of_split(loader)
        test["calibration"] = calibration_report(probabilities, labels, temperature)
        logger.info(format_metrics(f"Test, {scored} weights", test))
        logger.info(calibration_line("test", test["calibration"], temperature))
        logger.info(per_class_table(per_class_accuracy(confusion), per_class_counts(confusion)))
        return Scored(test, confusion, (probabilities, labels))

    def _plot(self, scored: Scored, temperature: float | None) -> None:
        last, best = self.handlers.last_saved, self.handlers.best_saved
        assert last is not None  # training completed (at least one epoch), and each epoch saves a checkpoint
        logger.info(f"Checkpoints in {self.output_dir}: {last.name}" + (f", {best.name}" if best else ""))
        if not (self.config.plots and self.rank == 0):
            return
        history, out, confusion = self.handlers.history, self.output_dir, scored.confusion
        plotted = plot_curves(history, out / "curves.png") is not None
        if plotted and confusion is not None and scored.probabilities is not None:
            plot_confusion(confusion, out / "confusion.png")
            plot_reliability(*scored.probabilities, temperature, out / "reliability.png")
        logger.info(
            f"Plots: curves.png{', confusion.png, reliability.png' if confusion is not None else ''}"
            if plotted
            else "Plots skipped: matplotlib is not installed (pip install 'fmnist-ignite[plot]')"
        )

    def _finish_tracking(self, scored: Scored) -> None:
        """Give each tracked run (``--tracker``) the test accuracy with its 95% Wilson interval, the test loss
        and ECE, the best checkpoint and the plots, and end it as finished."""
        if not self.trackers:
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
        out, best = self.output_dir, self.handlers.best_saved
        files = [path for path in (best, *(out / name for name in PLOTS)) if path is not None and path.is_file()]
        for tracker in self.trackers:
            if metrics:
                tracker.log_metrics(metrics, self.trainer.state.epoch)
            tracker.log_files(files)
            tracker.close(finished=True)
        self.trackers = []

    def _finish(self, weights: str, scored: Scored) -> TrainResult:
        """Write the final summary and return the result."""
        target = self.handlers.target
        if target is not None and not target.reached:
            best = max((row.get("val_accuracy", 0.0) for row in self.handlers.history.epochs), default=0.0)
            epochs = self.trainer.state.epoch
            logger.info(
                f"Target not reached: validation accuracy {target.target:.2%} not reached in {epochs} epochs "
                f"(best {best:.2%})"
            )
        test, confusion = scored.test, scored.confusion
        classes = per_class_accuracy(confusion) if confusion is not None else {}
        stopped_early = self.trainer.state.epoch < self.config.epochs
        intervals = {"per_class_ci95": per_class_intervals(confusion)} if confusion is not None else {}
        self.write_summary(
            status=RunStatus.COMPLETED,
            stopped_early=stopped_early,
            scored_weights=weights,
            calibration=self.calibration,
            target=target.summary() if target is not None else None,
            test={**test, **test_extras(test, self.kept_predictions), "per_class_accuracy": classes, **intervals}
            if self.config.score_test
            else None,
        )
        report_at_finish(self)  # report.html, from the files just written
        return TrainResult(
            history=list(self.handlers.history.epochs),
            test_metrics=test,
            scored_weights=weights,
            output_dir=self.output_dir,
            epochs_run=self.trainer.state.epoch,
            stopped_early=stopped_early,
            best_checkpoint=self.handlers.best_saved,
            last_checkpoint=self.handlers.last_saved,
            per_class_accuracy=classes,
            confusion=confusion,
            model=unwrap(self.model),
            config=self.config,
        )

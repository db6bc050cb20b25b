"""``Training``: one process's part of a run, composed from the engines and the handlers.

It also makes the run safe to interrupt: checkpoints every epoch, a checkpoint on Ctrl-C or SIGTERM,
a stop on a NaN loss, and an exact resume (same batches, same weights) from any of those checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import suppress
from enum import StrEnum
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.device import out_of_memory
from fmnist_ignite.core.engines import create_evaluator
from fmnist_ignite.core.threads import applied_threads
from fmnist_ignite.data.loaders import get_data_loaders
from fmnist_ignite.errors import TrainingInterrupted
from fmnist_ignite.files.durable import disk_full
from fmnist_ignite.files.saved_config import storable_config
from fmnist_ignite.files.summary import RunStatus
from fmnist_ignite.handlers.loss_logging import Log
from fmnist_ignite.handlers.standard import attach_default_handlers
from fmnist_ignite.handlers.tensorboard import attach_tensorboard, require_tensorboard
from fmnist_ignite.handlers.tracking import Tracker, attach_trackers, require_trackers
from fmnist_ignite.run.engines import build_engines
from fmnist_ignite.run.failures import in_one_line, non_finite_loss, out_of_memory_error, stopped_outside_training
from fmnist_ignite.run.finish import calibrate, finish, finish_tracking, plot, restore_best, score_test
from fmnist_ignite.run.output import route_output
from fmnist_ignite.run.record import RunRecord
from fmnist_ignite.run.result import TrainResult
from fmnist_ignite.run.resume import load_weights_and_threads, resume_state, state_to_save
from fmnist_ignite.run.rundir import RunDirectory, claim_for_process
from fmnist_ignite.run.signals import (
    Stopped,
    StopRequests,
    catching_stop_signals,
    raising,
    save_on_stop,
    stopping_trainer,
)


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
    ``log``, ...), so code can attach more handlers before ``run()``.

    Use it as a context manager (``with Training(config) as training: ...``): the directory is released on
    leaving, whether or not the run ran. ``stop()`` stops it from any thread, as SIGTERM would.

    Args:
        config: the run's settings (validated here).
        log: where the run's text lines go; None: printed (above the progress bar), and in a notebook kept by
            the live view, shown folded at the end.
        model: a model of your own (any module mapping N x 1 x 28 x 28 to N x 10 logits) instead of the
            built-in ``config.model``; the run records it as "custom".
        run_dir: the output directory as the launching process claimed it (the processes it spawned do not
            claim it again); None: this process claims it.
    """

    def __init__(
        self,
        config: Config,
        log: Log | None = None,
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
        self._output = route_output(config, self.trainer, self.rank, log)
        self.log = self._output.log
        self._requests = StopRequests()
        self._phase: RunPhase | None = None  # what the run does once training is over, for a stop's message
        self._record: RunRecord | None = None  # summary.json, once the run is set up
        self.kept_predictions: dict = {}  # where the test predictions went, once scored
        self.calibration: dict | None = None  # the temperature fitted on validation, once fitted
        self.trackers: list[Tracker] = []  # the MLflow and W&B runs (--tracker) rank 0 writes, while open
        self.run_dir = claim_for_process(config, run_dir, self.rank, self.world_size, self.log)
        self.output_dir = self.run_dir.path
        try:
            with catching_stop_signals(self._requests, lambda line: None), raising(self._requests):
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
        self._to_save = state_to_save(config, self.engines, batches)
        scored = self.engines.scored_model
        self.handlers = attach_default_handlers(
            config, trainer, self.evaluator, self.loaders, self._to_save, self.output_dir, self.log, scored
        )
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
                self.trackers = attach_trackers(config.trackers, trainer, history, self.output_dir, params, self.log)
        plan = applied_threads()
        if plan is not None:
            self.log(plan.describe())
        self.log(f"Precision: {self.precision} ({self.precision_reason})")
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
            with catching_stop_signals(self._requests, self.log):
                return self._run()
        except Stopped:
            raise self._stopped() from None
        except BaseException as exc:
            error = in_one_line(exc, self.config, self.device, self.output_dir)
            if self._record is not None and self._record.summary.status is RunStatus.RUNNING:
                with suppress(OSError):  # the disk may still be full
                    self.write_summary(status=RunStatus.FAILED, failure="disk full" if disk_full(exc) else str(error))
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
            weights = restore_best(self)
            self._phase = RunPhase.CALIBRATING
            temperature = calibrate(self, weights)
            self._phase = RunPhase.SCORING_TEST
            scored = score_test(self, weights, temperature)
            self._phase = RunPhase.PLOTTING
            plot(self, scored, temperature)
            finish_tracking(self, scored)
            self._phase = RunPhase.SUMMARIZING
            return finish(self, weights, scored)

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
        self.log("Training completed")
        if handlers.stopped_early:
            self.log(f"Early stopping: validation {config.monitor} did not improve for {config.patience} epochs")

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

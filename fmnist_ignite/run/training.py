"""``train(config)``: the tutorial's run done right, composed from the engines and handlers.

It also makes the run safe to interrupt: checkpoints every epoch, a checkpoint on Ctrl-C or SIGTERM,
a stop on a NaN loss, and an exact resume (same batches, same weights) from any of those checkpoints.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from contextlib import suppress
from enum import StrEnum

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler
from ignite.utils import manual_seed
from tqdm import tqdm

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.device import choose_precision, out_of_memory, resolve_device
from fmnist_ignite.core.distributed import unwrap
from fmnist_ignite.core.engines import create_evaluator, create_trainer
from fmnist_ignite.core.models import build_model, check_model_output
from fmnist_ignite.core.optim import make_optimizer
from fmnist_ignite.core.threads import applied_threads, apply_threads, plan_threads
from fmnist_ignite.data.loaders import get_data_loaders
from fmnist_ignite.errors import CouldNotWrite, FmnistError, NonFiniteLoss, TrainingInterrupted
from fmnist_ignite.files.checkpoints import load_checkpoint
from fmnist_ignite.files.durable import disk_full
from fmnist_ignite.files.saved_config import SavedConfig
from fmnist_ignite.files.summary import SUMMARY_FILE, RunStatus, RunSummary, write_summary
from fmnist_ignite.handlers.loss_logging import Log
from fmnist_ignite.handlers.progress import attach_progress_bar
from fmnist_ignite.handlers.schedule import attach_one_cycle_lr
from fmnist_ignite.handlers.standard import attach_default_handlers
from fmnist_ignite.handlers.tensorboard import attach_tensorboard, require_tensorboard
from fmnist_ignite.run.checkpoints import (
    RandomState,
    ThreadCount,
    carry_best_model,
    check_epochs_left,
    check_schedule_fits,
    kept_threads,
    must_fit,
    restore,
)
from fmnist_ignite.run.finish import finish, plot, restore_best, score_test
from fmnist_ignite.run.result import TrainResult
from fmnist_ignite.run.rundir import RunDirectory, claim_run_directory, find_latest_checkpoint
from fmnist_ignite.run.signals import (
    Stopped,
    StopRequests,
    catching_stop_signals,
    raising,
    save_on_stop,
    stopping_trainer,
)
from fmnist_ignite.run.summary import best_validation, versions
from fmnist_ignite.ui.display import choose_display


class RunPhase(StrEnum):
    """What a run does once training is over, in the words a stop's message says it with."""

    RESTORING_BEST = "restoring the best weights"
    SCORING_TEST = "scoring the test set"
    PLOTTING = "drawing the plots"
    SUMMARIZING = "writing the summary"


def quiet_log(line: str) -> None:
    """A ``Log`` that says nothing (the processes but rank 0's)."""


class Training:
    """One run, set up: output directory claimed, model, engines, loaders and the standard handlers
    attached, resumed if asked. Its parts are attributes, so code can attach more handlers before ``run()``.

    Use it as a context manager (``with Training(config) as training: ...``): the directory is released on
    leaving, whether or not the run ran. ``stop()`` stops it from any thread, as SIGTERM would.
    """

    def __init__(
        self,
        config: Config,
        log: Log | None = None,
        model: torch.nn.Module | None = None,
        run_dir: RunDirectory | None = None,
    ):
        """``model``: a model of your own (any module mapping N x 1 x 28 x 28 to N x 10 logits) instead
        of the built-in ``config.model``; the run records it as "custom". ``run_dir``: the output directory
        as the launching process claimed it (the processes it spawned do not claim it again)."""
        self.started = time.perf_counter()
        config = config.replace(model="custom") if model is not None else config
        config.validate()
        if config.tensorboard:
            require_tensorboard()
        self.config = config
        self.rank, self.world_size = idist.get_rank(), idist.get_world_size()
        self.device = device = idist.device() if self.world_size > 1 else resolve_device(config.device)
        manual_seed(config.seed)
        model = (model if model is not None else build_model(config.model, config.dropout)).to(device)
        check_model_output(model, device)
        self.model = model
        if self.world_size > 1:
            self.model = model = idist.auto_model(model)  # DistributedDataParallel: gradients all-reduced
        self.optimizer = optimizer = idist.auto_optim(make_optimizer(config, model))
        self.precision, self.precision_reason = choose_precision(config.precision, device)
        self.trainer = trainer = create_trainer(model, optimizer, device, config.label_smoothing, self.precision)
        self.ema = None  # Ignite's EMAHandler with --ema: its average of the weights is validated, kept and tested
        if config.ema:
            self.ema = EMAHandler(model, momentum=config.ema)
            self.ema.attach(trainer, name="ema_momentum", event=Events.ITERATION_COMPLETED)
        self.scored_model = self.ema.ema_model if self.ema else model  # what validation and test score
        self.evaluator = create_evaluator(self.scored_model, device, self.precision, tta=config.tta)
        self.display = choose_display(config.display) if self.rank == 0 else "plain"
        self.bar = bar = attach_progress_bar(trainer, enabled=config.progress and self.display == "terminal")
        if self.rank != 0:  # only rank 0 prints
            log = quiet_log
        self.view = None  # the live view in a notebook (display "notebook"), attached with the handlers
        if self.display == "notebook":
            from fmnist_ignite.handlers.history import MetricsHistory
            from fmnist_ignite.handlers.notebook import NotebookView, tee

            self.view = NotebookView(MetricsHistory(), f"Training {config.model}", config.monitor, config.progress)
            log = tee(log, self.view.log) if log else self.view.log  # the text lines: kept, shown folded at the end
        self.log = log = log or (tqdm.write if bar else print)
        self.requests = StopRequests()
        self.phase: RunPhase | None = None  # what the run does once training is over, for a stop's message
        self.summary: RunSummary | None = None  # summary.json's contents, once the run is set up
        self.kept_predictions: dict = {}  # where the test predictions went, once scored
        self.run_dir = self._claim_output_dir(run_dir, log)
        self.output_dir = self.run_dir.path
        try:
            with catching_stop_signals(self.requests, lambda line: None), raising(self.requests):
                self._set_up()
        except BaseException as exc:
            self.close()
            if isinstance(exc, Stopped):
                raise self._stopped() from None
            if out_of_memory(exc):
                raise self._out_of_memory(exc) from None
            raise

    def __enter__(self) -> Training:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Let another run have the output directory (``run()`` does it when it ends)."""
        self.run_dir.release()
        if getattr(self, "view", None) is not None:  # the notebook view's last state: how the run ended
            self.view.close(self.summary)

    def stop(self) -> None:
        """Stop the run as SIGTERM would: a checkpoint after the current batch, then ``TrainingInterrupted``
        (resumable). Thread-safe: call it from any thread, e.g. while ``run()`` trains in another."""
        self.requests.stop()

    def _set_up(self) -> None:
        """Read the checkpoint to resume from, load the data, attach the handlers and restore the state."""
        config, trainer, optimizer, log = self.config, self.trainer, self.optimizer, self.log
        resume, checkpoint = self.run_dir.resume_from, self.run_dir.checkpoint
        if resume and checkpoint is None:  # another process found it: every process reads it itself
            checkpoint = load_checkpoint(resume, map_location="cpu")
        if checkpoint is not None:
            with must_fit(resume):  # before the data is loaded: a wrong file fails at once
                unwrap(self.model).load_state_dict(checkpoint["model"])
        kept = kept_threads(checkpoint) if checkpoint is not None else None
        if kept or config.threads or applied_threads() is None:  # a resume computes as its run did
            processes = idist.get_nproc_per_node() if self.world_size > 1 else 1
            apply_threads(plan_threads(config.threads, processes, kept))
        self.loaders = get_data_loaders(config, self.device, self.rank, self.world_size)

        self.to_save = {
            "model": self.model,
            "optimizer": optimizer,
            "trainer": trainer,
            "random_state": RandomState(),
            "threads": ThreadCount(),
            "config": SavedConfig(config),
        }
        if self.ema is not None:
            self.to_save["ema_model"] = self.ema.ema_model
        if config.scheduler == "onecycle":
            self.to_save["lr_scheduler"] = attach_one_cycle_lr(
                trainer, optimizer, config.lr, config.epochs * len(self.loaders["train"])
            )
        self.handlers = attach_default_handlers(
            config, trainer, self.evaluator, self.loaders, self.to_save, self.output_dir, log, self.scored_model
        )
        if self.view is not None:  # after the handlers that fill the history, so each epoch's row is whole
            self.view.history = self.handlers.history
            self.view.title = f"Training {config.model} in {self.output_dir}"
            self.view.attach(trainer)
        self.tensorboard = None  # Ignite's TensorboardLogger, with --tensorboard
        if config.tensorboard:
            self.tensorboard = attach_tensorboard(
                trainer, self.evaluator, optimizer, self.output_dir / "tb", config.log_interval
            )
        if resume:
            to_load = {k: v for k, v in self.to_save.items() if k != "config"}
            restore(resume, checkpoint, {**to_load, "checkpointer": self.handlers.checkpoint})
            check_epochs_left(config, trainer, resume)
            check_schedule_fits(self.to_save.get("lr_scheduler"), config.epochs, len(self.loaders["train"]), resume)
            if self.rank == 0 and self.handlers.best_checkpoint is not None:
                carry_best_model(self.handlers.best_checkpoint, resume.parent, self.output_dir)
        if self.rank == 0:  # once data, checkpoint and settings passed every check: a refused run changes nothing
            self.run_dir.save_config(config)
        plan = applied_threads()
        if plan is not None:
            self.log(plan.describe())
        self.log(f"Precision: {self.precision} ({self.precision_reason})")
        module = type(unwrap(self.model))
        self.summary = RunSummary(
            processes=self.world_size,
            config=dataclasses.asdict(config),
            versions=versions(),
            device=str(self.device),
            model=f"{config.model} ({module.__module__}.{module.__qualname__})",
            precision={"used": self.precision, "why": self.precision_reason},
            threads=torch.get_num_threads(),
            seed=config.seed,
            resumed_from=str(resume) if resume else None,
            output_dir=str(self.output_dir),
        )
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: self.write_summary())

    def _claim_output_dir(self, claimed: RunDirectory | None, log: Log) -> RunDirectory:
        """Rank 0 claims the output directory (unless its launcher did) and finds the checkpoint; every
        process gets its answer."""
        run_dir = claimed
        if run_dir is None and self.rank == 0:
            run_dir = claim_run_directory(self.config, log)
        if self.world_size == 1:
            return run_dir
        answer = [(run_dir.path, run_dir.resume_from) if self.rank == 0 else None]
        torch.distributed.broadcast_object_list(answer, src=0)
        return run_dir or RunDirectory(*answer[0])

    def write_summary(self, **updates: object) -> None:
        """Bring ``summary.json`` up to date: written when the run starts, after each epoch and at the end;
        ``updates`` are ``RunSummary`` fields (``status``, ``test``, ...)."""
        assert self.summary is not None, "the run is not set up"
        history = self.handlers.history
        best = history.best(f"val_{self.config.monitor}")
        state = self.trainer.state
        self.summary.epochs_done = state.epoch - (
            1 if state.epoch_length and state.iteration % state.epoch_length else 0
        )
        self.summary.best_epoch = best["epoch"] if best else None
        self.summary.best_validation = best_validation(best, self.config.monitor)
        self.summary.checkpoints = {
            kind: str(path) if path else None
            for kind, path in (("last", self.handlers.last_saved), ("best", self.handlers.best_saved))
        }
        self.summary.wall_time_s = round(time.perf_counter() - self.started, 3)
        self.summary.history = history.epochs
        for name, value in updates.items():
            setattr(self.summary, name, value)
        if self.rank == 0:
            write_summary(self.output_dir / SUMMARY_FILE, self.summary)

    def run(self) -> TrainResult:
        """Train (or finish training), then score the test split once with the chosen weights.

        A stop during training saves a checkpoint; one after it says where the trained weights are.
        Whatever ends the run, ``summary.json`` says how, and the directory is released.
        """
        try:
            with catching_stop_signals(self.requests, self.log):
                return self._run()
        except Stopped:
            raise self._stopped() from None
        except BaseException as exc:
            error = (
                self._could_not_write(exc)
                if isinstance(exc, OSError)
                else self._out_of_memory(exc)
                if out_of_memory(exc)
                else exc
            )
            if self.summary is not None and self.summary.status is RunStatus.RUNNING:
                with suppress(OSError):  # the disk may still be full
                    self.write_summary(status=RunStatus.FAILED, failure="disk full" if disk_full(exc) else str(error))
            if error is exc:
                raise
            raise error from None
        finally:
            self.close()

    def _out_of_memory(self, exc: BaseException) -> FmnistError:
        """Memory ran out (a batch too large for this machine): one line naming the settings that size it."""
        config = self.config
        return FmnistError(
            f"out of memory on {self.device} ({str(exc).splitlines()[0][:120]}): lower --batch-size "
            f"({config.batch_size}) or --eval-batch-size ({config.eval_batch_size}), or use a larger machine"
        )

    def _could_not_write(self, exc: OSError) -> CouldNotWrite:
        """A file the run could not write (a full disk, a directory gone), said in one line with what is safe."""
        latest = find_latest_checkpoint(self.output_dir)
        then = (
            f"the checkpoints already there are intact (newest: {latest.name}): free some space, then continue "
            "with --resume auto"
            if latest
            else "no training checkpoint was kept: free some space, then start again"
        )
        return CouldNotWrite(f"could not write {exc.filename or self.output_dir}: {exc.strerror or exc}; {then}")

    def _stopped(self) -> TrainingInterrupted:
        """What a stop outside training means, said in one line; the summary records it."""
        said = self.requests.describe()
        if self.phase is None:
            safe = f"the checkpoints in {self.output_dir} are as they were" if self.run_dir.resume_from else ""
            message = f"{said} before training started; " + (safe or "nothing was trained")
        else:
            weights = self.handlers.best_saved or self.handlers.last_saved
            message = (
                f"{said} after training, while {self.phase}: the trained weights are in "
                f"{weights}; score them with: fmnist-ignite evaluate {weights}"
            )
        if self.summary is not None:
            with suppress(OSError):  # a full disk must not hide the stop
                self.write_summary(status=RunStatus.INTERRUPTED)
        return TrainingInterrupted(message, 128 + self.requests.first, output_dir=self.output_dir)

    def _run(self) -> TrainResult:
        self.write_summary()
        self.requests.check()  # a stop asked for between set-up and run() ends the run before training
        self._train()
        self.phase = RunPhase.RESTORING_BEST  # before a stop noted since training raises here
        with raising(self.requests):
            scored = restore_best(self)
            self.phase = RunPhase.SCORING_TEST
            test, confusion = score_test(self, scored)
            self.phase = RunPhase.PLOTTING
            plot(self, confusion)
            self.phase = RunPhase.SUMMARIZING
            return finish(self, scored, test, confusion)

    def _train(self) -> None:
        """Run the trainer to the last epoch; a stop saves a checkpoint, a non-finite loss ends the run."""
        config, trainer, handlers = self.config, self.trainer, self.handlers
        stopped_early = handlers.stopped_early
        with stopping_trainer(trainer, self.requests):  # a run that stopped early is finished: scored again only
            if not stopped_early and (
                trainer.state.epoch < config.epochs or trainer.state.iteration % len(self.loaders["train"])
            ):
                trainer.run(self.loaders["train"], max_epochs=config.epochs)
        if self.bar is not None and getattr(self.bar, "pbar", None) is not None:  # a stop mid-epoch: no bar line
            self.bar.pbar.close()  # left for the message to start on
        # The losses are checked every few steps (EpochLossAverage), not each one: before a stop's
        # checkpoint is written, they are checked up to this step, so no checkpoint holds NaN weights.
        average = handlers.train_loss
        nonfinite = average.stopped_nonfinite or not average.finite()
        if (
            self.requests and not nonfinite
        ):  # saved while further signals are still only noted: one stop, one checkpoint
            error = save_on_stop(self.requests, trainer, self.to_save, handlers.checkpoint, self.output_dir)
            self.write_summary(status=RunStatus.INTERRUPTED, interrupted_checkpoint=str(error.checkpoint))
            raise error
        if nonfinite:
            loss = float("nan") if trainer.state.output is None else float(trainer.state.output)
            last = self.handlers.last_saved
            self.write_summary(status=RunStatus.NON_FINITE)
            raise NonFiniteLoss(
                f"training stopped at epoch {trainer.state.epoch}, iteration {trainer.state.iteration}: the "
                f"loss became {loss if not math.isfinite(loss) else 'nan or inf (in this or another process)'} "
                "at or before it (try a smaller --lr); "
                + (f"the last good checkpoint is {last}" if last else "no epoch finished, so no checkpoint was kept")
            )
        self.log("Training completed")
        if handlers.stopped_early:
            self.log(f"Early stopping: validation {config.monitor} did not improve for {config.patience} epochs")

    def evaluate(self, loader, confusion_matrix: bool = False, attach: Callable[[Engine], object] | None = None):
        """Metrics of the model as it is now on ``loader``, with a fresh evaluator (no handlers fire but
        ``attach``'s, e.g. a ``PredictionCollector``'s)."""
        evaluator = create_evaluator(self.model, self.device, self.precision, confusion_matrix, tta=self.config.tta)
        if attach is not None:
            attach(evaluator)
        evaluator.logger.setLevel(logging.CRITICAL)  # an error or a stop signal here is reported in one line
        return dict(evaluator.run(loader).metrics)

"""Time to a target accuracy (``--target-accuracy``): stop the run once validation reaches it and say when,
as MLPerf's "time to target quality" does."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ignite.base import Serializable
from ignite.engine import Engine, Events

from fmnist_ignite.handlers.history import MetricsHistory

logger = logging.getLogger(__name__)


class TargetAccuracy(Serializable):
    """Stops the trainer at the end of the first epoch whose validation accuracy reaches ``target``, and
    keeps when: the epoch, the seconds of training to it (the epochs' times summed, validation included,
    so a resumed run counts its earlier epochs), and the seconds since this process set the run up.

    Saved with the checkpoints: a resumed run that had reached its target does not train on. The line saying
    it was reached is this module's logger's.

    Args:
        target: the validation accuracy to reach, a fraction (0.9 for 90%).
        history: the run's per-epoch history, whose rows it reads (``val_accuracy``, ``epoch_time_s``).
        started: the ``time.perf_counter()`` the run's set-up began at.

    Attributes:
        epoch: the epoch that reached it; None while not reached.
        training_s: the seconds of training to that epoch's end.
        process_s: the seconds from the run's set-up to then (this process's; None if an earlier one's).
    """

    def __init__(self, target: float, history: MetricsHistory, started: float) -> None:
        self.target, self.history, self.started = target, history, started
        self.epoch: int | None = None
        self.training_s: float | None = None
        self.process_s: float | None = None

    @property
    def reached(self) -> bool:
        return self.epoch is not None

    def __call__(self, trainer: Engine) -> None:
        row = self.history.epochs[-1] if self.history.epochs else {}
        if self.reached or row.get("epoch") != trainer.state.epoch or row.get("val_accuracy", 0.0) < self.target:
            return
        self.epoch = trainer.state.epoch
        self.training_s = sum(r.get("epoch_time_s", 0.0) for r in self.history.epochs)
        self.process_s = time.perf_counter() - self.started
        logger.info(
            f"Target reached: validation accuracy {row['val_accuracy']:.2%} >= {self.target:.2%} at epoch "
            f"{self.epoch}, after {self.training_s:.1f} s of training ({self.process_s:.1f} s since the run "
            "started); stopping"
        )
        trainer.terminate()

    def summary(self) -> dict[str, Any]:
        """The ``target`` block of ``summary.json``."""
        return {
            "accuracy": self.target,
            "reached": self.reached,
            "epoch": self.epoch,
            "training_s": self.training_s,
            "process_s": self.process_s,
        }

    _state_dict_all_req_keys = ("epoch", "training_s")

    def state_dict(self) -> OrderedDict:
        return OrderedDict(epoch=self.epoch, training_s=self.training_s)

    def load_state_dict(self, state_dict: Mapping) -> None:
        super().load_state_dict(state_dict)  # Ignite's check of the keys
        self.epoch, self.training_s = state_dict["epoch"], state_dict["training_s"]
        self.process_s = None  # an earlier process's


def attach_target_accuracy(
    trainer: Engine, history: MetricsHistory, target: float, started: float | None = None
) -> TargetAccuracy:
    """Stop ``trainer`` once validation accuracy reaches ``target``, and keep when (``TargetAccuracy``).

    Attach it after the handlers that fill the epoch's row of ``history`` (validation, epoch stats) and
    before the checkpointing, so the epoch that reached the target is saved.

    Args:
        trainer: the trainer to stop.
        history: the run's per-epoch history.
        target: the validation accuracy to reach, a fraction.
        started: the ``time.perf_counter()`` the run began at; None: now.

    Returns:
        The handler, to read when the target was reached and to checkpoint.
    """
    handler = TargetAccuracy(target, history, time.perf_counter() if started is None else started)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, handler)
    return handler

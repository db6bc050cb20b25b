"""Each epoch's mean training loss (checked for NaN as it goes), learning rate and wall time."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import cast

import ignite.distributed as idist
import torch
from ignite.base import Serializable
from ignite.engine import Engine, Events

from fmnist_ignite.core.distributed import agreed_max
from fmnist_ignite.handlers.history import MetricsHistory

NAN_CHECK_EVERY = 50  # iterations between checks of the running loss sum for a NaN or an infinity


class EpochLossAverage(Serializable):
    """The mean training loss over the epoch so far (Keras' running average), kept as a tensor sum.

    Written by hand rather than with Ignite's ``Average`` because that one resets whenever an epoch
    starts, also when a run resumes in the middle of it; this one's state is checkpointed instead.

    With ``check_every`` it also stops the trainer on a non-finite loss, in place of a per-step
    ``TerminateOnNan``: a sum of losses is non-finite as soon as one of them is, so checking the sum
    every ``check_every`` iterations and at each epoch's last one (before the epoch's handlers run:
    evaluation, checkpoints) misses no NaN and never lets an epoch-end checkpoint hold NaN weights;
    a stop's checkpoint asks ``finite()`` first. Over several processes the check is agreed (one
    all-reduce per check, not per step), so all stop at the same iteration.
    """

    def __init__(self, check_every: int | None = None, params: list[torch.Tensor] | None = None) -> None:
        self.total, self.count = torch.zeros(()), 0
        self.check_every = check_every
        self.params = params or []  # checked with the losses: a finite loss can still give a NaN update
        self.stopped_nonfinite = False  # the check found a non-finite loss and terminated the trainer

    def attach(self, trainer: Engine) -> EpochLossAverage:
        trainer.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._add)
        return self

    def _start_epoch(self, engine: Engine) -> None:
        assert engine.state.epoch_length is not None  # set by Engine.run: this library's loaders have a length
        if engine.state.iteration % engine.state.epoch_length == 0:  # not a resume mid-epoch
            self.total, self.count = torch.zeros(()), 0

    def _add(self, engine: Engine) -> None:
        loss = cast(torch.Tensor, engine.state.output).detach()  # the loss: Ignite annotates output as int | None
        if self.total.device != loss.device:  # the first batch of an epoch: keep the sum where the loss is
            self.total = self.total.to(loss.device)
        self.total += loss
        self.count += 1
        iteration, epoch_length = engine.state.iteration, engine.state.epoch_length
        assert epoch_length is not None  # _start_epoch needed it at this epoch's start
        due = self.check_every and (iteration % self.check_every == 0 or iteration % epoch_length == 0)
        if due and not self.finite():
            self.stopped_nonfinite = True
            engine.terminate()

    def finite(self) -> bool:
        """Whether every loss summed this epoch, and the weights now, are finite, in every process (all
        must ask together)."""
        sums = [self.total.detach().float().cpu(), *(p.detach().sum().float().cpu() for p in self.params)]
        return not agreed_max(int(not bool(torch.isfinite(torch.stack(sums)).all())))

    @property
    def value(self) -> float:
        """The mean over all processes' batches (every process must ask, as at EPOCH_COMPLETED)."""
        total: torch.Tensor | float = self.total  # all_reduce gives a tensor or a number
        count: torch.Tensor | float = torch.tensor(float(self.count))
        if idist.get_world_size() > 1:
            total, count = idist.all_reduce(self.total.clone()), idist.all_reduce(count)
        return float(total) / max(float(count), 1.0)

    _state_dict_all_req_keys = ("total", "count")

    def state_dict(self) -> OrderedDict:
        return OrderedDict(total=self.total.cpu(), count=self.count)

    def load_state_dict(self, state_dict: Mapping) -> None:
        super().load_state_dict(state_dict)  # Ignite's check of the keys
        self.total, self.count = state_dict["total"], state_dict["count"]


def attach_epoch_stats(
    trainer: Engine, history: MetricsHistory, optimizer: torch.optim.Optimizer, nan_check_every: int | None = None
) -> EpochLossAverage:
    """Record each epoch's mean training loss, learning rate and wall time in ``history``.

    Args:
        trainer: the trainer whose epochs it records.
        history: where the rows go (``train_loss``, ``lr`` and ``epoch_time_s``).
        optimizer: the optimizer whose learning rate it records (and whose parameters the NaN check reads).
        nan_check_every: with it, also stop the trainer on a non-finite loss or weights, checked every this
            many iterations and at each epoch's end (``EpochLossAverage``); None: no check.

    Returns:
        The loss average, which a checkpoint should save for an exact resume mid-epoch.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import MetricsHistory, Net, attach_epoch_stats
        >>> model = Net()
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> trainer = Engine(lambda engine, batch: torch.tensor(float(batch)))
        >>> history = MetricsHistory()
        >>> average = attach_epoch_stats(trainer, history, optimizer)
        >>> _ = trainer.run([1, 2, 3], max_epochs=1)
        >>> history.epochs[0]["train_loss"], history.epochs[0]["lr"]
        (2.0, 0.1)
    """
    params = [param for group in optimizer.param_groups for param in group["params"]]
    average = EpochLossAverage(nan_check_every, params).attach(trainer)

    def record(engine: Engine) -> None:
        epoch_time_s = engine.state.times[Events.EPOCH_COMPLETED.name]
        assert epoch_time_s is not None  # Ignite sets it before it fires EPOCH_COMPLETED
        history.record(
            engine.state.epoch,
            train_loss=average.value,
            lr=optimizer.param_groups[0]["lr"],
            epoch_time_s=epoch_time_s,
        )

    trainer.add_event_handler(Events.EPOCH_COMPLETED, record)
    return average

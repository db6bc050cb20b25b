"""The learning-rate schedule: one-cycle, stepped each iteration."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events
from ignite.handlers import (
    LRScheduler,
)


def attach_one_cycle_lr(
    trainer: Engine, optimizer: torch.optim.Optimizer, max_lr: float, total_steps: int
) -> LRScheduler:
    """One-cycle learning rate: up to ``max_lr`` over the first quarter of the steps, then annealed.

    Ignite's ``LRScheduler`` around torch's ``OneCycleLR``, stepped at each iteration start.

    Args:
        trainer: the trainer whose iterations step it.
        optimizer: the optimizer whose learning rate it sets.
        max_lr: the peak learning rate.
        total_steps: the iterations of the whole run (epochs times batches an epoch).

    Returns:
        The scheduler, as attached.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import Net, attach_one_cycle_lr
        >>> optimizer = torch.optim.SGD(Net().parameters(), lr=0.1)
        >>> trainer = Engine(lambda engine, batch: optimizer.step())
        >>> scheduler = attach_one_cycle_lr(trainer, optimizer, 0.1, total_steps=8)
        >>> rates = []
        >>> @trainer.on(Events.ITERATION_COMPLETED)
        ... def keep_rate(engine):
        ...     rates.append(optimizer.param_groups[0]["lr"])
        >>> _ = trainer.run([0] * 8, max_epochs=1)
        >>> [round(rate, 4) for rate in rates]  # up over the first quarter, then down
        [0.004, 0.1, 0.0933, 0.075, 0.05, 0.025, 0.0067, 0.0]
    """
    scheduler = LRScheduler(
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=0.25)
    )
    trainer.add_event_handler(Events.ITERATION_STARTED, scheduler)
    return scheduler

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
    """
    scheduler = LRScheduler(
        torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=0.25)
    )
    trainer.add_event_handler(Events.ITERATION_STARTED, scheduler)
    return scheduler

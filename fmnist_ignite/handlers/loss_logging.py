"""The tutorial's text lines: the ``Epoch N`` header and the loss every few batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sized
from typing import Protocol, SupportsFloat, cast

from ignite.engine import Engine, Events

logger = logging.getLogger(__name__)


class _Batches(Protocol):
    """What the loss line reads of the trainer's loader (a ``TensorLoader`` or a ``DataLoader``)."""

    batch_size: int
    dataset: Sized


def attach_epoch_header(trainer: Engine) -> Callable[[Engine], None]:
    """Print the tutorial's ``Epoch N`` header and dashes when an epoch starts.

    The lines are this module's logger's (printed unless ``logging`` is told otherwise).

    Args:
        trainer: the trainer whose epochs it announces.

    Returns:
        The handler, as attached on ``EPOCH_STARTED`` (to remove it, or to call it).

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import attach_epoch_header
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> _ = attach_epoch_header(trainer)
        >>> _ = trainer.run([0, 1], max_epochs=1)
        Epoch 1
        -------------------------------
    """

    def print_header(engine: Engine) -> None:
        logger.info(f"Epoch {engine.state.epoch}\n-------------------------------")

    trainer.add_event_handler(Events.EPOCH_STARTED, print_header)
    return print_header


def attach_loss_logging(trainer: Engine, every: int = 100) -> Callable[[Engine], None]:
    """Every ``every`` batches of an epoch, from its first, print ``loss: 2.313032  [    0/60000]``.

    The count is samples seen before this batch, out of the samples in the epoch, as in the tutorial
    (over all processes when a ``TensorLoader`` is sharded across several). The lines are this module's
    logger's (printed unless ``logging`` is told otherwise).

    Args:
        trainer: the trainer whose loss it prints (its output is the batch loss).
        every: print every this many batches of an epoch.

    Returns:
        The handler, as attached on ``ITERATION_COMPLETED`` (to remove it, or to call it).

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import attach_loss_logging
        >>> loader = DataLoader(TensorDataset(torch.zeros(8, 1)), batch_size=2)
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> _ = attach_loss_logging(trainer, every=2)
        >>> _ = trainer.run(loader, max_epochs=1)
        loss: 0.250000  [    0/    8]
        loss: 0.250000  [    4/    8]
    """

    def every_n_in_epoch(engine: Engine, iteration: int) -> bool:
        assert engine.state.epoch_length is not None  # set by Engine.run: this library's loaders have a length
        return (iteration - 1) % engine.state.epoch_length % every == 0

    def log_loss(engine: Engine) -> None:
        loader = cast(_Batches, engine.state.dataloader)  # Ignite's State types it as any iterable, or None
        assert engine.state.epoch_length is not None  # set by Engine.run: this library's loaders have a length
        batch_index = (engine.state.iteration - 1) % engine.state.epoch_length
        loss = float(cast(SupportsFloat, engine.state.output))  # the loss: Ignite annotates output as int | None
        seen = batch_index * loader.batch_size * getattr(loader, "world_size", 1)
        logger.info(f"loss: {loss:>7f}  [{seen:>5d}/{len(loader.dataset):>5d}]")

    trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=every_n_in_epoch), log_loss)
    return log_loss

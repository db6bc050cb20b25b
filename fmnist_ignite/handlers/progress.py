"""A progress bar over each epoch, on a terminal only."""

from __future__ import annotations

from ignite.engine import Engine
from ignite.handlers import (
    ProgressBar,
)

from fmnist_ignite.ui.display import choose_display


def attach_progress_bar(trainer: Engine, enabled: bool | None = None) -> ProgressBar | None:
    """A tqdm bar over each epoch's batches with the running loss.

    Args:
        trainer: the trainer whose batches it counts.
        enabled: whether to show it; None (the default): only where the display is a terminal
            (``fmnist_ignite.ui.display``): not in a notebook, a file or a SLURM log.

    Returns:
        The bar, as attached; None when it is not shown.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import attach_progress_bar
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> attach_progress_bar(trainer, enabled=False) is None  # a terminal: a bar
        True
    """
    if enabled is None:
        enabled = choose_display("auto") == "terminal"
    if not enabled:
        return None
    bar = ProgressBar(persist=False)
    bar.attach(trainer, output_transform=lambda loss: {"loss": float(loss)})
    return bar

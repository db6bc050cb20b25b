"""TensorBoard logging through Ignite's ``TensorboardLogger``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ignite.engine import Engine, Events
from ignite.handlers import global_step_from_engine

from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError

if TYPE_CHECKING:
    import torch
    from ignite.handlers.tensorboard_logger import TensorboardLogger

MISSING = "{tensorboard} needs the tensorboard package ({why}): pip install 'fmnist-ignite[tensorboard]'"


def require_tensorboard() -> None:
    """Refuse ``--tensorboard`` at once where the tensorboard package is missing (not after the data loaded)."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise FmnistError(MISSING, tensorboard=named(Config, "tensorboard"), why="not installed")


def attach_tensorboard(
    trainer: Engine, evaluator: Engine, optimizer: torch.optim.Optimizer, log_dir: Path, every: int = 100
) -> TensorboardLogger:
    """Ignite's ``TensorboardLogger``: training loss and learning rate, and validation metrics each epoch.

    It needs the ``tensorboard`` package, and says so clearly if it is missing. The logger is closed when
    the trainer completes.

    Args:
        trainer: the trainer whose loss and learning rate it logs.
        evaluator: the validation evaluator whose ``loss`` and ``accuracy`` it logs.
        optimizer: the optimizer whose learning rate it logs.
        log_dir: the directory of the event files.
        every: log the training loss and learning rate every this many iterations.

    Raises:
        FmnistError: the tensorboard package is missing.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import Net, create_evaluator
        >>> model = Net()
        >>> images, labels = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
        >>> loader = DataLoader(TensorDataset(images, labels), batch_size=10)
        >>> evaluator = create_evaluator(model)
        >>> import tempfile
        >>> from pathlib import Path
        >>> from fmnist_ignite import attach_tensorboard
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> @trainer.on(Events.EPOCH_COMPLETED)
        ... def validate(engine):
        ...     evaluator.run(loader)
        >>> log_dir = Path(tempfile.mkdtemp())
        >>> logger = attach_tensorboard(trainer, evaluator, optimizer, log_dir, every=1)
        >>> _ = trainer.run([0, 1], max_epochs=1)
        >>> any(p.name.startswith("events.out.tfevents") for p in log_dir.iterdir())
        True
    """
    try:
        from ignite.handlers.tensorboard_logger import TensorboardLogger

        logger = TensorboardLogger(log_dir=str(log_dir))
    except (ImportError, ModuleNotFoundError, RuntimeError) as exc:
        raise FmnistError(MISSING, tensorboard=named(Config, "tensorboard"), why=exc.__class__.__name__) from None
    logger.attach_output_handler(
        trainer,
        event_name=Events.ITERATION_COMPLETED(every=every),
        tag="training",
        output_transform=lambda loss: {"loss": float(loss)},
    )
    logger.attach_opt_params_handler(trainer, event_name=Events.ITERATION_COMPLETED(every=every), optimizer=optimizer)
    logger.attach_output_handler(
        evaluator,
        event_name=Events.COMPLETED,
        tag="validation",
        metric_names=["loss", "accuracy"],
        global_step_transform=global_step_from_engine(trainer, Events.ITERATION_COMPLETED),
    )
    trainer.add_event_handler(Events.COMPLETED, lambda engine: logger.close())
    return logger

"""Checkpoints: the training state after each epoch, and the best model's weights by validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ignite.engine import Engine, Events
from ignite.handlers import (
    Checkpoint,
    global_step_from_engine,
)

from fmnist_ignite.files.checkpoints import DurableDiskSaver

if TYPE_CHECKING:
    import torch


def score_function(monitor: str) -> Callable[[Engine], float]:
    """The score of an evaluation, higher is better: the evaluator's accuracy, or its loss negated.

    Args:
        monitor: the metric that selects: "loss" (negated) or "accuracy".

    Returns:
        A function of the evaluator giving its score, as Ignite's ``Checkpoint`` and ``EarlyStopping`` take it.
    """
    return Checkpoint.get_default_score_fn(monitor, -1.0 if monitor == "loss" else 1.0)


def attach_checkpointing(trainer: Engine, to_save: dict, output_dir: str | Path, n_saved: int = 2) -> Checkpoint:
    """Save ``to_save`` (model, optimizer, trainer, ...) after each epoch, keeping the last ``n_saved``.

    Files are ``training_checkpoint_<epoch>.pt``; writes are atomic and fsynced
    (a temporary file, fsynced, then a rename), so a crash or power loss never leaves a half-written one.

    Args:
        trainer: the trainer after whose epochs it saves.
        to_save: the objects to save, by name (each with a ``state_dict``).
        output_dir: the directory the files go in.
        n_saved: how many of the latest checkpoints to keep; older ones are deleted.

    Returns:
        Ignite's ``Checkpoint`` handler (it saves its own list of files too, so a resumed run keeps deleting
        the oldest).

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> import tempfile
        >>> from pathlib import Path
        >>> from fmnist_ignite import Net, attach_checkpointing
        >>> model, run_dir = Net(), Path(tempfile.mkdtemp())
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> to_save = {"model": model, "trainer": trainer}
        >>> checkpoint = attach_checkpointing(trainer, to_save, run_dir, n_saved=2)
        >>> _ = trainer.run([0], max_epochs=3)
        >>> sorted(path.name for path in run_dir.glob("*.pt"))
        ['training_checkpoint_2.pt', 'training_checkpoint_3.pt']
    """
    checkpoint = Checkpoint(
        to_save,
        DurableDiskSaver(output_dir),
        filename_prefix="training",
        n_saved=n_saved,
        global_step_transform=lambda engine, event: engine.state.epoch,
        include_self=True,  # its list of saved files, so a resumed run keeps deleting the oldest
    )
    trainer.add_event_handler(Events.EPOCH_COMPLETED, checkpoint)
    return checkpoint


def attach_best_model_checkpoint(
    evaluator: Engine, trainer: Engine, model: torch.nn.Module, output_dir: str | Path, monitor: str = "loss"
) -> Checkpoint:
    """Keep the model weights of the best validation score, named ``best_model_<epoch>_<score>.pt``.

    Args:
        evaluator: the validation evaluator, after whose runs it compares the score.
        trainer: the trainer, whose epoch names the file.
        model: the model whose weights it keeps.
        output_dir: the directory the file goes in.
        monitor: the metric that selects: "loss" (lowest) or "accuracy" (highest).

    Returns:
        Ignite's ``Checkpoint`` handler, keeping one file.

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
        >>> from fmnist_ignite import attach_best_model_checkpoint
        >>> run_dir = Path(tempfile.mkdtemp())
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> @trainer.on(Events.EPOCH_COMPLETED)
        ... def validate(engine):
        ...     evaluator.run(loader)
        >>> best = attach_best_model_checkpoint(evaluator, trainer, model, run_dir)
        >>> _ = trainer.run([0], max_epochs=2)
        >>> best.last_checkpoint.name.startswith("best_model_")
        True
    """
    checkpoint = Checkpoint(
        {"model": model},
        DurableDiskSaver(output_dir),
        filename_prefix="best",
        n_saved=1,
        score_function=score_function(monitor),
        score_name="val_accuracy" if monitor == "accuracy" else "neg_val_loss",
        global_step_transform=global_step_from_engine(trainer),
    )
    evaluator.add_event_handler(Events.COMPLETED, checkpoint)
    return checkpoint

"""Checkpoint files: read safely (a regular file of bounded size, tensors and plain data only, never code, any
failure one line naming the file) and written durably (``DurableDiskSaver``), deleting only what it wrote."""

from __future__ import annotations

import pickle
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.handlers import DiskSaver

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import fsync_directory, replace_atomically
from fmnist_ignite.files.reading import open_regular

TRAINING_KEYS = ("model", "optimizer", "trainer")
MAX_CHECKPOINT_BYTES = 4 << 30  # the MLP's training checkpoint is 8 MB; a model of one's own may be larger
# The files the checkpoint handlers write, and the only ones they may delete.
CHECKPOINT_NAME = re.compile(r"^(training_checkpoint|interrupted_checkpoint|best_model)_[\w.=+-]+\.pt$")


def load_checkpoint(path: str | Path, map_location: Any = None) -> dict:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data only, never code.

    The file must be a regular file of at most ``MAX_CHECKPOINT_BYTES`` (a device, a FIFO or a planted huge
    file is refused before anything is read).

    Args:
        path: the checkpoint file (a link the user gives is followed).
        map_location: where the tensors go, as ``torch.load`` takes it (e.g. "cpu"); None: where they were saved.

    Returns:
        The checkpoint's dict (its state dicts by name).

    Raises:
        FmnistError: any failure, in one line naming the file and what is wrong: missing, not a regular file, too
            large, truncated or corrupt, holding Python objects that would run code, or not a dict.
    """
    path = Path(path)
    opened = open_regular(path, MAX_CHECKPOINT_BYTES, "a checkpoint", follow_links=True)  # a path the user gave
    if opened is None:
        raise FmnistError(f"{path}: no such checkpoint file")
    with opened as stream:
        try:
            checkpoint = torch.load(stream, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            if "GLOBAL" in str(exc):  # the pickle names a Python callable: exactly what weights_only blocks
                raise FmnistError(
                    f"{path}: refused: it holds Python objects that would run code when loaded; "
                    "only tensors and plain data are accepted"
                ) from None
            raise FmnistError(f"{path}: not a checkpoint (unreadable as tensors and plain data)") from None
        except (RuntimeError, EOFError, OSError) as exc:
            raise FmnistError(f"{path}: truncated or corrupt checkpoint ({str(exc).splitlines()[0]})") from None
        except Exception as exc:  # noqa: BLE001 (torch's safe unpickler fails on arbitrary bytes in many ways)
            raise FmnistError(f"{path}: not a checkpoint (unreadable: {type(exc).__name__})") from None
    if not isinstance(checkpoint, dict):
        raise FmnistError(f"{path}: not a checkpoint (it holds a {type(checkpoint).__name__}, not a dict)")
    return checkpoint


def require_training_state(path: Path, checkpoint: dict) -> None:
    """A checkpoint to resume from must hold the model, the optimizer and the trainer's state."""
    missing = [key for key in TRAINING_KEYS if key not in checkpoint]
    if missing:
        raise FmnistError(
            f"{path}: not a training checkpoint (no {', '.join(missing)}); resume from a "
            "training_checkpoint_*.pt or interrupted_checkpoint_*.pt file"
        )
    trainer = checkpoint["trainer"]
    if not (isinstance(trainer, dict) and all(isinstance(trainer.get(k), int) for k in ("epoch_length", "iteration"))):
        raise FmnistError(f"{path}: its trainer state is damaged (no epoch length or iteration)")


def trainer_iteration(checkpoint: dict) -> int:
    """How far the run of a (checked) training checkpoint had got: its trainer's iteration."""
    return int(checkpoint["trainer"]["iteration"])


class DurableDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` writing through ``files.durable``, deleting only what it could have written.

    It writes a temporary file, fsynced, renamed, the directory fsynced; never through a link planted at the
    name. It deletes only checkpoint files it could have written in its own directory: the list of saved files
    a checkpoint carries is data read back, not trusted.

    Args:
        dirname: the directory the checkpoints go in; it need not be empty (a resumed run's is not).
        **kwargs: passed on to Ignite's ``DiskSaver`` (e.g. ``create_dir``, ``save_on_rank``).
    """

    def __init__(self, dirname: str | Path, **kwargs: Any) -> None:
        super().__init__(dirname, require_empty=False, **kwargs)

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        replace_atomically(Path(path), lambda stream: func(checkpoint, stream, **self.kwargs))

    def remove(self, filename: str) -> None:
        """Delete an old checkpoint of this directory; one already gone is fine (a resume from an older
        checkpoint remembers files that the run after it deleted), and a name that is not one of its
        checkpoints' (another directory, a path, a file it never writes) is left alone."""
        if idist.get_rank() != self.save_on_rank or not CHECKPOINT_NAME.match(filename):
            return
        path = Path(self.dirname) / filename
        try:
            if stat.S_ISREG(path.lstat().st_mode):
                path.unlink()
                fsync_directory(path.parent)
        except FileNotFoundError:
            pass

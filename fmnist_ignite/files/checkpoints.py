"""Reading a checkpoint file safely: tensors and plain data only, never code, any failure one line."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from fmnist_ignite.errors import FmnistError

TRAINING_KEYS = ("model", "optimizer", "trainer")


def load_checkpoint(path: str | Path, map_location=None) -> dict:
    """Read a checkpoint with ``weights_only=True``: tensors and plain data only, never code.

    Any failure is one FmnistError naming the file and what is wrong with it.
    """
    path = Path(path)
    if not path.is_file():
        raise FmnistError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # the pickle names a Python callable: exactly what weights_only blocks
            raise FmnistError(
                f"{path}: refused: it holds Python objects that would run code when loaded; "
                "only tensors and plain data are accepted"
            ) from None
        raise FmnistError(f"{path}: not a checkpoint (unreadable as tensors and plain data)") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise FmnistError(f"{path}: truncated or corrupt checkpoint ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # torch's safe unpickler fails on arbitrary bytes in many ways
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

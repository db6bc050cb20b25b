"""Loading checkpoints safely, and the random state they carry."""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from pathlib import Path

import torch
from ignite.engine import Engine
from ignite.handlers import Checkpoint

from fmnist_ignite.config import Config
from fmnist_ignite.errors import FmnistError

TRAINING_KEYS = ("model", "optimizer", "trainer")


class RandomState:
    """torch's random generators (dropout draws from them), saved so a resumed run draws the same."""

    def state_dict(self) -> dict:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


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


@contextmanager
def must_fit(path: Path):
    """Turn a state dict that does not fit (wrong shapes, keys, types) into one line naming the file."""
    try:
        yield
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise FmnistError(f"{path}: does not fit this model and configuration ({str(exc).splitlines()[0]})") from None


def restore(path: Path, checkpoint: dict, to_load: dict) -> None:
    """Load every object the checkpoint holds state for, or fail with one line naming the file."""
    with must_fit(path):
        Checkpoint.load_objects({k: v for k, v in to_load.items() if k in checkpoint}, checkpoint)


def check_epochs_left(config: Config, trainer: Engine, resume: Path) -> None:
    """A resumed run may add epochs, not take them away."""
    state = trainer.state
    started = state.epoch + (1 if state.iteration % state.epoch_length else 0)
    if config.epochs < started:
        raise FmnistError(
            f"{resume} is from epoch {started} of its run; --epochs {config.epochs} is fewer: "
            f"pass --epochs {started} or more to continue it"
        )

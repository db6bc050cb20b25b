"""What ends a run early, said in one line with what is safe and what to do next."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from ignite.engine import Engine

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.device import out_of_memory
from fmnist_ignite.errors import CouldNotWrite, FmnistError, NonFiniteLoss, shell_command
from fmnist_ignite.run.rundir import find_latest_checkpoint


def out_of_memory_error(exc: BaseException, config: Config, device: torch.device) -> FmnistError:
    """Memory ran out (a batch too large for this machine): one line naming the settings that size it."""
    return FmnistError(
        f"out of memory on {device} ({str(exc).splitlines()[0][:120]}): lower --batch-size "
        f"({config.batch_size}) or --eval-batch-size ({config.eval_batch_size}), or use a larger machine"
    )


def could_not_write(exc: OSError, output_dir: Path) -> CouldNotWrite:
    """A file the run could not write (a full disk, a directory gone), said in one line with what is safe."""
    latest = find_latest_checkpoint(output_dir)
    then = (
        f"the checkpoints already there are intact (newest: {latest.name}): free some space, then continue "
        "with --resume auto"
        if latest
        else "no training checkpoint was kept: free some space, then start again"
    )
    return CouldNotWrite(f"could not write {exc.filename or output_dir}: {exc.strerror or exc}; {then}")


def stopped_outside_training(
    said: str, phase: str | None, resumed: bool, weights: Path | None, output_dir: Path
) -> str:
    """A stop before training (``phase`` None) or after it (while ``phase``): what it left, in one line."""
    if phase is None:
        safe = f"the checkpoints in {output_dir} are as they were" if resumed else ""
        return f"{said} before training started; " + (safe or "nothing was trained")
    return (
        f"{said} after training, while {phase}: the trained weights are in "
        f"{weights}; score them with: {shell_command('fmnist-ignite evaluate', weights or output_dir)}"
    )


def non_finite_loss(trainer: Engine, last: Path | None) -> NonFiniteLoss:
    """The loss became NaN or infinite: where, and the last good checkpoint."""
    loss = float("nan") if trainer.state.output is None else float(trainer.state.output)
    return NonFiniteLoss(
        f"training stopped at epoch {trainer.state.epoch}, iteration {trainer.state.iteration}: the "
        f"loss became {loss if not math.isfinite(loss) else 'nan or inf (in this or another process)'} "
        "at or before it (try a smaller --lr); "
        + (f"the last good checkpoint is {last}" if last else "no epoch finished, so no checkpoint was kept")
    )


def in_one_line(exc: BaseException, config: Config, device: torch.device, output_dir: Path) -> BaseException:
    """The error a user is shown for ``exc``: a file not written or memory run out said in one line; any
    other error as it is."""
    if isinstance(exc, OSError):
        return could_not_write(exc, output_dir)
    if out_of_memory(exc):
        return out_of_memory_error(exc, config, device)
    return exc

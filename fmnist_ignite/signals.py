"""Ctrl-C, SIGTERM and SIGUSR1 at any point of a run: during training they stop the trainer at a safe
point; before and after it they raise ``Stopped`` where the run is, so it can say what is safe on disk.

SIGUSR1 is SLURM's usual warning before a job's time limit (``#SBATCH --signal=USR1@120``).
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path

import ignite.distributed as idist
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from fmnist_ignite.distributed import agreed_max
from fmnist_ignite.errors import TrainingInterrupted
from fmnist_ignite.handlers import DurableDiskSaver

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
SIGNAL_CHECK_EVERY = 20  # iterations between the processes' checks for a stop signal


class Stopped(BaseException):
    """A stop signal arrived outside training (a BaseException, like KeyboardInterrupt, so no
    ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


@contextmanager
def raising_on_signals():
    """While inside, Ctrl-C and SIGTERM raise ``Stopped`` (instead of KeyboardInterrupt or death)."""
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def stop_on_signals(trainer: Engine):
    """While training, Ctrl-C and SIGTERM stop the trainer cleanly instead of raising mid-step.

    In the middle of an epoch it stops after the current iteration; on an epoch's last iteration it
    first lets the epoch finish (evaluation, checkpoints), so a resumed run misses no epoch's handlers.
    Yields a list that holds the signal number once one arrived.
    """
    received: list[int] = []
    # Several processes must stop at the same iteration, so they agree every few iterations.
    every = 1 if idist.get_world_size() == 1 else SIGNAL_CHECK_EVERY

    def stop_mid_epoch(engine: Engine) -> None:
        if engine.state.iteration % every == 0 and engine.state.iteration % engine.state.epoch_length:
            stop_if_any_received(engine)

    def stop_if_any_received(engine: Engine) -> None:
        signum = agreed_max(received[0] if received else 0)
        if signum:
            received[:] = [signum]
            engine.terminate()

    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum)) for sig in STOP_SIGNALS}
    trainer.add_event_handler(Events.ITERATION_COMPLETED, stop_mid_epoch)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, stop_if_any_received)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        trainer.remove_event_handler(stop_mid_epoch, Events.ITERATION_COMPLETED)
        trainer.remove_event_handler(stop_if_any_received, Events.EPOCH_COMPLETED)


def save_on_stop(signum: int, trainer: Engine, to_save: dict, checkpointer: Checkpoint, output_dir: Path):
    """Save ``interrupted_checkpoint_<iteration>.pt`` where the trainer stopped; return the error that
    says so, for the caller to raise."""
    saver = Checkpoint(
        {**to_save, "checkpointer": checkpointer},
        DurableDiskSaver(output_dir),
        filename_prefix="interrupted",
        global_step_transform=lambda engine, event: engine.state.iteration,
    )
    saver(trainer)
    path = Path(saver.last_checkpoint)
    name = signal.Signals(signum).name
    return TrainingInterrupted(
        f"interrupted by {name} at epoch {trainer.state.epoch}, iteration {trainer.state.iteration}; saved {path}",
        128 + signum,
        checkpoint=path,
        output_dir=output_dir,
    )

"""Ctrl-C, SIGTERM, SIGHUP and SIGUSR1 at any point of a run, and ``Training.stop()`` from any thread: during
training they stop the trainer at a safe point; before and after it they end the run where it is, so it
can say what is safe on disk.

Handlers are installed only in the main thread (Python allows no other), chained with those already
there (a handler of the application's own still runs), and restored when the run ends. Off the main
thread a run trains normally and only ``Training.stop()`` can stop it. SIGUSR1 is SLURM's usual warning
before a job's time limit (``#SBATCH --signal=USR1@120``); SIGHUP is a closed terminal (an SSH session to a
login node that dropped), which would otherwise end the run with nothing saved.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import ignite.distributed as idist
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from fmnist_ignite.core.distributed import agreed_max
from fmnist_ignite.errors import TrainingInterrupted
from fmnist_ignite.files.checkpoints import DurableDiskSaver

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)
SIGNAL_CHECK_EVERY = 20  # iterations between the processes' checks for a stop signal
STOP_CALL = signal.SIGTERM  # Training.stop() stops a run as SIGTERM would

# A handler ``signal.signal`` installs, and what it returns of the one it replaced (SIG_DFL, SIG_IGN, or None
# for one not installed from Python).
SignalFunction = Callable[[int, FrameType | None], object]
SignalHandler = SignalFunction | int | signal.Handlers | None


class Stopped(BaseException):
    """A stop arrived outside training (a BaseException, like KeyboardInterrupt, so no ``except
    Exception`` swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def __reduce__(self) -> tuple[type[Stopped], tuple[int]]:  # whole across processes, like TrainingInterrupted
        return type(self), (self.signum,)


class StopRequests:
    """The stops asked for so far (signal numbers, first first), by signal or by ``stop()`` from any thread.

    While ``raising`` (outside training) the first signal raises ``Stopped`` in the main thread; later
    ones are only noted, so one stop is handled once however many signals arrive.
    """

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.by_call = False  # the first stop came from stop(), not a signal
        self.raising = False
        self._lock = threading.RLock()  # re-entrant: a second signal may arrive while the handler of the first holds it

    def __bool__(self) -> bool:
        return bool(self.signals)

    @property
    def first(self) -> int:
        return self.signals[0] if self.signals else 0

    def stop(self) -> None:
        """Ask the run to stop as SIGTERM would (thread-safe; never raises in the caller)."""
        with self._lock:
            self.by_call = self.by_call or not self.signals
            self.signals.append(STOP_CALL)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            first = not self.signals
            self.signals.append(signum)
        if first and self.raising:
            raise Stopped(signum)

    def check(self) -> None:
        """Raise ``Stopped`` if a stop was asked for (between the steps of a run)."""
        if self.signals:
            raise Stopped(self.first)

    def describe(self) -> str:
        return "stopped by Training.stop()" if self.by_call else f"interrupted by {signal.Signals(self.first).name}"


@contextmanager
def catching_stop_signals(requests: StopRequests, note: bool = True) -> Iterator[StopRequests]:
    """While inside, the stop signals go to ``requests`` (then to any handler the application had);
    outside the main thread nothing is installed, and a line says so (unless ``note`` is False)."""
    if threading.current_thread() is not threading.main_thread():
        if note:
            logger.warning("Note: not in the main thread, so signals cannot checkpoint this run; Training.stop() can")
        yield requests
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        requests.on_signal(signum, frame)
        chained = previous.get(signum)
        if callable(chained) and chained is not signal.default_int_handler and not getattr(chained, "ours", False):
            chained(signum, frame)

    # A nested run does not chain to an outer run's handler. (Set through __dict__: mypy has no way to declare
    # an attribute of a function.)
    handle.__dict__["ours"] = True
    with handling(STOP_SIGNALS, handle) as previous:
        yield requests


@contextmanager
def handling(signals: tuple[int, ...], handler: SignalFunction) -> Iterator[dict[int, SignalHandler]]:
    """``handler`` for ``signals`` while inside (main thread only); yields the handlers it replaced, which
    are put back on leaving."""
    previous = {sig: signal.signal(sig, handler) for sig in signals}
    try:
        yield previous
    finally:
        for sig, replaced in previous.items():
            signal.signal(sig, replaced)


@contextmanager
def raising(requests: StopRequests) -> Iterator[None]:
    """While inside, the first stop signal raises ``Stopped`` where the run is (and a stop asked
    before raises at once)."""
    requests.raising = True
    try:
        requests.check()
        yield
    finally:
        requests.raising = False


@contextmanager
def stopping_trainer(trainer: Engine, requests: StopRequests) -> Iterator[None]:
    """While training, a stop ends the trainer cleanly instead of raising mid-step.

    In the middle of an epoch it stops after the current iteration; on an epoch's last iteration it
    first lets the epoch finish (evaluation, checkpoints), so a resumed run misses no epoch's handlers.
    Several processes agree every few iterations, so they stop at the same one.
    """
    every = 1 if idist.get_world_size() == 1 else SIGNAL_CHECK_EVERY

    def stop_mid_epoch(engine: Engine) -> None:
        epoch_length = engine.state.epoch_length
        assert epoch_length is not None  # Engine.run sets it before the first iteration
        if engine.state.iteration % every == 0 and engine.state.iteration % epoch_length:
            stop_if_asked(engine)

    def stop_if_asked(engine: Engine) -> None:
        signum = agreed_max(requests.first)
        if signum:
            if not requests:  # another process was asked: this one stops with it
                requests.signals.append(signum)
            engine.terminate()

    trainer.add_event_handler(Events.ITERATION_COMPLETED, stop_mid_epoch)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, stop_if_asked)
    try:
        yield
    finally:
        trainer.remove_event_handler(stop_mid_epoch, Events.ITERATION_COMPLETED)
        trainer.remove_event_handler(stop_if_asked, Events.EPOCH_COMPLETED)


def save_on_stop(
    requests: StopRequests, trainer: Engine, to_save: Mapping[str, object], checkpointer: Checkpoint, output_dir: Path
) -> TrainingInterrupted:
    """Save ``interrupted_checkpoint_<iteration>.pt`` where the trainer stopped; return the error that
    says so, for the caller to raise."""
    saver = Checkpoint(
        {**to_save, "checkpointer": checkpointer},
        DurableDiskSaver(output_dir),
        filename_prefix="interrupted",
        global_step_transform=lambda engine, event: engine.state.iteration,
    )
    saver(trainer)
    last = saver.last_checkpoint
    assert last is not None  # a first save with no score always writes
    path = Path(last)
    return TrainingInterrupted(
        f"{requests.describe()} at epoch {trainer.state.epoch}, iteration {trainer.state.iteration}; saved {path}",
        128 + requests.first,
        checkpoint=path,
        output_dir=output_dir,
    )

"""How work starts: ``train(config)``, one run of any number of processes on one path, from Python or the
command line; and ``launch(config, work, *args)``, which runs ``work(config, *args)`` in every process through
``idist.Parallel`` (processes spawned here, started by torchrun or srun, or this process alone) and returns
rank 0's value, or raises the exception its processes raised: the same class, the same message.

Each process hands back a typed ``Outcome`` (its value or its exception), never text to be parsed. The
launching process of spawned workers passes stop signals on to them, gives up on peers that never come
(``config.peer_timeout``), and turns a worker's death into one line that says what is safe on disk.
"""

from __future__ import annotations

import builtins
import datetime
import logging
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TypedDict, TypeVar, cast

import ignite.distributed as idist
import torch
from ignite.engine import Engine
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException
from torch.multiprocessing.spawn import ProcessException

from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.allocator import keep_freed_memory
from fmnist_ignite.core.models import match_saved_layout
from fmnist_ignite.core.threads import apply_threads, plan_threads
from fmnist_ignite.errors import FmnistError, Message, TrainingInterrupted
from fmnist_ignite.run.result import TrainResult, close_summary
from fmnist_ignite.run.rundir import RunDirectory, claim_run_directory, find_latest_checkpoint
from fmnist_ignite.run.signals import STOP_SIGNALS, handling
from fmnist_ignite.run.training import Training

T = TypeVar("T")  # what the work returns

# Loggers that would tell the user, in tracebacks and warnings, what the one line already says.
NOISY_LOGGERS = (
    "ignite.engine",
    "ignite.distributed.launcher.Parallel",
    "ignite.distributed.auto.auto_model",
    "ignite.distributed.auto.auto_optim",
    "torch.multiprocessing.spawn",
    "torch.distributed",
)


def launched_externally() -> bool:
    """True in a process that a launcher started as one of several: torchrun (or another env://
    launcher), or SLURM's ``srun -n N`` (whose variables ignite.distributed reads by itself)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1


def default_backend(config: Config) -> str:
    return config.backend or ("nccl" if config.device != "cpu" and torch.cuda.is_available() else "gloo")


def setup_process(config: Config) -> None:
    """What a run sets for its whole process: torch's threads, the cores that are this process's own
    (``core.threads``: the processes on one machine share them; other work's cores are left to it), and
    malloc's keeping of freed memory for the next step (``core.allocator``)."""
    keep_freed_memory()
    processes = idist.get_nproc_per_node() if idist.get_world_size() > 1 else 1
    apply_threads(plan_threads(config.threads, processes))


@dataclass
class Outcome:
    """How one process's work ended: its value, or the exception it raised."""

    rank: int
    value: object = None
    error: BaseException | None = None


class Mailbox:
    """Where each process leaves its outcome: in memory when the work runs in this process, else as a
    file in a private directory of the launching process (any size, and there even if a peer dies)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.outcomes: list[Outcome] = []

    def started(self) -> None:
        """Note that this process joined its peers (so a stop signal may now checkpoint it)."""
        if self.directory is not None:
            (self.directory / f"started-{os.getpid()}").touch()

    def any_started(self) -> bool:
        return self.directory is not None and any(self.directory.glob("started-*"))

    def has_started(self, pid: int) -> bool:
        return self.directory is not None and (self.directory / f"started-{pid}").exists()

    def put(self, outcome: Outcome) -> None:
        if self.directory is None:
            self.outcomes.append(outcome)
            return
        part = self.directory / f"outcome-{outcome.rank}.part"
        try:
            torch.save(outcome, part)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:  # an exception or value pickle cannot carry
            error = outcome.error or exc
            torch.save(Outcome(outcome.rank, error=RuntimeError(f"{type(error).__name__}: {error}")), part)
        part.rename(self.directory / f"outcome-{outcome.rank}.pt")
        (self.directory / f"done-{os.getpid()}").touch()

    def has_finished(self, pid: int) -> bool:
        """Whether the process ``pid`` handed over its outcome."""
        return self.directory is not None and (self.directory / f"done-{pid}").exists()

    def first_failure(self) -> float | None:
        """When the first process failed with an error that is not a stop or the user's (a lost peer, a
        crash), or None while none has."""
        found = list(self.directory.glob("error-*")) if self.directory is not None else []
        return min(path.stat().st_mtime for path in found) if found else None

    def started_pids(self) -> set[int]:
        """The workers of this launch that joined their peers."""
        found = self.directory.glob("started-*") if self.directory is not None else ()
        return {int(path.name.removeprefix("started-")) for path in found if path.name[8:].isdigit()}

    def collect(self) -> dict[int, Outcome]:
        if self.directory is not None:
            found = sorted(self.directory.glob("outcome-*.pt"))
            self.outcomes = [torch.load(path, weights_only=False) for path in found]  # written by our own workers
        return {outcome.rank: outcome for outcome in self.outcomes}


def _process(local_rank: int, work: Callable[..., object], config: Config, mailbox: Mailbox, *args: object) -> None:
    """What each process runs (module level, so spawned processes can import it)."""
    if mailbox.directory is not None:  # a spawned worker; one forked (as in Jupyter) drops the launcher's forwarding
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    rank = idist.get_rank()
    mailbox.started()
    setup_process(config)
    try:
        with quiet(NOISY_LOGGERS):
            value = work(config, *args)
    except BaseException as exc:  # handed to the launching process, which raises it
        if mailbox.directory is not None and not isinstance(exc, (FmnistError, KeyboardInterrupt)):
            (mailbox.directory / f"error-{os.getpid()}").touch()  # a peer lost or a failure: the watchdog looks
        mailbox.put(Outcome(rank, error=exc))
        return
    mailbox.put(Outcome(rank, value=value if rank == 0 else None))  # before the barrier: a peer may die there
    if idist.get_world_size() > 1:
        with quiet(NOISY_LOGGERS), suppress(Exception):  # the work is done; a peer lost now changes nothing
            idist.barrier()  # no process tears its connections down while another still writes its results


class SpawnOptions(TypedDict, total=False):
    """What ``idist.Parallel`` is told when it spawns the workers itself."""

    nproc_per_node: int
    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    timeout: datetime.timedelta


def launch(config: Config, work: Callable[..., T], *args: object) -> T | None:
    """Run ``work(config, *args)`` in each process of the run; return rank 0's value, or raise the
    exception that ended the run (a process's own error before any peer's lost connection)."""
    external = launched_externally()
    spawned = config.world_size > 1 and not external
    backend = default_backend(config) if spawned or external else None
    spawn_kwargs: SpawnOptions = {}
    if spawned:
        spawn_kwargs = {
            "nproc_per_node": config.nproc_per_node,
            "nnodes": config.nnodes,
            "node_rank": config.node_rank,
            "master_addr": config.master_addr,
            "master_port": config.master_port,
            "timeout": datetime.timedelta(seconds=config.peer_timeout),
        }
    if spawned:
        check_main_module()
    mailbox = Mailbox(Path(tempfile.mkdtemp(prefix="fmnist-ignite-")) if spawned else None)
    died: ProcessException | None = None
    watchdog = Watchdog(mailbox, config.peer_timeout)
    try:
        with quiet(NOISY_LOGGERS), forwarding_stop_signals(mailbox) as received, watchdog:
            try:
                with idist.Parallel(backend=backend, **spawn_kwargs) as parallel:
                    parallel.run(_process, work, config, mailbox, *args)
            except (ProcessExitedException, ProcessRaisedException) as exc:
                died = exc
            except (pickle.PicklingError, AttributeError) as exc:  # AttributeError: "Can't pickle local object"
                raise FmnistError(
                    f"cannot hand the work to spawned processes ({exc}): define your model class and handlers "
                    "at module level, not inside a function or a notebook cell"
                ) from None
        # rank 0's value of ``work`` (handed back through the mailbox, so untyped there), or None
        return cast("T | None", _result(config, mailbox, died, received, watchdog.ended))
    finally:
        if mailbox.directory is not None:
            shutil.rmtree(mailbox.directory, ignore_errors=True)


def _result(
    config: Config, mailbox: Mailbox, died: ProcessException | None, received: list[int], ended: set[int]
) -> object:
    """Rank 0's value, or the exception that says best what ended the run."""
    outcomes = mailbox.collect()
    errors = [error for error in (outcomes[rank].error for rank in sorted(outcomes)) if error is not None]
    ours = [error for error in errors if isinstance(error, (FmnistError, KeyboardInterrupt))]
    if ours:
        raise ours[0]
    if 0 in outcomes and outcomes[0].error is None:
        return outcomes[0].value  # finished, whatever arrived after
    if received and not mailbox.any_started():
        name = signal.Signals(received[0]).name
        raise TrainingInterrupted(
            f"interrupted by {name} while the processes were starting; nothing was trained",
            128 + received[0],
            output_dir=Path(config.output_dir) if config.output_dir else None,
        )
    if died is not None:
        raise FmnistError(_death(config, died, mailbox, ended)) from None
    if errors:
        raise errors[0]
    return None  # a machine other than rank 0's: the results are there


def _death(config: Config, died: ProcessException, mailbox: Mailbox, ended: set[int]) -> Message:
    """One line on a process that died, never joined or stopped answering, and what is safe on disk."""
    rank = config.node_rank * config.nproc_per_node + died.error_index
    reason = str(died).strip().splitlines()[-1]
    if died.error_pid in ended:
        what: str | Message = Message(
            "training process {rank} stopped answering (stopped or hung: the others gave up on it after {timeout} "
            "s) and was ended",
            rank=rank,
            timeout=named(Config, "peer_timeout", config.peer_timeout),
        )
    elif isinstance(died, ProcessExitedException):
        how = f"was killed by {died.signal_name}" if died.signal_name else f"exited with code {died.exit_code}"
        what = f"training process {rank} {how}"
    elif mailbox.has_started(died.error_pid):
        what = f"training process {rank} failed ({reason})"
    else:  # it raised before the work began: it could not join its peers
        what = Message(
            "training process {rank} could not join the others within {timeout} s ({reason}); are all {nnodes} "
            "machines started, with the same {master_addr} and {master_port}?",
            rank=rank,
            timeout=config.peer_timeout,
            reason=reason,
            nnodes=config.nnodes,
            master_addr=named(Config, "master_addr"),
            master_port=named(Config, "master_port"),
        )
    latest = find_latest_checkpoint(config.output_dir) if config.output_dir else None
    safe = (
        Message(
            "the checkpoints in {output_dir} are intact (newest: {newest}); continue with {resume}",
            output_dir=config.output_dir,
            newest=latest.name,
            resume=named(Config, "resume", "auto"),
        )
        if latest
        else "no checkpoint was saved"
    )
    return Message("{what}; {safe}", what=what, safe=safe)


def check_main_module() -> None:
    """Spawned processes import the launching script again: a script read from standard input or typed at
    ``python -c`` has no file for them to import, and they would fail before training (one line here)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or "__IPYTHON__" in vars(builtins) or path is None:
        return  # Jupyter forks; python -c and the REPL have no file, which spawn does not look for
    if not os.path.isfile(path):  # "<stdin>": the script of python - is gone
        raise FmnistError(
            "the main module is read from standard input, which spawned processes cannot import: save the script "
            "to a file and run python script.py (or launch it with torchrun)"
        )


class Watchdog:
    """While spawned workers run: once one of them has failed (its peers lost, a crash; not a stop and not a
    mistake of the user's), a worker of this launch that has not handed over its outcome within the peer
    timeout is ended with SIGKILL, which a stopped (SIGSTOP) or hung process cannot ignore, so the launcher
    never waits for it without bound. A run that ends well or is stopped is never touched. ``ended`` holds
    the pids it ended."""

    POLL_S = 0.5

    def __init__(self, mailbox: Mailbox, peer_timeout: float) -> None:
        self.mailbox, self.peer_timeout = mailbox, peer_timeout
        self.ended: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Watchdog:
        if self.mailbox.directory is not None:
            self._thread = threading.Thread(target=self._watch, name="fmnist-ignite-watchdog", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.POLL_S):
            failed = self.mailbox.first_failure()
            if failed is None or time.time() - failed < self.peer_timeout:
                continue
            ours = self.mailbox.started_pids()
            for child in multiprocessing.active_children():  # the launch's own workers, none of the user's
                if child.pid in ours and not self.mailbox.has_finished(child.pid):
                    self.ended.add(child.pid)
                    with suppress(OSError):
                        os.kill(child.pid, signal.SIGKILL)


@contextmanager
def forwarding_stop_signals(mailbox: Mailbox) -> Iterator[list[int]]:
    """While spawned workers run, a stop signal to this process reaches them: a worker that joined its
    peers checkpoints and stops; one still waiting for them is ended at once (it has nothing to save).
    Yields the list of signals received. Only in the main thread, where Python allows handlers."""
    received: list[int] = []
    if mailbox.directory is None or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        for child in multiprocessing.active_children():
            pid = child.pid
            assert pid is not None  # an active child has been started, so it has a pid
            os.kill(pid, signum if mailbox.has_started(pid) else signal.SIGKILL)

    with handling(STOP_SIGNALS, forward):
        yield received


@contextmanager
def quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Loggers that only repeat, as tracebacks, an error the run reports in one line, quiet while inside."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=False):
            logger.setLevel(level)


def train(
    config: Config,
    extra_handlers: Iterable[Callable[[Engine], object]] = (),
    model: torch.nn.Module | None = None,
) -> TrainResult | None:
    """Train on the train split, select on validation, score the test split once with the chosen weights.

    One path for any number of processes (``config.nproc_per_node``, ``nnodes``, or under torchrun or
    srun). With spawned processes ``extra_handlers`` and ``model`` must be picklable (defined at module
    level).

    The run's lines (``Epoch N``, the loss, ``Validation: ...``, the test block) are log records of the
    ``fmnist_ignite`` logger's children, printed on standard output (in a notebook kept by the live view,
    shown folded at the end). ``logging.getLogger("fmnist_ignite").setLevel(logging.WARNING)`` silences them;
    a handler of your own on that logger receives them too.

    Args:
        config: the run's settings (with the environment's, then validated).
        extra_handlers: called with each process's trainer after the standard handlers are attached.
        model: a model of your own instead of the built-in ``config.model``; it gets rank 0's trained weights.

    Returns:
        Rank 0's result; None on the machines of a multi-machine run other than node rank 0's.

    Raises:
        FmnistError: bad settings (``seeds`` among them: ``train_seeds`` trains those), data or output directory.
        TrainingInterrupted: Ctrl-C or SIGTERM stopped the run (resumable).
        NonFiniteLoss: the training loss became NaN or infinite.
    """
    config = config.with_environment().validate()
    if config.seeds:
        raise FmnistError(f"seeds {config.seeds!r} asks for one run per seed: train_seeds(config) trains them")
    spawning = config.world_size > 1 and not launched_externally()
    run_dir = claim_run_directory(config) if spawning and config.node_rank == 0 else None
    if run_dir is not None:  # the launcher holds the lock for its workers
        config = config.replace(output_dir=str(run_dir.path), resume=str(run_dir.resume_from or "") or None)
    handed = RunDirectory(run_dir.path, run_dir.resume_from) if run_dir else None
    try:
        result = launch(config, run_training, tuple(extra_handlers), model, handed)
    except BaseException as exc:
        if run_dir is not None:
            with suppress(OSError):  # a full disk must not hide the error
                close_summary(run_dir.path / "summary.json", exc)
        raise
    finally:
        if run_dir is not None:
            run_dir.release()
    if result is not None and model is not None and result.model is not None and result.model is not model:
        weights = result.model.state_dict()
        match_saved_layout(model, weights)  # a resume of a run begun in the CNN's earlier layout
        model.load_state_dict(weights)  # rank 0's weights, in the caller's own module
        result.model = model
    return result


def run_training(
    config: Config,
    extra_handlers: tuple,
    model: torch.nn.Module | None = None,
    run_dir: RunDirectory | None = None,
) -> TrainResult:
    """One process's part of a run (module level, so spawned processes can import it)."""
    with Training(config, model, run_dir) as training:
        for attach in extra_handlers:
            attach(training.trainer)
        return training.run()

"""The run directory: claimed by one run at a time, holding its saved configuration (written durably:
``fmnist_ignite.files.durable``) and the checkpoint to resume from.

It imports no torch, so the command line can read a run's saved configuration before it imports torch.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import Command, DirectoryInUse, FmnistError
from fmnist_ignite.files.durable import remove_partial_files
from fmnist_ignite.files.layout import LOCK_FILE, ORPHAN_PATTERN, resumable_checkpoints
from fmnist_ignite.files.saved_config import check_saved_config, config_differences, saved_config, write_saved_config
from fmnist_ignite.files.summary import SUMMARY_FILE, read_summary_or_none

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    """A checkpoint file found to resume from: its contents (when intact) or why it is not."""

    path: Path
    checkpoint: dict | None = dataclasses.field(default=None, repr=False)
    damaged: str | None = None


def read_candidates(directory: str | Path) -> list[Candidate]:
    """Each resumable checkpoint of ``directory``, read and checked; the intact ones furthest along first (by
    their trainer's iteration, never by file time: a copied or restored directory has new times). A symbolic
    link is not followed: it is damaged."""
    from fmnist_ignite.files.checkpoints import trainer_iteration  # noqa: PLC0415 (imports torch)

    candidates = []
    for path in resumable_checkpoints(directory):
        if path.is_symlink():
            candidates.append(Candidate(path, damaged=f"{path}: a symbolic link, not a checkpoint of this directory"))
            continue
        try:
            candidates.append(Candidate(path, _read_training_checkpoint(path)))
        except FmnistError as exc:
            candidates.append(Candidate(path, damaged=str(exc)))

    def furthest_along(candidate: Candidate) -> tuple[int, bool]:
        assert candidate.checkpoint is not None  # only intact candidates are sorted
        return trainer_iteration(candidate.checkpoint), candidate.path.name.startswith("training")

    intact = [c for c in candidates if c.checkpoint is not None]
    intact.sort(key=furthest_along, reverse=True)
    return intact + [c for c in candidates if c.checkpoint is None]


def find_latest_checkpoint(directory: str | Path) -> Path | None:
    """The intact checkpoint in ``directory`` to resume from that is furthest along, or None.

    Args:
        directory: a run directory; its damaged checkpoints are passed over.
    """
    found = [c.path for c in read_candidates(directory) if c.checkpoint is not None]
    return found[0] if found else None


def find_latest_run(runs_dir: str | Path = "runs") -> Path | None:
    """The run directory under ``runs_dir`` whose resumable checkpoints were written last, or None (the newest
    run is a matter of time; within a run, ``find_latest_checkpoint`` goes by the state the files hold)."""
    newest: dict[Path, int] = {}
    for run in Path(runs_dir).glob("*/"):
        times = [p.lstat().st_mtime_ns for p in resumable_checkpoints(run) if p.is_file() and not p.is_symlink()]
        if times:
            newest[run] = max(times)
    return max(newest, key=newest.__getitem__) if newest else None


def run_directory_of(config: Config) -> Path | None:
    """The directory a run writes to, when the configuration decides it (else a new one is named)."""
    if config.output_dir:
        return Path(config.output_dir)
    if config.resume == "auto":
        return find_latest_run()
    return Path(config.resume).parent if config.resume else None


def resumed_run_of(config: Config) -> Path | None:
    """The directory of the run a resume continues, whose saved settings apply: the checkpoint's own with
    ``--resume PATH`` (whatever ``--output-dir`` says), else the output directory or the newest run."""
    if config.resume and config.resume != "auto":
        return Path(config.resume).parent
    return run_directory_of(config) if config.resume else None


def resumed_settings(config: Config) -> dict | None:
    """The settings a resume continues with: the ``config.json`` of the run it continues, else (a checkpoint
    copied out of its run) the settings the checkpoint keeps; None for a run that is not a resume."""
    saved = saved_config(resumed_run_of(config))
    if saved is None and config.resume and config.resume != "auto":
        kept = _read_training_checkpoint(Path(config.resume)).get("config")
        saved = None if kept is None else check_saved_config(kept, f"{config.resume}: its saved configuration")
    return saved


def open_lock(directory: Path) -> IO[str]:
    """``directory``'s lock file, opened for reading and writing (created if need be); a symbolic link or
    anything but a regular file there is refused in one line, never written through."""
    path = Path(directory) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FmnistError(f"{path} is a symbolic link: refused (remove it; a run's lock is its own file)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FmnistError(f"{path} is not a regular file: refused (remove it; a run's lock is its own file)")
    return os.fdopen(fd, "r+")


def held_by(directory: Path) -> str | None:
    """The pid of the process holding ``directory``'s run lock, or None when no process holds it."""
    if not (Path(directory) / LOCK_FILE).exists():
        return None
    with open_lock(directory) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return lock.read(64).strip() or "unknown"
        fcntl.flock(lock, fcntl.LOCK_UN)
    return None


def _lock(directory: Path) -> IO[str]:
    """Hold an exclusive OS lock on ``directory`` (released by the OS when this process ends, however)."""
    lock = open_lock(directory)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = lock.read(64).strip() or "unknown"
        lock.close()
        raise DirectoryInUse(
            "{directory} is in use by another run (pid {holder}): wait for it to end, or choose another {output_dir}",
            directory=directory,
            holder=holder,
            output_dir=named(Config, "output_dir"),
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


@dataclass
class RunDirectory:
    """A claimed output directory, the checkpoint a run continues from (None: fresh) and its contents.

    Attributes:
        path: the output directory.
        resume_from: the checkpoint the run continues from; None: a fresh run.
        checkpoint: that checkpoint's contents, as read; None: a fresh run.
        lock: the directory's lock file, held open while the run has the directory; None once released.
    """

    path: Path
    resume_from: Path | None = None
    checkpoint: dict | None = dataclasses.field(default=None, repr=False)
    lock: IO[str] | None = dataclasses.field(default=None, repr=False)

    def release(self) -> None:
        """Let another run have the directory."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def save_config(self, config: Config) -> None:
        """``config.json``: the run's configuration, which a resume continues with."""
        write_saved_config(self.path, config)


def claim_run_directory(config: Config) -> RunDirectory:
    """Claim the run's output directory and find what it continues from, or fail with one line.

    The directory is locked before anything is read or written in it, and temporary files that killed writes
    left are removed; a fresh run refuses one that holds checkpoints; ``--resume auto`` continues from the
    intact checkpoint furthest along (damaged ones are set aside, saying so), or starts again where a kill came
    before the first training checkpoint; a resume whose settings differ from the saved run's in anything that
    changes the result is refused. The lines about removed, damaged or orphaned files, and what it resumes
    from, are this module's logger's.

    Args:
        config: the run's settings: ``output_dir`` (None: a new ``runs/<date>-<time>``) and ``resume``.

    Returns:
        The claimed directory, locked; release it (``RunDirectory.release``) when the run is done.

    Raises:
        FmnistError: one line: the directory is not writable, is another process's, holds checkpoints a fresh
            run would overwrite, or the resume's settings differ from the saved run's.
    """
    directory = run_directory_of(config) or Path(time.strftime("runs/%Y%m%d-%H%M%S"))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = _lock(directory)
    except OSError as exc:
        raise FmnistError(f"output directory {directory} is not writable: {exc.strerror or exc}") from None
    run = RunDirectory(directory, lock=lock)
    try:
        if not os.access(directory, os.W_OK):
            raise FmnistError(f"output directory {directory} is not writable")
        cleaned = remove_partial_files(directory)
        skipped, orphans = _find_resume_checkpoint(run, config)
        saved = run.checkpoint.get("config") if run.checkpoint else None
        if saved is not None:
            check_saved_config(saved, f"{run.resume_from}: its saved configuration")
        differences = config_differences(saved, config) if saved else []
        if differences:
            raise FmnistError(
                f"{run.resume_from} is from a run with other settings; leave them out to continue it as it was "
                f"(or start a new run): {', '.join(differences)}"
            )
    except BaseException:
        run.release()
        raise
    if cleaned:
        logger.info(f"Removed {len(cleaned)} temporary file{'s' * (len(cleaned) > 1)} that interrupted writes left")
    for path, message in skipped:  # kept as evidence, under a name no later resume picks up
        path.rename(path.with_name(path.name + ".damaged"))
        logger.warning(f"Skipped {message}; kept as {path.name}.damaged")
    for path in orphans:
        path.rename(path.with_name(path.name + ".orphaned"))
    if orphans:
        names = ", ".join(f"{path.name}.orphaned" for path in orphans)
        logger.warning(
            f"No training checkpoint in {run.path}: its run was stopped before its first one; starting again "
            f"(its best model kept as {names})"
        )
    elif config.resume:
        logger.info(
            f"Resuming from {run.resume_from}" if run.resume_from else f"No checkpoint in {run.path}: starting fresh"
        )
    return run


def claim_for_process(config: Config, claimed: RunDirectory | None, rank: int, world_size: int) -> RunDirectory:
    """A process's run directory. The directory is claimed once, by ``claim_run_directory``: by the process
    that spawned this one (``claimed``: what it handed on), else by rank 0; in a data-parallel run every
    process gets rank 0's answer (path and checkpoint to resume from), and reads the checkpoint itself."""
    run_dir = claimed
    if run_dir is None and rank == 0:
        run_dir = claim_run_directory(config)
    if world_size == 1:
        if run_dir is None:
            raise RuntimeError("a single process is rank 0: it claims its directory")
        return run_dir
    import torch.distributed  # a data-parallel run has imported torch long before

    answer: list[tuple[Path, Path | None] | None] = [(run_dir.path, run_dir.resume_from) if run_dir else None]
    torch.distributed.broadcast_object_list(answer, src=0)
    if run_dir is not None:
        return run_dir
    if answer[0] is None:
        raise RuntimeError("rank 0 sent no run directory")
    return RunDirectory(*answer[0])


def _find_resume_checkpoint(run: RunDirectory, config: Config) -> tuple[list[tuple[Path, str]], list[Path]]:
    """Set what ``run`` continues from; return the damaged checkpoints skipped on the way (with why) and the
    best-model files a run killed before its first training checkpoint left (to set aside and start again)."""
    names = sorted(path.name for path in run.path.glob("*.pt"))
    if config.resume and config.resume != "auto":
        run.resume_from = Path(config.resume)
        run.checkpoint = _read_training_checkpoint(run.resume_from)
        if names and run.resume_from.parent.resolve() != run.path.resolve():  # never mixed with another run's
            raise FmnistError(
                "{path} already holds checkpoints of another run: resume {name} into its own directory, or give an "
                "empty {output_dir}",
                path=run.path,
                name=run.resume_from.name,
                output_dir=named(Config, "output_dir"),
            )
        return [], []
    if not config.resume:
        if names:
            raise FmnistError(
                "{path} already holds checkpoints of an earlier run: continue it with {resume}, or choose another "
                "{output_dir}",
                path=run.path,
                resume=named(Config, "resume", "auto"),
                output_dir=named(Config, "output_dir"),
            )
        return [], []
    candidates = read_candidates(run.path)
    skipped = [(c.path, c.damaged or "") for c in candidates if c.checkpoint is None]
    if candidates and candidates[0].checkpoint is not None:
        run.checkpoint, run.resume_from = candidates[0].checkpoint, candidates[0].path
        return skipped, []
    if candidates:
        raise FmnistError(f"no intact checkpoint to resume from in {run.path}: {'; '.join(m for _, m in skipped)}")
    orphans = sorted(path for path in run.path.glob(ORPHAN_PATTERN) if not path.is_symlink())
    summary = read_summary_or_none(run.path / SUMMARY_FILE)
    if orphans and summary is not None and summary.finished:  # a finished run whose checkpoints were deleted
        raise FmnistError(
            "{path} holds a finished run of {epochs} epochs whose training checkpoints are gone (only {names}): it "
            "cannot be continued; score its best model with {evaluate}, or choose another {output_dir} for a new run",
            path=run.path,
            epochs=summary.epochs_done,
            names=", ".join(names),
            evaluate=Command.evaluate(run.path),
            output_dir=named(Config, "output_dir"),
        )
    if names and names != [path.name for path in orphans]:
        raise FmnistError(
            "{path} holds no checkpoint to resume from ({names}): choose another {output_dir} for a new run",
            path=run.path,
            names=", ".join(names),
            output_dir=named(Config, "output_dir"),
        )
    return [], orphans


def _read_training_checkpoint(path: Path) -> dict:
    from fmnist_ignite.files.checkpoints import load_checkpoint, require_training_state  # noqa: PLC0415 (torch)

    checkpoint = load_checkpoint(path, map_location="cpu")
    require_training_state(path, checkpoint)
    return checkpoint

"""The run directory: claimed by one run at a time, holding its saved configuration (written durably:
``fmnist_ignite.files.durable``) and the checkpoint to resume from.

It imports no torch, so the command line can read a run's saved configuration before it imports torch.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.saved_config import CONFIG_FILE, config_differences, storable_config

LOCK_FILE = ".lock"


RESUMABLE_PATTERNS = ("training_checkpoint_*.pt", "interrupted_checkpoint_*.pt")


def resumable_checkpoints(directory: str | Path) -> list[Path]:
    """The checkpoints a run can continue from in ``directory``, newest first.

    Files are written under a temporary name and renamed, so a half-written one is never matched.
    """
    found = [path for pattern in RESUMABLE_PATTERNS for path in Path(directory).glob(pattern)]
    return sorted(found, key=lambda path: path.stat().st_mtime_ns, reverse=True)


def find_latest_checkpoint(directory: str | Path) -> Path | None:
    """The most recently written checkpoint to resume from in ``directory``, or None."""
    found = resumable_checkpoints(directory)
    return found[0] if found else None


def find_latest_run(runs_dir: str | Path = "runs") -> Path | None:
    """The run directory under ``runs_dir`` with the most recent resumable checkpoint, or None."""
    latest = [find_latest_checkpoint(run) for run in Path(runs_dir).glob("*/")]
    latest = [path for path in latest if path is not None]
    return max(latest, key=lambda path: path.stat().st_mtime_ns).parent if latest else None


def run_directory_of(config: Config) -> Path | None:
    """The directory a run writes to, when the configuration decides it (else a new one is named)."""
    if config.output_dir:
        return Path(config.output_dir)
    if config.resume == "auto":
        return find_latest_run()
    return Path(config.resume).parent if config.resume else None


def _lock(directory: Path):
    """Hold an exclusive OS lock on ``directory`` (released by the OS when this process ends, however)."""
    lock = open(directory / LOCK_FILE, "a+")  # noqa: SIM115 (held open for the whole run)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        raise FmnistError(
            f"{directory} is in use by another run (pid {holder}): wait for it to end, or choose another --output-dir"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


@dataclass
class RunDirectory:
    """A claimed output directory, the checkpoint a run continues from (None: fresh) and its contents."""

    path: Path
    resume_from: Path | None = None
    checkpoint: dict | None = dataclasses.field(default=None, repr=False)
    lock: object = dataclasses.field(default=None, repr=False)

    def release(self) -> None:
        """Let another run have the directory."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def save_config(self, config: Config) -> None:
        """``config.json``: the run's configuration, which a resume continues with."""
        from fmnist_ignite.files.durable import write_durably

        write_durably(self.path / CONFIG_FILE, json.dumps(storable_config(config), indent=2) + "\n")


def claim_run_directory(config: Config, log) -> RunDirectory:
    """Claim the run's output directory and find what it continues from, or fail with one line.

    The directory is locked before anything is read or written in it; a fresh run refuses one that
    holds checkpoints; ``--resume auto`` skips damaged checkpoints (saying so) for the newest intact one;
    a resume whose settings differ from the saved run's in anything that changes the result is refused.
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
        skipped = _find_resume_checkpoint(run, config)
        saved = run.checkpoint.get("config") if run.checkpoint else None
        differences = config_differences(saved, config) if isinstance(saved, dict) else []
        if differences:
            raise FmnistError(
                f"{run.resume_from} is from a run with other settings; leave them out to continue it as it was "
                f"(or start a new run): {', '.join(differences)}"
            )
    except BaseException:
        run.release()
        raise
    for path, message in skipped:  # kept as evidence, under a name no later resume picks up
        path.rename(path.with_name(path.name + ".damaged"))
        log(f"Skipped {message}; kept as {path.name}.damaged")
    if config.resume:
        log(f"Resuming from {run.resume_from}" if run.resume_from else f"No checkpoint in {run.path}: starting fresh")
    return run


def _find_resume_checkpoint(run: RunDirectory, config: Config) -> list[tuple[Path, str]]:
    """Set what ``run`` continues from; return the damaged checkpoints skipped on the way, with why."""
    if config.resume and config.resume != "auto":
        run.resume_from = Path(config.resume)
        run.checkpoint = _read_training_checkpoint(run.resume_from)
        return []
    others = sorted(path.name for path in run.path.glob("*.pt"))
    if not config.resume:
        if others:
            raise FmnistError(
                f"{run.path} already holds checkpoints of an earlier run: continue it with --resume auto, "
                "or choose another --output-dir"
            )
        return []
    candidates = resumable_checkpoints(run.path)
    if not candidates and others:
        raise FmnistError(
            f"{run.path} holds no checkpoint to resume from ({', '.join(others)}): "
            "choose another --output-dir for a new run"
        )
    skipped = []
    for path in candidates:
        try:
            run.checkpoint, run.resume_from = _read_training_checkpoint(path), path
            break
        except FmnistError as exc:
            skipped.append((path, str(exc)))
    if candidates and run.checkpoint is None:
        raise FmnistError(f"no intact checkpoint to resume from in {run.path}: {'; '.join(m for _, m in skipped)}")
    return skipped


def _read_training_checkpoint(path: Path) -> dict:
    from fmnist_ignite.files.checkpoints import load_checkpoint, require_training_state

    checkpoint = load_checkpoint(path, map_location="cpu")
    require_training_state(path, checkpoint)
    return checkpoint

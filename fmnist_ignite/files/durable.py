"""Durable writes: a file or checkpoint a crash or power loss leaves old or new, whole, never half written.

Every file a run keeps (config.json, metrics.csv, summary.json, the checkpoints, a study's best.yaml)
goes through here.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import suppress
from pathlib import Path

import ignite.distributed as idist
from ignite.handlers import DiskSaver


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes, e.g. an ``.npz``) to ``path`` through a fsynced temporary file, a rename
    and a fsync of the directory.

    After a crash or power loss ``path`` is the old file or the new one, whole; a failed write leaves
    the old file and no temporary file.
    """
    path = Path(path)
    mode = "wb" if isinstance(text, bytes) else "w"
    with tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        try:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException as exc:
            tmp.close()
            os.remove(tmp.name)
            if isinstance(exc, OSError):
                raise OSError(exc.errno, exc.strerror, str(path)) from None  # named: the file the user has
            raise
    os.chmod(tmp.name, 0o666 & ~_umask())  # as open() would make it, not the temporary file's 0600
    os.replace(tmp.name, path)
    fsync_directory(path.parent)


def disk_full(exc: BaseException) -> bool:
    """Whether a write failed for want of space (or of quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would set it for a moment, for every thread)."""
    with suppress(OSError, StopIteration, ValueError):
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)  # no /proc: the old way
    os.umask(mask)
    return mask


class DurableDiskSaver(DiskSaver):
    """Ignite's ``DiskSaver`` (atomic: a temporary file, then a rename) with the data and the rename fsynced."""

    def __init__(self, dirname: str | Path, **kwargs):
        super().__init__(dirname, require_empty=False, **kwargs)

    def _save_func(self, checkpoint, path: Path, func) -> None:
        def save_and_fsync(obj, file, **kwargs):
            func(obj, file, **kwargs)
            file.flush()
            os.fsync(file.fileno())

        try:
            super()._save_func(checkpoint, path, save_and_fsync)  # removes its temporary file on failure
        except (OSError, RuntimeError) as exc:
            cause = exc if isinstance(exc, OSError) else exc.__context__  # torch's zip writer wraps the OSError
            if not isinstance(cause, OSError):
                raise
            raise OSError(cause.errno, cause.strerror, str(path)) from None
        fsync_directory(Path(path).parent)

    def remove(self, filename: str) -> None:
        """Delete an old checkpoint; one already gone is fine (a resume from an older checkpoint
        remembers files that the run after it deleted)."""
        if idist.get_rank() == self.save_on_rank:
            (self.dirname / filename).unlink(missing_ok=True)

"""Durable writes: a file a crash or power loss leaves old or new, whole, never half written, and a write that
never follows a symbolic link.

Every file a run or a study keeps goes through here (``config.json``, ``metrics.csv``, ``summary.json``, the
predictions, the plots, ``best.yaml``; the checkpoints through ``files.checkpoints.DurableDiskSaver``): it is
written to a temporary file beside it, fsynced, renamed over the name and the directory fsynced. A rename
replaces a symbolic link planted at the name; it never writes through it. A temporary file left by a kill is
named ``.NAME.XXXXXXXX.partial`` and removed by ``remove_partial_files`` when the directory is next claimed.

Imports no torch.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, Protocol

PARTIAL_SUFFIX = ".partial"
PARTIAL_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.partial$")  # what tempfile.mkstemp makes below


class SavableFigure(Protocol):
    """What ``write_figure`` needs of a figure (a matplotlib ``Figure``, without importing matplotlib here)."""

    def savefig(self, fname: IO[bytes], *, format: str, dpi: float | None) -> object: ...


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def named(exc: OSError, path: Path) -> OSError:
    """The same error, naming the file the user has rather than its temporary file."""
    return OSError(exc.errno, exc.strerror, str(path))


def replace_atomically(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a new temporary file beside ``path``, fsync it, and rename it over ``path``.

    After a crash ``path`` is the old file or the new one, whole. A failed write leaves the old file and no
    temporary file; an error names ``path``, not the temporary file.
    """
    path = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
    except OSError as exc:  # no space or no inode for even an empty file, a read-only or missing directory
        raise named(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~umask())  # as open() would make it, not mkstemp's 0600
        os.replace(temporary, path)
    except BaseException as exc:
        with suppress(OSError):
            os.remove(temporary)
        # torch's zip writer reports a failed write (a full disk) as a RuntimeError raised while handling it
        cause = exc if isinstance(exc, OSError) else exc.__context__ if isinstance(exc, RuntimeError) else None
        if isinstance(cause, OSError):
            raise named(cause, path) from None
        raise
    fsync_directory(path.parent)


def write_durably(path: Path, text: str | bytes) -> None:
    """Write ``text`` to ``path`` through a fsynced temporary file and a rename (``replace_atomically``).

    A crash or a power loss leaves the old file or the new one, whole, never half written.

    Args:
        path: the file to write (or replace).
        text: what it is to hold: text (written as UTF-8) or bytes, e.g. an ``.npz`` or a PNG.
    """
    data = text.encode() if isinstance(text, str) else text
    replace_atomically(Path(path), lambda stream: stream.write(data))


def write_figure(figure: SavableFigure, path: str | Path, dpi: float | None = None) -> None:
    """Save a matplotlib figure at ``path`` (in the format its suffix names, PNG by default), durably and
    without following a link there."""
    path = Path(path)
    kind = path.suffix.lstrip(".").lower() or "png"
    replace_atomically(path, lambda stream: figure.savefig(stream, format=kind, dpi=dpi))


def open_log(path: Path) -> IO[str]:
    """``path`` opened to append text lines (a trial's ``train.log``), created if need be; a symbolic link or
    anything but a regular file there is refused (``OSError``), never written through."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "a", encoding="utf-8")


def remove_partial_files(directory: Path) -> list[Path]:
    """Remove the temporary files that killed writes left in ``directory`` (regular files named as
    ``replace_atomically`` names them, nothing else); return them. Call it only while holding the directory."""
    removed = []
    with suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if PARTIAL_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                with suppress(OSError):
                    os.remove(entry.path)
                    removed.append(Path(entry.path))
    return removed


def disk_full(exc: BaseException) -> bool:
    """Whether a write failed for want of space (or of quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would set it for a moment, for every thread)."""
    with suppress(OSError, StopIteration, ValueError), open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0)  # no /proc: the old way
    os.umask(mask)
    return mask

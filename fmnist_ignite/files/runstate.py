"""How a run directory stands, read from its files as the untrusted input they are: finished, stopped early,
interrupted (and how to continue it), failed, running in a live process, or damaged (and why, in one line).

``summary.json`` says how a run ended, but a run killed outright (``kill -9``, a node lost) never rewrote its
``running``: the directory's lock (``.lock``, held by the live run's process, released by the OS when the
process ends however it ends) tells a live run from a killed one. The lock is only looked at, never taken
for longer than the test itself, and only where the summary does not say the run finished. Imports no torch.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from fmnist_ignite.config.commands import RUN_STATUSES
from fmnist_ignite.errors import FmnistError, shell_command
from fmnist_ignite.files.layout import LOCK_FILE, RESUMABLE_PATTERNS
from fmnist_ignite.files.summary import SUMMARY_FILE, RunStatus, RunSummary, read_summary

STATUSES = RUN_STATUSES  # what the command line's --status offers
CONFIG_FILE = "config.json"  # files.saved_config's; named here without importing it
RUN_MARKERS = (SUMMARY_FILE, CONFIG_FILE)  # a directory holding either (whatever it is) is a run's


@dataclass
class RunState:
    """How one run directory stands.

    Attributes:
        path: the directory.
        status: one of ``STATUSES``.
        note: what a person needs beside the status, in one line: why it failed or is damaged, the process
            that runs it, the command that continues it; "" when there is nothing to add.
        summary: its ``summary.json``, read and checked; None when there is none or it is damaged.
        resumable: whether ``--resume auto`` continues it from a checkpoint it holds.
    """

    path: Path
    status: str
    note: str = ""
    summary: RunSummary | None = None
    resumable: bool = False


def continue_command(directory: Path) -> str:
    """The command that continues the interrupted run in ``directory``, quoted to run as printed."""
    return shell_command("fmnist-ignite train", resume="auto", output_dir=directory)


def live_holder(directory: Path) -> str | None:
    """The process that holds ``directory``'s run lock now (its pid as the lock file says it, or "unknown"),
    or None when no live process does. Read-only: the lock file is opened to read (never created, never
    through a link) and tested with a shared lock released at once."""
    try:
        fd = os.open(Path(directory) / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # no lock file, a link planted there, or unreadable: no run of this library holds it
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            pid = os.read(fd, 32).decode("ascii", "replace").strip()
            return pid if pid.isdigit() else "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def has_checkpoint(names: list[str]) -> bool:
    """Whether a directory of these entry names holds a checkpoint a resume continues from."""
    return any(fnmatch.fnmatch(name, pattern) for name in names for pattern in RESUMABLE_PATTERNS)


def read_run_state(directory: Path, names: list[str] | None = None) -> RunState:
    """How the run in ``directory`` stands (see the module's docstring); never raises for what its files hold.

    Args:
        directory: a run directory.
        names: the names of its entries, when the caller listed them already; None: listed here.
    """
    directory = Path(directory)
    if names is None:
        try:
            names = os.listdir(directory)
        except OSError as exc:
            return RunState(directory, "damaged", f"{directory}: cannot list it ({exc.strerror})")
    try:
        summary = read_summary(directory / SUMMARY_FILE)
    except FmnistError as exc:
        return RunState(directory, "damaged", one_line(str(exc)))
    resumable = has_checkpoint(names)
    if summary is not None and summary.status is RunStatus.COMPLETED:
        status = "stopped-early" if summary.stopped_early else "finished"
        return RunState(directory, status, "", summary, resumable)
    holder = live_holder(directory)
    if holder is not None:
        return RunState(directory, "running", f"in use by a live process (pid {holder})", summary, resumable)
    if summary is not None and summary.status is RunStatus.FAILED:  # a full disk, a lost peer: it may go on
        again = f"; once that is fixed, continue it: {continue_command(directory)}" if resumable else ""
        return RunState(directory, "failed", one_line(summary.failure or "failed") + again, summary, resumable)
    if summary is not None and summary.status is RunStatus.NON_FINITE:
        return RunState(directory, "failed", "the loss became NaN or infinite (a learning rate too large?)", summary)
    if summary is None:
        how = "it has no summary.json: stopped before its first one"
    elif summary.status is RunStatus.RUNNING:
        how = "killed: its summary still says running, and no live process holds it"
    else:
        how = ""
    then = "continue it" if resumable else "no checkpoint yet, so it starts again"
    note = "; ".join(part for part in (how, f"{then}: {continue_command(directory)}") if part)
    return RunState(directory, "interrupted", note, summary, resumable)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line of at most ``limit`` characters (a reason read from a file may hold newlines)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def printable(text: str) -> str:
    """``text`` with each character a terminal would act on (an escape sequence, a newline, ...) written as
    its escape (``\\x1b``): a name or a reason read from a file cannot forge a line or recolour a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)

"""Standard output and error that never fail a run: a character the terminal's encoding lacks is escaped, a
reader gone (``| head``) ends the output quietly, a stream that cannot be written (``> /dev/full``) is said
once on standard error and dropped. The training goes on either way; its files say what it did.

The command line installs it (``guard_console``); a run's lines are written through it (``say``).

The run's lines are log records of the package's loggers (``logging.getLogger(__name__)`` in each module
that says something). One handler, installed on the ``fmnist_ignite`` logger when the package is imported
(``install``), writes each record's message, as it is, as one line to the current destination: standard
output unless a run or a caller chose another (``lines_to``: above a terminal's progress bar, a notebook
view's folded text, a tuning trial's ``train.log``). ``logging.getLogger("fmnist_ignite").setLevel(
logging.WARNING)`` silences the lines; a handler of your own on that logger receives them as well.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any, TextIO


class SafeStream(io.TextIOBase):
    """A text stream whose writes never raise.

    Args:
        stream: the stream written to (``sys.stdout``).
        name: what the one line about a failed write calls it ("standard output").
    """

    _lost: set[int] = set()  # the descriptors found closed or failing, this process: each said once, then skipped

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__()
        self.stream, self.name = stream, name

    @classmethod
    def around(cls, stream: TextIO, name: str) -> TextIO:
        """``stream`` itself when it is already safe, else a ``SafeStream`` around it."""
        return stream if isinstance(stream, SafeStream) else cls(stream, name)  # type: ignore[return-value]

    def _key(self) -> int:
        with contextlib.suppress(Exception):
            return self.stream.fileno()
        return id(self.stream)

    def write(self, text: str) -> int:
        if self._key() in self._lost:
            return len(text)
        try:
            try:
                self.stream.write(text)
            except UnicodeEncodeError:  # escaped as Python would show it: \xe9, never a crash
                encoding = self.stream.encoding or "ascii"
                self.stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except OSError as exc:
            self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if self._key() in self._lost:
            return
        try:
            self.stream.flush()
        except OSError as exc:
            self._lose(exc)

    def _lose(self, exc: OSError) -> None:
        """A write failed: no more writes to this stream; a reader gone is no news, anything else is said once."""
        key = self._key()
        self._lost.add(key)
        if key in (1, 2):  # the process's own stdout or stderr: no flush at exit may fail on it again
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, key)
                os.close(devnull)
        if not isinstance(exc, BrokenPipeError) and self.name != "standard error":
            with contextlib.suppress(Exception):
                print(f"warning: cannot write to {self.name} ({exc.strerror or exc}); the run goes on", file=sys.stderr)

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.stream.encoding

    def __getattr__(self, name: str) -> Any:  # anything else a caller asks of the stream (buffer, errors, ...)
        return getattr(self.stream, name)


@contextlib.contextmanager
def guard_console() -> Iterator[None]:
    """While inside, ``sys.stdout`` and ``sys.stderr`` are ``SafeStream``s (put back on leaving)."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout = SafeStream.around(stdout, "standard output")
    sys.stderr = SafeStream.around(stderr, "standard error")
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        sys.stdout, sys.stderr = stdout, stderr


def safe_stdout() -> TextIO:
    """``sys.stdout`` as a ``SafeStream``."""
    return SafeStream.around(sys.stdout, "standard output")


def say(line: str) -> None:
    """Print ``line`` on standard output, through a ``SafeStream``: where the lines go unless told otherwise."""
    print(line, file=safe_stdout())


PACKAGE_LOGGER = "fmnist_ignite"  # the loggers of every module are below it
Destination = Callable[[str], None]  # where a line goes: one call per line
# A ContextVar, not a global: each run chooses its lines' destination, and runs in threads of one process (or
# a tuning trial beside its worker's own lines) must not send them to each other's.
_destination: contextvars.ContextVar[Destination] = contextvars.ContextVar("fmnist_ignite_lines", default=say)


def destination() -> Destination:
    """Where the lines go now, in this thread: ``say`` unless ``lines_to`` chose another."""
    return _destination.get()


@contextlib.contextmanager
def lines_to(where: Destination) -> Iterator[None]:
    """While inside, the package's lines go to ``where`` instead of standard output: in this thread (or
    asyncio task) only, so runs in other threads keep theirs. A run started inside sends its lines there too.

    Args:
        where: called with each line (a list's ``append``, a notebook view's ``log``, a file's writer).

    Examples:
        >>> import torch
        >>> from ignite.engine import Engine
        >>> from fmnist_ignite import attach_epoch_header, lines_to
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> _ = attach_epoch_header(trainer)
        >>> lines = []
        >>> with lines_to(lines.append):
        ...     _ = trainer.run([0], max_epochs=2)
        >>> [line.splitlines()[0] for line in lines]
        ['Epoch 1', 'Epoch 2']
    """
    token = _destination.set(where)
    try:
        yield
    finally:
        _destination.reset(token)


def no_lines(line: str) -> None:
    """A destination that says nothing (the processes of a run but rank 0's)."""


def to_file(stream: IO[str]) -> Destination:
    """A destination that writes each line to ``stream`` (a trial's ``train.log``), flushed at once."""

    def write(line: str) -> None:
        print(line, file=stream, flush=True)

    return write


class LineHandler(logging.Handler):
    """Writes each record's message, nothing added, as one line to the current ``destination()``."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self._failed: list[Destination] = []  # the destinations a line could not be written to, each said once

    def emit(self, record: logging.LogRecord) -> None:
        where = _destination.get()
        try:
            where(self.format(record))
        except Exception as exc:  # noqa: BLE001 (logging's own rule: a line that cannot be written never fails the run)
            self._said_once(where, exc)

    def _said_once(self, where: Destination, exc: Exception) -> None:
        """A line not written (a trial's ``train.log`` on a full disk, a caller's destination that raised): one
        line on standard error for each destination, not logging's traceback for every line; later lines are
        tried again. Silent where ``logging.raiseExceptions`` is False, as logging's own ``handleError`` is."""
        if not logging.raiseExceptions or any(failed is where for failed in self._failed):
            return
        self._failed.append(where)  # kept, so that its id is never another destination's
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(Exception):
            print(
                f"warning: cannot write the run's lines ({why}); the run goes on",
                file=SafeStream.around(sys.stderr, "standard error"),
            )


def install() -> None:
    """Give the ``fmnist_ignite`` logger its ``LineHandler``, at level INFO and not passed on to the root
    logger (so a ``logging.basicConfig`` does not print each line twice). Idempotent; a level set, or a
    handler added, before it is kept (then no handler is added)."""
    logger = logging.getLogger(PACKAGE_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    if not logger.handlers:
        logger.addHandler(LineHandler())
        logger.propagate = False

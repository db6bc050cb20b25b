"""Standard output and error that never fail a run: a character the terminal's encoding lacks is escaped, a
reader gone (``| head``) ends the output quietly, a stream that cannot be written (``> /dev/full``) is said
once on standard error and dropped. The training goes on either way; its files say what it did.

The command line installs it (``guard_console``); a run's default log writes through it (``say``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO


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
    """Print ``line`` on standard output, through a ``SafeStream``: a run's default log."""
    print(line, file=safe_stdout())

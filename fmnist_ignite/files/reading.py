"""Reading a file back from a run directory or a study as the input it is: never through a symbolic link,
only a regular file, never more bytes than its kind may hold, and anything else one line naming the file.

Imports no torch.
"""

from __future__ import annotations

import errno
import json
import math
import os
import stat
from pathlib import Path
from typing import IO

from fmnist_ignite.errors import FmnistError


def open_regular(path: Path, limit: int, what: str, follow_links: bool = False) -> IO[bytes] | None:
    """``path`` opened to read, or None when there is no such file. Refused in one line: a symbolic link
    unless ``follow_links`` (a file of a run directory is read from the directory itself, not from where a
    link points; a path the user typed may be one), anything but a regular file (a device or a FIFO is never
    read from), a file over ``limit`` bytes (its size checked before a byte is read)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_links:
            refused = f"{path}: a symbolic link, not {what}: refused (files are read from the directory)"
            raise FmnistError(refused) from None
        raise FmnistError(f"{path}: cannot read it ({exc.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise FmnistError(f"{path}: a directory, not {what}")
        if not stat.S_ISREG(info.st_mode):
            raise FmnistError(f"{path}: not a regular file, so not {what}")
        raise FmnistError(f"{path}: {info.st_size:,} bytes, more than {what} may be ({limit:,})")
    return os.fdopen(fd, "rb")  # checked first: Python cannot open a directory's descriptor as a file


def read_bounded(path: Path, limit: int, what: str) -> bytes | None:
    """The bytes of ``path`` (opened as ``open_regular`` opens it, links refused), or None when there is no
    such file."""
    path = Path(path)
    opened = open_regular(path, limit, what)
    if opened is None:
        return None
    with opened as stream:
        try:
            data = stream.read(limit + 1)
        except OSError as exc:
            raise FmnistError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(data) > limit:  # it grew while being read
        raise FmnistError(f"{path}: more than {limit:,} bytes, more than {what} may be")
    return data


def read_json(path: Path, limit: int, what: str) -> object | None:
    """The JSON data of ``path`` (read as ``read_bounded`` reads), or None when there is no such file. Not
    UTF-8, not JSON, nested too deep, or holding NaN or infinity: one line naming the file."""
    data = read_bounded(path, limit, what)
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise FmnistError(f"{path}: not {what} (not valid JSON: {reason})") from None
    except RecursionError:
        raise FmnistError(f"{path}: not {what} (nested too deep)") from None


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a file of this library holds")


# ------------------------------------------------------------------------------------ checking the shapes


class Shape:
    """Checks of the values a file holds, each failing as one line naming the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, expected: str, value: object) -> FmnistError:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return FmnistError(f"{self.source}: {key}: expected {expected}, got {shown}")

    def mapping(self, value: object, key: str) -> dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise self.fail(key, "a mapping", value)
        return value

    def text(self, value: object, key: str, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "text", value)
        return value

    def integer(self, value: object, key: str, low: int = 0, optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise self.fail(key, f"an integer >= {low}", value)
        return value

    def number(self, value: object, key: str, optional: bool = False) -> float | None:
        if value is None and optional:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self.fail(key, "a finite number", value)
        return float(value)

    def fraction(self, value: object, key: str, optional: bool = False) -> float | None:
        number = self.number(value, key, optional)
        if number is not None and not 0.0 <= number <= 1.0:
            raise self.fail(key, "a fraction in [0, 1]", value)
        return number

    def interval(self, value: object, key: str) -> list[float] | None:
        """A 95% interval of a fraction: ``[low, high]`` in [0, 1], or None."""
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(key, "[low, high]", value)
        low, high = (self.fraction(v, key) for v in value)
        if low is None or high is None or low > high:
            raise self.fail(key, "low <= high", value)
        return [low, high]

    def flag(self, value: object, key: str, optional: bool = False) -> bool | None:
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            raise self.fail(key, "true or false", value)
        return value

"""Where ``--precision auto`` keeps what it measured: one small JSON file for the user, so that a machine
measures a model's step once (``core.precision``).

The file is ``$XDG_CACHE_HOME/fmnist-ignite/precision.json`` (``~/.cache/...`` without ``XDG_CACHE_HOME``);
``FMNIST_PRECISION_CACHE`` names another file, or turns the cache off with ``0`` (``false``, ``no``, ``off``).
It is read back as the untrusted input it is (``files.reading``: no symbolic link, a regular file, at most
``CACHE_LIMIT`` bytes, each entry checked) and written durably (``files.durable``). A cache that cannot be
written is no error: the next run measures again.

Imports no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.reading import Shape, read_json

CACHE_ENV = "FMNIST_PRECISION_CACHE"
CACHE_LIMIT = 256 * 1024
MAX_ENTRIES = 200  # the oldest go first: a few entries a machine and model, many machines over a shared home
VERSION = 1
WHAT = "a precision cache of fmnist-ignite"


def precision_cache_path(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The cache file, or None when ``FMNIST_PRECISION_CACHE`` turns the cache off.

    Args:
        environ: where ``FMNIST_PRECISION_CACHE`` and ``XDG_CACHE_HOME`` are read.
    """
    said = environ.get(CACHE_ENV, "").strip()
    if said.lower() in {"0", "false", "no", "off"}:
        return None
    if said:
        return Path(said).expanduser()
    base = environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "fmnist-ignite" / "precision.json"


class PrecisionCache:
    """The measurements of earlier runs, by key (``core.precision.cache_key``): each a mapping of numbers
    (milliseconds a step in each precision) and a ``date``.

    Args:
        path: the file; None: no cache (nothing is read or written).
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.refused: str | None = None  # why the file was not used, in one line, once read

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> PrecisionCache:
        """The cache ``FMNIST_PRECISION_CACHE`` and ``XDG_CACHE_HOME`` say (``precision_cache_path``)."""
        return cls(precision_cache_path(environ))

    def _entries(self) -> dict[str, dict[str, object]]:
        """Every entry of the file ({} without one); refused in one line (``FmnistError``): a link, not a regular
        file, too large, not JSON, or not of this shape."""
        if self.path is None:
            return {}
        data = read_json(self.path, CACHE_LIMIT, WHAT)
        if data is None:
            return {}
        shape = Shape(str(self.path))
        top = shape.mapping(data, "(top level)")
        if top.get("version") != VERSION:
            raise shape.fail("version", str(VERSION), top.get("version"))
        entries = shape.mapping(top.get("measurements"), "measurements")
        for key, entry in entries.items():
            for name, value in shape.mapping(entry, key).items():
                if name == "date":
                    shape.text(value, f"{key}: date")
                elif (number := shape.number(value, f"{key}: {name}")) is None or number <= 0:
                    raise shape.fail(f"{key}: {name}", "a positive number", value)
        return entries

    def lookup(self, key: str) -> dict[str, object] | None:
        """The entry kept for ``key``, or None: none kept, no cache, or the file refused (``refused`` says why)."""
        try:
            return self._entries().get(key)
        except FmnistError as exc:
            self.refused = str(exc)
            return None

    def store(self, key: str, entry: dict[str, object]) -> bool:
        """Keep ``entry`` for ``key`` beside the others; False when it was not kept (no cache, a file refused
        on reading, which is left as it is, or one that cannot be written)."""
        if self.path is None:
            return False
        try:
            entries = self._entries()
        except FmnistError as exc:
            self.refused = str(exc)
            return False
        entries.pop(key, None)
        entries[key] = entry
        kept = dict(list(entries.items())[-MAX_ENTRIES:])
        text = json.dumps({"version": VERSION, "measurements": kept}, indent=1) + "\n"
        with suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_durably(self.path, text)
            return True
        return False

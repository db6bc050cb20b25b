"""A run's saved configuration: ``config.json`` in its directory, and the same data inside each training
checkpoint, from which a resume, ``evaluate`` and ``predict`` learn how the run was made.

Both are read back as input: at most ``MAX_CONFIG_BYTES``, a mapping of known settings each of its setting's
type and accepted by ``Config``, else one line naming the file and the key. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from fmnist_ignite.config.settings import Config, settings
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.reading import read_json

CONFIG_FILE = "config.json"
MAX_CONFIG_BYTES = 64 << 10  # a saved configuration is about 2 kB
# What a resumed run may change (config/settings.py marks each setting): where and how it runs, for how long,
# what it shows; never what it computes.
CHANGEABLE_ON_RESUME = frozenset(name for name, s in settings().items() if s.on_resume)


def check_saved_config(data: object, source: str) -> dict:
    """``data`` if it is a saved configuration: a mapping of ``Config`` settings, each value of its setting's
    type, the whole accepted by ``Config.validate`` (but for where the data lies, which the machine decides)."""
    if not isinstance(data, dict):
        raise FmnistError(f"{source}: not a saved configuration (a {type(data).__name__}, not a mapping of settings)")
    known = settings()
    for key, value in data.items():
        if key not in known:
            raise FmnistError(f"{source}: not a saved configuration of this version (unknown setting {key!r})")
        if not known[key].accepts(value):
            expected = known[key].annotation.replace(" | None", " or null")
            raise FmnistError(f"{source}: {key}: expected {expected}, got {str(repr(value))[:60]}")
    try:
        Config(**data).validate(check_paths=False)
    except FmnistError as exc:
        raise FmnistError(f"{source}: {exc}") from None
    return data


def saved_config(directory: Path | None) -> dict | None:
    """The configuration a run saved in ``directory`` (its ``config.json``, checked), or None when there is none."""
    if directory is None:
        return None
    path = Path(directory) / CONFIG_FILE
    data = read_json(path, MAX_CONFIG_BYTES, "a saved configuration")
    return None if data is None else check_saved_config(data, str(path))


def write_saved_config(directory: Path, config: Config) -> None:
    """``config.json``: the run's configuration, which a resume continues with."""
    write_durably(Path(directory) / CONFIG_FILE, json.dumps(storable_config(config), indent=2) + "\n")


def config_differences(saved: dict, config: Config) -> list[str]:
    """``name: saved -> given`` for each setting that changes what the run computes."""
    given = dataclasses.asdict(config)
    return [
        f"{name}: {saved[name]!r} -> {given[name]!r}"
        for name in given
        if name not in CHANGEABLE_ON_RESUME and name in saved and saved[name] != given[name]
    ]


def storable_config(config: Config) -> dict:
    """The configuration as plain data, as a checkpoint and ``config.json`` keep it (without what the
    machine's environment decides, which a replay elsewhere decides anew)."""
    machine = {name: None for name, setting in settings().items() if setting.from_environment}
    return {**dataclasses.asdict(config), "resume": None, **machine}


class SavedConfig:
    """The run's configuration as plain data inside each training checkpoint, so a resume can check it."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def state_dict(self) -> dict:
        return storable_config(self.config)

"""A run's saved configuration: ``config.json`` in its directory, and the same data inside each training
checkpoint, from which a resume, ``evaluate`` and ``predict`` learn how the run was made.

It imports no torch, so the command line can read a run's saved configuration before it imports torch."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from fmnist_ignite.config.settings import Config, settings
from fmnist_ignite.errors import FmnistError

CONFIG_FILE = "config.json"
# What a resumed run may change (config/settings.py marks each setting): where and how it runs, for how long, what it
# shows; never what it computes.
CHANGEABLE_ON_RESUME = frozenset(name for name, s in settings().items() if s.on_resume)


def saved_config(directory: Path | None) -> dict | None:
    """The configuration a run saved in ``directory`` (its ``config.json``), or None when there is none."""
    path = directory / CONFIG_FILE if directory else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FmnistError(f"{path}: not a readable saved configuration ({exc})") from None


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

    def __init__(self, config: Config):
        self.config = config

    def state_dict(self) -> dict:
        return storable_config(self.config)

"""What a study searches: the default space, a space read from a file and checked, one draw of it."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import CategoricalChoiceType

from fmnist_ignite.config.files import read_settings_file
from fmnist_ignite.config.settings import Config, settings
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.saved_config import storable_config

# How a trial runs (config/settings.py marks each setting): not searched, and not kept in a trial's settings.
RUN_SETTINGS = tuple(name for name, s in settings().items() if not s.tunable)
# What a study searches unless told otherwise: a list is a choice, a mapping a range (log: on a log scale).
DEFAULT_SPACE = {
    "lr": {"low": 1e-4, "high": 3e-2, "log": True},
    "optimizer": ["sgd", "adam", "adamw"],
    "weight_decay": {"low": 1e-5, "high": 0.1, "log": True},
    "dropout": {"low": 0.0, "high": 0.5},
    "label_smoothing": {"low": 0.0, "high": 0.2},
    "batch_size": [64, 128, 256, 512],
}
"""The search space ``tune`` uses when none is given.

Each ``Config`` setting maps to a list of choices or a range (``low`` and ``high``, with ``log`` on a log
scale). A search space of one's own, a dict like it or a YAML file of the same shape (``read_search_space``),
replaces it whole; start from a copy, e.g. ``{**DEFAULT_SPACE, "epochs": [10, 20]}``.
"""


def check_search_space(space: object, source: str = "search space") -> dict:
    """Return ``space`` if every entry names a ``Config`` field with a choice list or a low/high range
    whose values ``Config`` accepts; else raise FmnistError naming the entry."""
    if not isinstance(space, dict) or not space:
        raise FmnistError(f"{source}: expected a mapping of setting: [choices] or {{low, high, log}}")
    fields = set(storable_config(Config()))
    for name, spec in space.items():
        if name not in fields or name in RUN_SETTINGS:
            raise FmnistError(f"{source}: {name!r} is not a setting a trial can vary")
        if isinstance(spec, list) and spec:
            values = spec
        elif isinstance(spec, dict) and set(spec) <= {"low", "high", "log", "step"} and {"low", "high"} <= set(spec):
            low, high = spec["low"], spec["high"]
            if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and low < high):
                raise FmnistError(f"{source}: {name}: low must be a number below high, got {low} and {high}")
            if spec.get("log") and low <= 0:
                raise FmnistError(f"{source}: {name}: a log scale needs low > 0, got {low}")
            if spec.get("log") and spec.get("step") is not None:
                raise FmnistError(f"{source}: {name}: a range takes a step or a log scale, not both")
            values = [low, high]
        else:
            raise FmnistError(f"{source}: {name}: expected a list of choices or a mapping with low and high")
        for value in values:
            try:
                Config(**{name: value}).validate()
            except (FmnistError, TypeError) as exc:
                raise FmnistError(f"{source}: {name}: {value!r} is refused: {exc}") from None
    return space


def read_search_space(path: str | Path) -> dict:
    """A search space from a YAML (or JSON) file, checked entry by entry.

    Args:
        path: the file: a mapping of setting to a list of choices or a range (``low``, ``high``, and ``log`` or
            ``step``), as ``DEFAULT_SPACE`` is written.

    Raises:
        FmnistError: naming the file and the entry: unreadable, not a setting a trial can vary, or a choice or
            range ``Config`` refuses.
    """
    return check_search_space(read_settings_file(path), str(path))


def suggest(trial: optuna.Trial, space: dict) -> dict:
    """One value for each entry of ``space``, drawn by the study's sampler."""
    params: dict[str, CategoricalChoiceType] = {}
    for name, spec in space.items():
        if isinstance(spec, list):
            params[name] = trial.suggest_categorical(name, spec)
        elif all(isinstance(spec[k], int) for k in ("low", "high")):
            params[name] = trial.suggest_int(
                name, spec["low"], spec["high"], step=spec.get("step", 1), log=spec.get("log", False)
            )
        else:
            params[name] = trial.suggest_float(
                name, spec["low"], spec["high"], step=spec.get("step"), log=spec.get("log", False)
            )
    return params

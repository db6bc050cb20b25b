"""Configuration files (YAML, JSON, or TOML): any ``Config`` fields, a recipe named in them, checked
field by field, so a typo is one line naming the file and the key. Imports no torch."""

from __future__ import annotations

import difflib
import json
from pathlib import Path

from fmnist_ignite.config.recipes import RECIPES
from fmnist_ignite.config.settings import Config, settings
from fmnist_ignite.errors import FmnistError

MAX_SETTINGS_BYTES = 1 << 20  # a settings file is a few hundred bytes; 1 MiB is more than any needs
PATH_SETTINGS = ("data_dir", "output_dir", "resume")  # a ~ in them is the home directory, as a shell makes it


def parse_settings_file(path: Path) -> object:
    """The data in a JSON, TOML or (any other suffix) YAML file, read only if it is a regular file of at
    most ``MAX_SETTINGS_BYTES``."""
    if not path.is_file():
        raise FmnistError(f"{path}: not a regular file" if path.exists() else f"{path}: no such file")
    with path.open("rb") as stream:
        data = stream.read(MAX_SETTINGS_BYTES + 1)
    if len(data) > MAX_SETTINGS_BYTES:
        raise FmnistError(f"{path}: larger than {MAX_SETTINGS_BYTES:,} bytes: not a settings file")
    text = data.decode()
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix == ".toml":
        import tomllib

        return tomllib.loads(text)
    return _yaml_without_aliases(text)


def _yaml_without_aliases(text: str) -> object:
    """YAML's safe load, with aliases refused: a few of them nested can expand to gigabytes (a "billion
    laughs"), and a settings file needs none."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent: yaml.Node | None, index: yaml.Node | int | None) -> yaml.Node:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"aliases (*{event.anchor}) are not allowed in a settings file", event.start_mark
                )
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=Loader)  # noqa: S506 (a SafeLoader)


def read_settings_file(path: str | Path) -> dict:
    """A file's mapping of settings, or FmnistError naming the file: unreadable, invalid, not a mapping."""
    path = Path(path)
    try:
        settings = parse_settings_file(path)
    except FmnistError:
        raise
    except OSError as exc:
        raise FmnistError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except Exception as exc:  # each parser has its own error type: yaml's, json's, tomllib's
        reason = " ".join(str(exc).split())
        raise FmnistError(f"{path}: not valid {path.suffix.lstrip('.') or 'YAML'}: {reason}") from None
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise FmnistError(f"{path}: expected a mapping of settings (key: value), got {type(settings).__name__}")
    return dict(settings)


def read_config_file(path: str | Path, with_recipe: bool = True) -> dict:
    """The settings a file gives, as ``Config`` fields over the recipe it names (if any).

    The file is YAML, JSON or TOML (by its suffix): a mapping of ``Config`` settings and, optionally, a
    ``recipe`` key naming one of ``RECIPES``. Each key and value is checked, so a typo is one line naming the
    file and the key. A path setting (``data_dir``, ``output_dir``, ``resume``) starting with ``~`` is under
    the home directory.

    Args:
        path: the configuration file.
        with_recipe: True (the default): the file's settings over those of the recipe it names; False: the
            file's own keys only (without ``recipe``).

    Returns:
        The settings, by ``Config`` field name.

    Raises:
        FmnistError: naming the file: unreadable, not a mapping, an unknown key, a value of the wrong type, or a
            value ``Config.validate`` refuses.
    """
    path = Path(path)
    given = read_settings_file(path)
    name = given.pop("recipe", None)
    if name is not None and name not in RECIPES:
        raise FmnistError(f"{path}: recipe: unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    known = settings()
    for key, value in given.items():
        if key not in known:
            near = difflib.get_close_matches(key, [*known, "recipe"], n=1)
            hint = f"did you mean {near[0]!r}?" if near else "the keys are the settings of Config and recipe"
            raise FmnistError(f"{path}: unknown key {key!r}: {hint}")
        if not known[key].accepts(value):
            expected = known[key].annotation.replace(" | None", " or null")
            raise FmnistError(f"{path}: {key}: expected {expected}, got {value!r}")
    for key in PATH_SETTINGS:  # no shell reads a file: its ~ is expanded here, as a shell expands a flag's
        if isinstance(given.get(key), str) and given[key].startswith("~"):
            given[key] = str(Path(given[key]).expanduser())
    merged = {**(RECIPES[name] if name else {}), **given}
    try:
        Config(**merged).validate()
    except FmnistError as exc:
        raise FmnistError(f"{path}: {exc}") from None
    return merged if with_recipe else given

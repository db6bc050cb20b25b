"""How a settings dataclass describes its fields: ``setting()`` defines a field with its ``Setting`` (help,
flag, choices, range and unit, and how a resume and the tuner treat it), and ``settings_of()`` reads them
back, named and typed, for the command line, the configuration files, the one generic check
(``check_values``) and the reference pages. ``Config`` (in ``settings``) and the subcommands' settings (in
``commands``) are such dataclasses.

Dataclasses, not pydantic: pydantic v2 builds a model's schema when its module is imported, which costs more
than the whole torch-free ``--help``; these checks (type, finite, choices, range) are this module's few lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fmnist_ignite.errors import MissingSetting, Named, SettingError, UnknownSetting

TYPES = {"int": int, "float": float, "str": str, "bool": bool}  # the types a field's annotation may name
FLAGS = ("value", "switch", "negated", None)  # the forms of a setting's flag (Setting.flag)


@dataclass(frozen=True)
class Setting:
    """How the command line, a resume and the tuner treat one field of a settings dataclass (the field's
    metadata)."""

    help: str  # the flag's help (for a flag-less field, what it means); "{default}" stands for the default
    # "value": --name VALUE; "switch": --name sets True; "negated": --no-name sets False; None: no flag
    # (set in a configuration file or in Python)
    flag: str | None = "value"
    choices: tuple = ()  # the values the flag offers and the check accepts (None too, for an optional field)
    accepted: tuple = ()  # values accepted besides the choices, never offered (model: "custom", set by train())
    at_least: float | None = None  # the range a number must be in: each bound given is checked
    above: float | None = None
    at_most: float | None = None
    below: float | None = None
    unit: str = ""  # what the range counts: "seconds", "pixels"
    metavar: str | None = None
    on_resume: bool = False  # a resumed run may change it: where, how long or how visibly it runs, not what
    tunable: bool = True  # False: how a trial runs; the tuner neither searches it nor keeps it in a trial's settings
    from_environment: Callable[[Mapping[str, str]], object] | None = None  # decides it when left None
    name: str = ""  # the field's name, default and annotation: settings() fills them in
    default: object = None
    annotation: str = ""

    def __post_init__(self) -> None:
        """A mistyped flag form fails when the module is imported, not as a flag that quietly is not there."""
        if self.flag not in FLAGS:
            raise ValueError(f"a setting's flag is one of {FLAGS}, got {self.flag!r}")

    @property
    def value_type(self) -> type:
        """The type of the field's values (int, float, str or bool), from its annotation."""
        return TYPES[self.annotation.split(" | ")[0]]

    @property
    def required(self) -> bool:
        """Whether the field has no default: its flag must be given."""
        return self.default is dataclasses.MISSING

    @property
    def optional(self) -> bool:
        """Whether None is a value of the field."""
        return self.annotation.endswith(" | None")

    @property
    def option(self) -> str | None:
        """The flag: ``--batch-size``, ``--no-progress``; None when the setting has none."""
        if self.flag is None:
            return None
        return "--" + ("no-" if self.flag == "negated" else "") + self.name.replace("_", "-")

    @property
    def range_words(self) -> str:
        """The range, as a sentence says it: ``in [0, 1)``, ``at least 1``, ``> 0``; empty without one."""
        low = f"[{_number(self.at_least)}" if self.at_least is not None else None
        low = f"({_number(self.above)}" if self.above is not None else low
        high = f"{_number(self.at_most)}]" if self.at_most is not None else None
        high = f"{_number(self.below)})" if self.below is not None else high
        if low and high:
            words = f"in {low}, {high}"
        elif low:
            words = f"at least {low[1:]}" if low[0] == "[" else f"> {low[1:]}"
        elif high:
            words = f"at most {high[:-1]}" if high[-1] == "]" else f"< {high[:-1]}"
        else:
            return ""
        return f"{words} {self.unit}".rstrip()

    def problem(self, value: object) -> str | None:
        """What is wrong with ``value`` for this field (its type, a float not finite, not one of its choices,
        out of its range), or None when nothing is."""
        if not self.accepts(value):
            return f"must be {self.annotation.replace(' | None', ' or None')}"
        if value is None:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if self.choices and value not in self.choices and value not in self.accepted:
            return f"choose one of {', '.join(map(str, self.choices))}"
        number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
        if number is not None and not (
            (self.at_least is None or number >= self.at_least)
            and (self.above is None or number > self.above)
            and (self.at_most is None or number <= self.at_most)
            and (self.below is None or number < self.below)
        ):
            return f"must be {self.range_words}"
        return None

    def accepts(self, value: object) -> bool:
        """Whether ``value`` (from a file) has the field's type: a bool is no int here, an int is a float."""
        if value is None:
            return self.optional
        accepted = (int, float) if self.value_type is float else (self.value_type,)
        return isinstance(value, accepted) and (self.value_type is bool or not isinstance(value, bool))


def _number(value: float) -> str:
    """A bound as written: 4294967295, 0.5, 1e-06 (never 4.29497e+09)."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def setting(default: object, help: str, **how: Any) -> Any:
    """A field of ``Config`` (or of a subcommand's settings) with its ``Setting`` (``how``: the Setting's
    fields after ``help``): the one place a setting is defined. ``dataclasses.MISSING``: a required one."""
    return dataclasses.field(default=default, metadata={"setting": Setting(help, **how)})


def settings_of(of: type) -> dict[str, Setting]:
    """Each field's ``Setting`` of the settings dataclass ``of``, by name, in the fields' order."""
    return {
        field.name: dataclasses.replace(
            field.metadata["setting"], name=field.name, default=field.default, annotation=str(field.type)
        )
        for field in dataclasses.fields(of)
    }


T = TypeVar("T")


def refusing_unknown_fields(cls: type[T]) -> type[T]:
    """Decorate a settings dataclass so that an unknown keyword (``Config(epoch=2)``) is refused in one line
    naming the closest field ("did you mean epochs?"), not Python's bare ``TypeError``.

    Args:
        cls: the dataclass.

    Returns:
        The same class, its ``__init__`` checking the keywords first.
    """
    init = cls.__init__
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = [field.name for field in fields]
    required = [
        n for n, f in enumerate(fields) if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]

    @functools.wraps(init)
    def checked(self: T, *args: Any, **kwargs: Any) -> None:
        for key in kwargs:
            if key not in names:
                near = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise UnknownSetting(f"{cls.__name__} has no setting {key!r}{hint}")
        missing = [names[n] for n in required if n >= len(args) and names[n] not in kwargs]
        if missing:
            raise MissingSetting(f"{cls.__name__} needs {', '.join(missing)} (it has no default)")
        init(self, *args, **kwargs)

    setattr(cls, "__init__", checked)  # noqa: B010  # mypy refuses an assignment to a method
    return cls


def check_values(instance: object) -> None:
    """Raise ``SettingError`` for the first field of a settings dataclass whose value its ``Setting`` refuses:
    not of its type, a float that is not finite, not one of its choices, or out of its range."""
    for name, setting in settings_of(type(instance)).items():
        value = getattr(instance, name)
        problem = setting.problem(value)
        if problem is not None:
            raise SettingError(name, value, problem, {name: setting.option})


def named(of: type, name: str, *value: object) -> Named:
    """The setting ``name`` of the settings dataclass ``of`` (with ``value`` if given) as an error's message
    names it: by its own flag on the command line (``--batch-size``, ``--no-plots``; its settings-file key where
    it has none, ``eval_batch_size``), by its field in Python.

    Examples:
        >>> from fmnist_ignite import Config
        >>> named(Config, "eval_batch_size").said(command_line=True), named(Config, "plots", False).said(True)
        ('eval_batch_size', '--no-plots')
    """
    return Named(name, *value, flag=settings_of(of)[name].option)


def refuse(of: type, name: str, value: object, problem: str) -> SettingError:
    """The error for a rule between fields of the settings dataclass ``of``: ``name``'s ``value`` refused
    because of ``problem``, in which another setting is written ``{other}``."""
    named = settings_of(of)
    mentioned = [n for n in named if "{" + n + "}" in problem]
    return SettingError(name, value, problem, {n: named[n].option for n in (name, *mentioned)})

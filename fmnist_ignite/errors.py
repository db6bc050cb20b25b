"""The exceptions a run ends with when a user can act on it: the command line prints each as one line.

A message names a setting structurally, never as text rewritten afterwards: its template writes the setting as a
``{placeholder}`` and the error keeps a ``Named`` (the setting, its value, its flag) or a ``Command`` for it, so
that each front end says it in its own words: ``str(error)`` (what Python and a notebook show) says
``batch_size``, ``resume='auto'``, ``plots=False``, ``train(config.replace(resume='auto', output_dir='D'))``;
``error.on_command_line()`` (what ``fmnist-ignite`` prints) says ``--batch-size``, ``--resume auto``,
``--no-plots``, ``fmnist-ignite train --resume=auto --output-dir=D``.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath

DASHED = "--"  # Named's flag when none is given: "--" and the name with dashes (batch_size: --batch-size)


def _python(value: object) -> str:
    """A value as Python code writes it: ``'auto'``, ``5``, ``False`` (a path as its string)."""
    return repr(str(value) if isinstance(value, PurePath) else value)


@dataclass(frozen=True, init=False)
class Named:
    """A setting a message names, with a value or without: ``--resume auto`` on the command line,
    ``resume='auto'`` in Python; a switch with its value, ``--no-plots`` and ``plots=False``.

    Args:
        name: the setting's field (``batch_size``).
        value: at most one: the value the message gives it (left out: the setting alone, ``--batch-size`` and
            ``batch_size``).
        flag: its command-line flag (``--no-plots``; from ``Setting.option``); left out, ``--`` and the name
            with dashes; None where it has none, so that the command line shows its settings-file key.

    Examples:
        >>> Named("resume", "auto").said(command_line=True), Named("resume", "auto").said(command_line=False)
        ('--resume auto', "resume='auto'")
        >>> Named("plots", False, flag="--no-plots").said(command_line=True)
        '--no-plots'
        >>> Named("system_data_dir", flag=None).said(command_line=True)
        'system_data_dir'
    """

    name: str
    value: tuple[object, ...]  # () or the one value
    flag: str | None

    def __init__(self, name: str, *value: object, flag: str | None = DASHED) -> None:
        if len(value) > 1:
            raise TypeError(f"a setting is named with at most one value, got {len(value)}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "flag", "--" + name.replace("_", "-") if flag == DASHED else flag)

    def said(self, command_line: bool) -> str:
        """The setting (and its value) in the words of the command line, else of Python."""
        if command_line and self.flag is not None:
            if not self.value:
                return self.flag
            (value,) = self.value
            if isinstance(value, bool):  # a switch says its value by itself; the other one is no flag of it
                negated = self.flag.startswith("--no-")
                return self.flag if value is not negated else f"{self.name}={value!r}"
            return f"{self.flag} {value}"
        return self.name + "".join(f"={_python(value)}" for value in self.value)


@dataclass(frozen=True)
class Command:
    """A command a message tells the user to run, as each front end runs it: ``Command.train(resume="auto",
    output_dir=D)`` is ``fmnist-ignite train --resume=auto --output-dir=D`` on the command line (quoted as
    ``shell_command`` quotes it) and ``train(config.replace(resume='auto', output_dir='D'))`` in Python.

    Args:
        program: the command line's words before the arguments (``fmnist-ignite evaluate``).
        function: the Python call, ``{}`` standing for its arguments (``evaluate_checkpoint({})``).
        operands: the positional arguments.
        settings: the settings it is given, by field.
    """

    program: str
    function: str
    operands: tuple[str | Path, ...] = ()
    settings: tuple[tuple[str, str | Path], ...] = ()

    @classmethod
    def train(cls, **settings: str | Path) -> Command:
        """A run with these settings changed: the run's own command again, or ``train(config.replace(...))``."""
        return cls("fmnist-ignite train", "train(config.replace({}))", (), tuple(settings.items()))

    @classmethod
    def evaluate(cls, checkpoint: str | Path) -> Command:
        """Scoring a checkpoint (or a run directory's best one) on the test set."""
        return cls("fmnist-ignite evaluate", "evaluate_checkpoint({})", (checkpoint,))

    def said(self, command_line: bool) -> str:
        """The command as the command line runs it, else as Python calls it."""
        if command_line:
            return shell_command(self.program, *self.operands, **dict(self.settings))
        arguments = [_python(operand) for operand in self.operands]
        arguments += [f"{name}={_python(value)}" for name, value in self.settings]
        return self.function.format(", ".join(arguments))


class Message:
    """A text that names settings and commands structurally: a ``str.format`` template whose fields are
    given by keyword; a ``Named``, a ``Command``, another ``Message`` or an ``FmnistError`` among them is said
    in each front end's words, any other value as it is. The template is a plain string, never an f-string:
    every value it shows is a field, so that a brace in a path is never read as one.

    Examples:
        >>> advice = Message("continue it with {resume}, or choose another {output_dir}",
        ...                  resume=Named("resume", "auto"), output_dir=Named("output_dir"))
        >>> advice.said(command_line=True)
        'continue it with --resume auto, or choose another --output-dir'
        >>> str(advice)
        "continue it with resume='auto', or choose another output_dir"
    """

    def __init__(self, template: str, **fields: object) -> None:
        self.template, self.fields = template, fields

    def said(self, command_line: bool) -> str:
        """The text in the words of the command line, else of Python."""
        if not self.fields:
            return self.template
        return self.template.format(**{name: said(value, command_line) for name, value in self.fields.items()})

    def __str__(self) -> str:
        return self.said(command_line=False)

    def __repr__(self) -> str:
        return f"Message({self.template!r}, **{self.fields!r})"


def said(value: object, command_line: bool) -> object:
    """``value`` in a front end's words where it names settings (a ``Named``, ``Command``, ``Message`` or
    ``FmnistError``); any other value as it is."""
    if isinstance(value, Named | Command | Message):
        return value.said(command_line)
    if isinstance(value, FmnistError):
        return value.on_command_line() if command_line else str(value)
    return value


def shell_command(program: str, *operands: str | Path, **flags: str | Path) -> str:
    """A command a message tells the user to run, as a shell runs it: every word quoted (``shlex.quote``),
    a flag's value joined by ``=`` and an operand made ``./-x`` so that a value starting with ``-`` is never
    read as a flag. ``program`` is already shell words (``fmnist-ignite train``); a flag's keyword is its
    setting's name (``output_dir`` is ``--output-dir``).

    Examples:
        >>> shell_command("fmnist-ignite train", resume="auto", output_dir="-lead")
        'fmnist-ignite train --resume=auto --output-dir=-lead'
        >>> shell_command("fmnist-ignite evaluate", "-lead/best model.pt")
        "fmnist-ignite evaluate './-lead/best model.pt'"
    """
    words = [f"./{operand}" if str(operand).startswith("-") else str(operand) for operand in operands]
    words += [f"--{name.replace('_', '-')}={value}" for name, value in flags.items()]
    return " ".join([program, *map(shlex.quote, words)])


class FmnistError(Exception):
    """Bad input, missing or wrong data, or an unusable output directory; the message says what to do.

    Its message is a ``Message``: a template and its fields (``FmnistError("lower {batch_size}",
    batch_size=named(Config, "batch_size"))``, ``config.fields.named`` giving the setting's own flag), or a plain
    text. ``str(error)`` says it in the Python API's words (what
    ``raise`` and a notebook show), ``on_command_line()`` in the command line's. In IPython and Jupyter it
    shows as one short block, not the library's frames it passed through (``%tb`` shows them).

    Args:
        message: a plain text, a ``str.format`` template whose fields ``fields`` gives, or a ``Message``.
        fields: the template's fields by name: a ``Named`` setting, a ``Command``, a ``Message`` or another error,
            each said in the front end's words, or any value, shown as it is.
    """

    def __init__(self, message: str | Message, **fields: object) -> None:
        if isinstance(message, Message) and fields:
            raise TypeError("the fields of a Message are the Message's")
        self.message = message if isinstance(message, Message) else Message(message, **fields)
        super().__init__(str(self.message))

    def __str__(self) -> str:
        return str(self.message)

    def on_command_line(self) -> str:
        """The message as the command line prints it."""
        return self.message.said(command_line=True)

    def __reduce__(self) -> tuple[object, ...]:
        # whole across processes (a spawned worker's error reaches its launcher with its fields): the message
        # given again, anything a subclass set kept in the state
        return type(self), (self.message,), self.__dict__

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows instead of the traceback."""
        return [f"{type(self).__name__}: {self}"]


class SettingError(FmnistError):
    """A setting's value refused: the error names the setting (its field) and the value, so each front end
    says it in its own words: Python ``batch_size=0: must be at least 1``, the command line ``--batch-size 0:
    must be at least 1`` (``on_command_line``).

    Args:
        setting: the field's name (``batch_size``).
        value: the value refused.
        problem: what is wrong with it; another setting it names is written ``{name}`` (``set {val_size} above
            0``) and shown as that front end shows it.
        flags: the command-line flag of ``setting`` and of each setting ``problem`` names (None: it has none, so
            the command line shows its settings-file key).
    """

    def __init__(self, setting: str, value: object, problem: str, flags: Mapping[str, str | None]) -> None:
        self.setting, self.value, self.problem, self.flags = setting, value, problem, dict(flags)
        named = {name: Named(name, flag=flag) for name, flag in self.flags.items()}
        refused = _Refused(setting, value, flag=self.flags.get(setting))
        super().__init__(Message("{_refused}: " + problem, _refused=refused, **named))

    def __reduce__(self) -> tuple[type[SettingError], tuple[str, object, str, dict[str, str | None]]]:
        return type(self), (self.setting, self.value, self.problem, self.flags)


class _Refused(Named):
    """A refused value as a ``SettingError`` shows it: after the flag as given (``--json True``), even a bool."""

    def said(self, command_line: bool) -> str:
        if command_line and self.flag is not None:
            return " ".join([self.flag, *map(str, self.value)])
        return super().said(command_line)


class UnknownSetting(FmnistError, TypeError):
    """A settings dataclass (``Config``, ...) was given a field it does not have; the message names the
    closest one. A ``TypeError`` too, as Python's own error for an unknown keyword is."""


class MissingSetting(FmnistError, TypeError):
    """A settings dataclass was not given a field it has no default for; the message names it."""


class TrainingInterrupted(FmnistError):
    """Ctrl-C or SIGTERM stopped the run; the message says what is safe on disk. Exit with 128 + the signal.

    Args:
        message: what stopped the run and what is safe on disk.
        exit_code: the exit status a command line gives for it: 128 + the signal.
        checkpoint: the checkpoint saved at the stop; None when the signal came outside training.
        output_dir: the run directory, which ``--resume auto --output-dir`` continues.
        again: how to go on, where that is not the run alone resumed (a run of ``train_seeds``: all the seeds
            again, the finished ones kept); None: resume the run.
    """

    def __init__(
        self,
        message: str | Message,
        exit_code: int,
        checkpoint: Path | None = None,
        output_dir: Path | None = None,
        again: Command | None = None,
    ) -> None:
        super().__init__(message)
        self.exit_code, self.checkpoint, self.output_dir, self.again = exit_code, checkpoint, output_dir, again

    # whole across processes: a spawned worker's stop reaches its launcher as it was
    def __reduce__(
        self,
    ) -> tuple[type[TrainingInterrupted], tuple[Message, int, Path | None, Path | None, Command | None]]:
        return type(self), (self.message, self.exit_code, self.checkpoint, self.output_dir, self.again)

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show for it: the message and how to continue, not the library's frames
        it passed through (a stop that was asked for is no bug to debug)."""
        lines = super()._render_traceback_()
        if self.again is not None:
            lines.append(f"Continue with {self.again.said(command_line=False)}")
        elif self.checkpoint is not None:
            resume, output_dir = Named("resume", "auto"), Named("output_dir", self.output_dir)
            lines.append(
                f"Continue it with {resume.said(command_line=False)} and {output_dir.said(command_line=False)}"
            )
        return lines


class CouldNotWrite(FmnistError):
    """A file could not be written (a full disk, a directory gone, a read-only file system); the message says
    what is safe on disk. Once there is room again, the same work can go on."""


class DirectoryInUse(FmnistError):
    """Another process holds the run directory (its lock): it is that process's to train."""


class NonFiniteLoss(FmnistError):
    """The training loss became NaN or infinite (a learning rate too large, most often): the run stopped."""

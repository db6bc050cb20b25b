"""The exceptions a run ends with when a user can act on it: the command line prints each as one line."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

# A message is written for the command line; in Python the same advice names the API's words (in_python_words).
_FLAG = r"(?<![\w/.-])--"  # a flag, not two dashes inside a path or a word
_PYTHON_WORDS = (
    (
        r"fmnist-ignite train --resume[ =]auto --output-dir[ =](\S+)",
        r'train(config.replace(resume="auto", output_dir="\1"))',
    ),
    (r"fmnist-ignite evaluate (\S+)", r'evaluate_checkpoint("\1")'),
    (_FLAG + r"resume[ =]auto --output-dir[ =]([^\s,;]*/[^\s,;]*)", r'resume="auto", output_dir="\1"'),
    (_FLAG + r"resume[ =]auto\b", 'resume="auto"'),
    (_FLAG + r"output-dir[ =]([^\s,;]*/[^\s,;]*)", r'output_dir="\1"'),
    (_FLAG + r"no-([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_") + "=False"),
    (_FLAG + r"([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_")),
)


def in_python_words(message: str) -> str:
    """A message written for the command line, in the words of the Python API: ``--resume auto`` is
    ``resume="auto"``, ``--no-plots`` is ``plots=False``, ``--batch-size`` is ``batch_size``.

    Args:
        message: the error's message, as the command line prints it.

    Returns:
        The message a notebook shows.
    """
    for pattern, words in _PYTHON_WORDS:
        message = re.sub(pattern, words, message)
    return message


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

    In IPython and Jupyter it shows as one short block, the message in the Python API's words, not the
    library's frames it passed through (``%tb`` shows them).
    """

    def _render_traceback_(self) -> list[str]:
        """The lines IPython shows instead of the traceback."""
        return [f"{type(self).__name__}: {in_python_words(str(self))}"]

    def on_command_line(self) -> str:
        """The message as the command line prints it."""
        return str(self)


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
        super().__init__(self._words(python=True))

    def _words(self, python: bool) -> str:
        shown = {name: flag if flag and not python else name for name, flag in self.flags.items()}
        problem = self.problem.format(**shown)
        flag = self.flags.get(self.setting)
        if python or not flag:
            return f"{self.setting}={self.value!r}: {problem}"
        return f"{flag} {self.value}: {problem}"

    def on_command_line(self) -> str:
        return self._words(python=False)

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]

    def __reduce__(self) -> tuple[type[SettingError], tuple[str, object, str, dict[str, str | None]]]:
        return type(self), (self.setting, self.value, self.problem, self.flags)


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
    """

    def __init__(
        self, message: str, exit_code: int, checkpoint: Path | None = None, output_dir: Path | None = None
    ) -> None:
        super().__init__(message)
        self.exit_code, self.checkpoint, self.output_dir = exit_code, checkpoint, output_dir

    # whole across processes: a spawned worker's stop reaches its launcher as it was
    def __reduce__(self) -> tuple[type[TrainingInterrupted], tuple[str, int, Path | None, Path | None]]:
        return type(self), (str(self), self.exit_code, self.checkpoint, self.output_dir)

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show for it: the message and how to continue, not the library's frames
        it passed through (a stop that was asked for is no bug to debug)."""
        lines = super()._render_traceback_()
        if self.checkpoint is not None:
            lines.append(f"Continue it with resume='auto' and output_dir='{self.output_dir}'")
        return lines


class CouldNotWrite(FmnistError):
    """A file could not be written (a full disk, a directory gone, a read-only file system); the message says
    what is safe on disk. Once there is room again, the same work can go on."""


class DirectoryInUse(FmnistError):
    """Another process holds the run directory (its lock): it is that process's to train."""


class NonFiniteLoss(FmnistError):
    """The training loss became NaN or infinite (a learning rate too large, most often): the run stopped."""

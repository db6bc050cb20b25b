"""The exceptions a run ends with when a user can act on it: the command line prints each as one line."""

from __future__ import annotations

from pathlib import Path


class FmnistError(Exception):
    """Bad input, missing or wrong data, or an unusable output directory; the message says what to do."""


class TrainingInterrupted(FmnistError):
    """Ctrl-C or SIGTERM stopped the run; the message says what is safe on disk. Exit with 128 + the signal.

    ``checkpoint`` is the checkpoint saved at the stop (None when the signal came outside training) and
    ``output_dir`` the run directory, which ``--resume auto --output-dir`` continues.
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
        lines = [f"{type(self).__name__}: {self}"]
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

"""The settings of the subcommands that are not a training run's: ``tune``, ``lr-find``, ``evaluate``,
``predict``, ``export``, ``runs`` and ``report``.

Each is a dataclass whose fields are defined with ``setting()``, like ``Config``'s: the flags of the
subcommand, their help, their defaults, their checks and the reference page are derived from these
definitions (``settings(TuneSettings)``), and the Python functions take the same dataclass. Torch-free,
like the rest of ``config``: ``--help`` and a bad flag answer at once.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from fmnist_ignite.config.fields import check_values, refuse, refusing_unknown_fields, setting
from fmnist_ignite.config.settings import MAX_SEED, settings

KEEP_TRIALS = ("all", "best", "none")
EXPORT_FORMATS = ("onnx", "torch-export")  # analysis.export.ExportFormat's values
RUN_STATUSES = ("finished", "stopped-early", "interrupted", "failed", "running", "damaged")  # files.runstate's
RUN_COLUMNS = ("run", "status", "epochs", "validation", "test", "ece", "wall")  # the columns of fmnist-ignite runs


@refusing_unknown_fields
@dataclass(frozen=True)
class TuneSettings:
    """How an Optuna study runs (``fmnist-ignite tune``); the training settings of its trials are a ``Config``."""

    trials: int = setting(dataclasses.MISSING, "trials of the study, all workers together", metavar="N", at_least=1)
    timeout: float | None = setting(
        None, "this worker starts no trial after S seconds", metavar="S", at_least=1, unit="seconds"
    )
    storage: str | None = setting(
        None,
        "where the study lives: a journal file's path, a SQLAlchemy URL (postgresql+psycopg://...), or an "
        "existing SQLite study (.db) (default: OUTPUT_DIR/study.journal, or OUTPUT_DIR/study.db where an "
        "older study has one)",
        metavar="PATH|URL",
    )
    study: str = setting("fmnist", "study name; workers with the same one share it ({default})", metavar="NAME")
    space: str | None = setting(None, "YAML search space replacing the default", metavar="FILE")
    keep_trials: str = setting("all", "trial directories to keep ({default})", choices=KEEP_TRIALS)
    heartbeat: int = setting(
        30,
        "seconds between a worker's heartbeats; 3 missed: trial retried ({default})",
        metavar="S",
        at_least=1,
        unit="seconds",
    )
    confirm_top: int = setting(
        0,
        "then re-train the top K trials once per seed of --seeds (a count: the seeds after --seed), on the "
        "validation split only, and write the best mean to best.yaml ({default}: off)",
        metavar="K",
        at_least=0,
    )

    def validate(self) -> TuneSettings:
        """Raise ``SettingError`` naming the first bad setting; return self."""
        check_values(self)
        return self


@refusing_unknown_fields
@dataclass(frozen=True)
class LrFindSettings:
    """The range and length of a learning-rate finder's sweep (``fmnist-ignite lr-find``)."""

    start_lr: float = setting(1e-6, "the first learning rate tried ({default})", above=0)
    end_lr: float = setting(1.0, "the last ({default})", above=0)
    iterations: int = setting(300, "training batches, lr rising exponentially ({default})", at_least=3)

    def validate(self) -> LrFindSettings:
        """Raise ``SettingError`` naming the first bad setting; return self."""
        check_values(self)
        if self.end_lr <= self.start_lr:
            raise refuse(LrFindSettings, "end_lr", self.end_lr, "the learning rates must rise: above {start_lr}")
        return self


@refusing_unknown_fields
@dataclass(frozen=True)
class EvaluateSettings:
    """What ``fmnist-ignite evaluate`` shows beside the test metrics (where and on what it scores are the
    ``Config`` settings ``data_dir`` and ``device``)."""

    top_losses: str | None = setting(
        None, "save a grid of the test images the model got most confidently wrong", metavar="FILE.png"
    )
    top_k: int = setting(16, "images in that grid ({default})", metavar="K", at_least=1)
    calibrate: bool = setting(
        True,
        "the model's own probabilities only: no calibrated ECE and Brier score from its run's temperature",
        flag="negated",
    )
    corruptions: bool = setting(
        False,
        "also score the test set under 10 corruptions at 3 severities each (noise, blur, shifts, rotation, "
        "scale, contrast, brightness, inversion): a table, corruptions.json and corruptions.png beside the "
        "checkpoint",
        flag="switch",
    )
    corruption_seed: int = setting(
        0, "seed of the corruptions' random draws ({default})", metavar="SEED", at_least=0, at_most=MAX_SEED
    )

    def validate(self) -> EvaluateSettings:
        """Raise ``SettingError`` naming the first bad setting; return self."""
        check_values(self)
        return self


@refusing_unknown_fields
@dataclass(frozen=True)
class PredictSettings:
    """How ``fmnist-ignite predict`` says what it found."""

    json: bool = setting(False, "one JSON object per image (name, class, probability), for programs", flag="switch")
    calibrate: bool = setting(
        True,
        "the model's own probabilities, not scaled by the temperature its run fitted on validation",
        flag="negated",
    )

    def validate(self) -> PredictSettings:
        """Raise ``SettingError`` naming the first bad setting; return self."""
        check_values(self)
        return self


@refusing_unknown_fields
@dataclass(frozen=True)
class ExportSettings:
    """What ``fmnist-ignite export`` writes (``export_model()`` in Python)."""

    format: str = setting(
        "onnx",
        "onnx: an ONNX model (torch's dynamo exporter); torch-export: a torch.export program (.pt2) ({default})",
        choices=EXPORT_FORMATS,
    )
    output: str | None = setting(
        None, "the file to write (default: model.onnx or model.pt2 beside the checkpoint)", metavar="PATH"
    )

    def validate(self) -> ExportSettings:
        """Raise ``SettingError`` naming the first bad setting; return self."""
        check_values(self)
        return self


@refusing_unknown_fields
@dataclass(frozen=True)
class RunsSettings:
    """How ``fmnist-ignite runs`` shows the table of runs (``list_runs()`` in Python)."""

    sort: str = setting(
        "run",
        "sort by a column (run, status, epochs, validation, test, ece, wall) or a setting's name (lr, ...): "
        "accuracies best first, the rest smallest first ({default})",
        metavar="COLUMN",
    )
    status: str | None = setting(
        None, f"only the runs of this status: {', '.join(RUN_STATUSES)}", choices=RUN_STATUSES, metavar="STATUS"
    )
    csv: bool = setting(False, "the table as CSV, for scripts", flag="switch")
    json: bool = setting(False, "the table as JSON (a list of rows), for scripts", flag="switch")
    html: str | None = setting(
        None, "also write the table as a page of its own, each run linked to its report.html", metavar="FILE"
    )

    def validate(self) -> RunsSettings:
        """Raise ``SettingError`` naming the first bad setting; return self."""
        check_values(self)
        if self.sort not in RUN_COLUMNS and self.sort not in settings():
            near = difflib.get_close_matches(self.sort, [*RUN_COLUMNS, *settings()], n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise refuse(RunsSettings, "sort", self.sort, f"not a column nor a setting{hint}")
        if self.csv and self.json:
            raise refuse(RunsSettings, "json", self.json, "choose one of {csv} and {json}")
        return self


@refusing_unknown_fields
@dataclass(frozen=True)
class ReportSettings:
    """What ``fmnist-ignite report`` writes (``report()`` in Python)."""

    data_dir: str | None = setting(
        None,
        "where the test images of the top losses are (default: where the run found them, then the system copy; "
        "never downloaded)",
        metavar="DIR",
    )
    top_k: int = setting(16, "test images it got most confidently wrong, shown ({default})", metavar="K", at_least=1)
    output: str | None = setting(
        None, "the page to write, for one RUN only (default: RUN/report.html)", metavar="FILE.html"
    )

    def validate(self) -> ReportSettings:
        """Raise ``SettingError`` naming the first bad setting; return self."""
        check_values(self)
        return self

"""The settings of the subcommands that are not a training run's: ``tune``, ``lr-find``, ``evaluate``,
``predict`` and ``export``.

Each is a dataclass whose fields are defined with ``setting()``, like ``Config``'s: the flags of the
subcommand, their help, their defaults, their checks and the reference page are derived from these
definitions (``settings(TuneSettings)``), and the Python functions take the same dataclass. Torch-free,
like the rest of ``config``: ``--help`` and a bad flag answer at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from fmnist_ignite.config.fields import check_values, raise_first, refusing_unknown_fields, setting
from fmnist_ignite.config.settings import MAX_SEED

KEEP_TRIALS = ("all", "best", "none")
EXPORT_FORMATS = ("onnx", "torch-export")  # analysis.export.ExportFormat's values


@refusing_unknown_fields
@dataclass(frozen=True)
class TuneSettings:
    """How an Optuna study runs (``fmnist-ignite tune``); the training settings of its trials are a ``Config``."""

    trials: int = setting(dataclasses.MISSING, "trials of the study, all workers together", metavar="N")
    timeout: float | None = setting(None, "this worker starts no trial after S seconds", metavar="S")
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
        30, "seconds between a worker's heartbeats; 3 missed: trial retried ({default})", metavar="S"
    )
    confirm_top: int = setting(
        0,
        "then re-train the top K trials once per seed of --seeds (a count: the seeds after --seed), on the "
        "validation split only, and write the best mean to best.yaml ({default}: off)",
        metavar="K",
    )

    def validate(self) -> TuneSettings:
        """Raise FmnistError naming the first bad setting; return self."""
        check_values(self)
        raise_first(
            [
                (self.trials >= 1, f"--trials must be at least 1, got {self.trials}"),
                (
                    self.timeout is None or self.timeout >= 1,
                    f"--timeout must be at least 1 second, got {self.timeout or 0:g}",
                ),
                (self.heartbeat >= 1, f"--heartbeat must be at least 1 second, got {self.heartbeat}"),
                (
                    self.keep_trials in KEEP_TRIALS,
                    f"unknown --keep-trials {self.keep_trials!r}: choose one of {', '.join(KEEP_TRIALS)}",
                ),
                (self.confirm_top >= 0, f"--confirm-top must be at least 0 (0: off), got {self.confirm_top}"),
            ]
        )
        return self


@refusing_unknown_fields
@dataclass(frozen=True)
class LrFindSettings:
    """The range and length of a learning-rate finder's sweep (``fmnist-ignite lr-find``)."""

    start_lr: float = setting(1e-6, "the first learning rate tried ({default})")
    end_lr: float = setting(1.0, "the last ({default})")
    iterations: int = setting(300, "training batches, lr rising exponentially ({default})")

    def validate(self) -> LrFindSettings:
        """Raise FmnistError naming the first bad setting; return self."""
        check_values(self)
        raise_first(
            [
                (
                    0 < self.start_lr < self.end_lr,
                    f"the learning rates must rise from start to end, got {self.start_lr} to {self.end_lr}",
                ),
                (self.iterations >= 3, f"the finder needs at least 3 iterations, got {self.iterations}"),
            ]
        )
        return self


@refusing_unknown_fields
@dataclass(frozen=True)
class EvaluateSettings:
    """What ``fmnist-ignite evaluate`` shows beside the test metrics (where and on what it scores are the
    ``Config`` settings ``data_dir`` and ``device``)."""

    top_losses: str | None = setting(
        None, "save a grid of the test images the model got most confidently wrong", metavar="FILE.png"
    )
    top_k: int = setting(16, "images in that grid ({default})", metavar="K")
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
    corruption_seed: int = setting(0, "seed of the corruptions' random draws ({default})", metavar="SEED")

    def validate(self) -> EvaluateSettings:
        """Raise FmnistError naming the first bad setting; return self."""
        check_values(self)
        raise_first(
            [
                (self.top_k >= 1, f"--top-k must be at least 1, got {self.top_k}"),
                (0 <= self.corruption_seed <= MAX_SEED, f"--corruption-seed must be in [0, {MAX_SEED}]"),
            ]
        )
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
        """Raise FmnistError naming the first bad setting; return self."""
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
        """Raise FmnistError naming the first bad setting; return self."""
        check_values(self)
        return self

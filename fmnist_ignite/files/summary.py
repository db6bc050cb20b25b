"""``summary.json``: how a run went and how it ended. One dataclass, ``RunSummary``, written and read here only.

A run writes it when it starts, after each epoch and at the end; ``--seeds``, the launcher and the notebook
view read it back. Read back, it is input like any other: at most ``MAX_SUMMARY_BYTES``, every field of its
type and every accuracy a fraction, else one line naming the file and the field. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.reading import Shape, read_json

SUMMARY_FILE = "summary.json"
MAX_SUMMARY_BYTES = 16 << 20  # an epoch's row is about 300 bytes: tens of thousands of epochs


class RunStatus(StrEnum):
    """How a run stands, as ``summary.json`` says it (``failed`` is written ``failed: <what failed>``)."""

    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    NON_FINITE = "stopped: non-finite loss"
    FAILED = "failed"


@dataclass
class RunSummary:
    """What ``summary.json`` holds. ``failure`` says what failed when the status is ``FAILED``; ``test`` is
    the test block (metrics, interval, predictions file, per-class accuracies), None when the test split was
    kept out; ``history`` one row per epoch, as ``metrics.csv``."""

    status: RunStatus = RunStatus.RUNNING
    failure: str | None = None
    processes: int = 1
    config: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    device: str = ""
    cpu: str = ""  # the CPU's capability as torch sees it (AVX2, AVX512 AVX512-BF16 AMX, ...)
    model: str = ""
    precision: dict = field(default_factory=dict)
    threads: int = 1
    seed: int = 0
    resumed_from: str | None = None
    output_dir: str = ""
    epochs_done: int = 0
    best_epoch: int | None = None
    best_validation: dict | None = None
    checkpoints: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    history: list[dict] = field(default_factory=list)
    stopped_early: bool | None = None
    scored_weights: str | None = None
    test: dict | None = None
    interrupted_checkpoint: str | None = None
    calibration: dict | None = None  # the temperature fitted on validation, and its validation block
    target: dict | None = None  # --target-accuracy: the target, whether and when validation reached it

    @property
    def status_text(self) -> str:
        """The status as the file writes it: ``completed``, ``failed: disk full``, ..."""
        if self.status is RunStatus.FAILED:
            return f"failed: {self.failure}" if self.failure else "failed"
        return self.status.value

    @property
    def finished(self) -> bool:
        return self.status is RunStatus.COMPLETED

    def to_dict(self) -> dict:
        """The file's JSON: today's keys in today's order; the end's keys only once the run has ended so."""
        data = {name: getattr(self, name) for name in _FIELDS if name != "failure"}
        data["status"] = self.status_text
        for late in ("stopped_early", "scored_weights", "interrupted_checkpoint", "calibration", "target"):
            if data[late] is None:
                del data[late]
        if self.status is not RunStatus.COMPLETED and self.test is None:
            del data["test"]
        return data

    @classmethod
    def from_dict(cls, data: object, source: str) -> RunSummary:
        """A summary from the file's JSON, checked field by field (one line naming ``source`` and the field)."""
        shape = Shape(source)
        data = shape.mapping(data, "the file")
        status, failure = _status(shape, data.get("status"))
        test = data.get("test")
        summary = cls(
            status=status,
            failure=failure,
            processes=shape.integer(data.get("processes", 1), "processes", low=1) or 1,
            config=shape.mapping(data.get("config", {}), "config"),
            versions=shape.mapping(data.get("versions", {}), "versions"),
            device=shape.text(data.get("device", ""), "device") or "",
            cpu=shape.text(data.get("cpu", ""), "cpu") or "",
            model=shape.text(data.get("model", ""), "model") or "",
            precision=shape.mapping(data.get("precision", {}), "precision"),
            threads=shape.integer(data.get("threads", 1), "threads", low=1) or 1,
            seed=shape.integer(data.get("seed", 0), "seed") or 0,
            resumed_from=shape.text(data.get("resumed_from"), "resumed_from", optional=True),
            output_dir=shape.text(data.get("output_dir", ""), "output_dir") or "",
            epochs_done=shape.integer(data.get("epochs_done", 0), "epochs_done") or 0,
            best_epoch=shape.integer(data.get("best_epoch"), "best_epoch", low=1, optional=True),
            best_validation=_best_validation(shape, data.get("best_validation")),
            checkpoints=_checkpoints(shape, data.get("checkpoints", {})),
            wall_time_s=shape.number(data.get("wall_time_s", 0.0), "wall_time_s") or 0.0,
            history=_history(shape, data.get("history", [])),
            stopped_early=shape.flag(data.get("stopped_early"), "stopped_early", optional=True),
            scored_weights=shape.text(data.get("scored_weights"), "scored_weights", optional=True),
            test=None if test is None else _test_block(shape, test),
            interrupted_checkpoint=shape.text(data.get("interrupted_checkpoint"), "interrupted_checkpoint", True),
            calibration=None if data.get("calibration") is None else _calibration(shape, data["calibration"]),
            target=None if data.get("target") is None else _target(shape, data["target"]),
        )
        return summary


_FIELDS = [f.name for f in dataclasses.fields(RunSummary)]


def _target(shape: Shape, value: object) -> dict:
    kept = shape.mapping(value, "target")
    return {
        "accuracy": shape.fraction(kept.get("accuracy"), "target.accuracy"),
        "reached": shape.flag(kept.get("reached"), "target.reached"),
        "epoch": shape.integer(kept.get("epoch"), "target.epoch", low=1, optional=True),
        "training_s": shape.number(kept.get("training_s"), "target.training_s", optional=True),
        "process_s": shape.number(kept.get("process_s"), "target.process_s", optional=True),
    }


def _status(shape: Shape, value: object) -> tuple[RunStatus, str | None]:
    text = shape.text(value, "status") or ""
    if text.startswith("failed"):
        return RunStatus.FAILED, text.removeprefix("failed").removeprefix(":").strip() or None
    try:
        return RunStatus(text), None
    except ValueError:
        raise shape.fail("status", "one of " + ", ".join(s.value for s in RunStatus), value) from None


def _history(shape: Shape, value: object) -> list[dict]:
    if not isinstance(value, list):
        raise shape.fail("history", "a list of epochs", value)
    rows = []
    for i, row in enumerate(value):
        row = shape.mapping(row, f"history[{i}]")
        checked: dict[str, float | None] = {"epoch": shape.integer(row.get("epoch"), f"history[{i}].epoch", low=1)}
        for key, number in row.items():
            if key != "epoch":
                where = f"history[{i}].{key}"
                check = shape.fraction if "accuracy" in key else shape.number
                checked[key] = check(number, where, optional=True)  # a non-finite number is written null
        rows.append(checked)
    return rows


def _test_block(shape: Shape, value: object) -> dict:
    test = dict(shape.mapping(value, "test"))
    test["accuracy"] = shape.fraction(test.get("accuracy"), "test.accuracy")
    test["loss"] = shape.number(test.get("loss"), "test.loss", optional=True)
    test["count"] = shape.integer(test.get("count"), "test.count", optional=True)
    test["accuracy_ci95"] = shape.interval(test.get("accuracy_ci95"), "test.accuracy_ci95")
    per_class = shape.mapping(test.get("per_class_accuracy", {}), "test.per_class_accuracy")
    test["per_class_accuracy"] = {k: shape.fraction(v, f"test.per_class_accuracy.{k}") for k, v in per_class.items()}
    return test


def _calibration(shape: Shape, value: object) -> dict:
    kept = dict(shape.mapping(value, "calibration"))
    kept["temperature"] = shape.number(kept.get("temperature"), "calibration.temperature")
    return kept


def _best_validation(shape: Shape, value: object) -> dict | None:
    if value is None:
        return None
    kept = dict(shape.mapping(value, "best_validation"))
    kept["accuracy"] = shape.fraction(kept.get("accuracy"), "best_validation.accuracy")
    if "accuracy_ci95" in kept:
        kept["accuracy_ci95"] = shape.interval(kept["accuracy_ci95"], "best_validation.accuracy_ci95")
    return kept


def _checkpoints(shape: Shape, value: object) -> dict:
    found = shape.mapping(value, "checkpoints")
    return {kind: shape.text(path, f"checkpoints.{kind}", optional=True) for kind, path in found.items()}


def write_summary(path: Path, summary: RunSummary) -> None:
    """Write ``summary.json`` durably (a NaN or an infinity, which JSON has no word for, as null)."""
    write_durably(path, json.dumps(_finite(summary.to_dict()), indent=2, default=str, allow_nan=False) + "\n")


def _finite(value: object) -> object:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def read_summary(path: Path) -> RunSummary | None:
    """The summary in ``path``, checked; None when there is no such file."""
    data = read_json(path, MAX_SUMMARY_BYTES, "a run's summary")
    return None if data is None else RunSummary.from_dict(data, str(path))


def recorded_precision(directory: Path) -> str | None:
    """The precision the run of ``directory`` trained in ("fp32" or "bf16", as its ``summary.json`` says: what
    ``--precision auto`` chose then), or None when no summary says it."""
    summary = read_summary_or_none(Path(directory) / SUMMARY_FILE)
    used = summary.precision.get("used") if summary is not None else None
    return used if used in ("fp32", "bf16") else None


def read_summary_or_none(path: Path) -> RunSummary | None:
    """The summary in ``path``, or None when there is none or it is damaged (what a caller that can do
    without it, such as the launcher's last word on a failed run, asks for)."""
    try:
        return read_summary(path)
    except FmnistError:
        return None

"""``summary.json``: how a run went and how it ended, written when it starts, after each epoch and at the end."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

import torch

from fmnist_ignite.analysis.statistics import accuracy_interval
from fmnist_ignite.errors import TrainingInterrupted
from fmnist_ignite.files.summary import RunStatus, read_summary_or_none, write_summary


def versions() -> dict[str, str | None]:
    """Versions of this package, torch, Ignite, torchvision and Python, for ``summary.json``."""
    from fmnist_ignite import __version__

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "fmnist_ignite": __version__,
        "torch": torch.__version__,
        "pytorch_ignite": installed("pytorch-ignite"),
        "torchvision": installed("torchvision"),  # read without importing it, which takes seconds
        "python": platform.python_version(),
    }


def close_summary(path: Path, error: BaseException) -> None:
    """The launcher's word on how its run ended, in ``summary.json`` if that still says ``running`` or
    gives a worker's view of the failure (a lost peer, where the launcher knows the peer died)."""
    summary = read_summary_or_none(path)
    if summary is None or summary.status not in (RunStatus.RUNNING, RunStatus.FAILED):
        return
    if isinstance(error, TrainingInterrupted):
        summary.status, summary.failure = RunStatus.INTERRUPTED, None
    else:
        summary.status, summary.failure = RunStatus.FAILED, str(error)
    write_summary(path, summary)


def best_validation(best: dict | None, monitor: str) -> dict | None:
    """``summary.json``'s word on the epoch the run keeps: its ``monitor`` score, and its accuracy with the
    95% Wilson interval."""
    if best is None:
        return None
    kept = {monitor: best[f"val_{monitor}"], "accuracy": best["val_accuracy"]}
    if "val_accuracy_ci_low" in best:
        kept["accuracy_ci95"] = [best["val_accuracy_ci_low"], best["val_accuracy_ci_high"]]
    return kept


def test_extras(test: dict, kept_predictions: dict) -> dict:
    """``summary.json``'s test block beyond the metrics: the accuracy's 95% Wilson interval, and where the
    predictions are kept with the test set's fingerprint."""
    extras = dict(kept_predictions)
    if test.get("count"):
        extras["accuracy_ci95"] = list(accuracy_interval(test["accuracy"], test["count"]))
    return extras

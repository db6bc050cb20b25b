"""The names of a run directory's files that several layers look for. Imports no torch."""

from __future__ import annotations

from pathlib import Path

LOCK_FILE = ".lock"
RESUMABLE_PATTERNS = ("training_checkpoint_*.pt", "interrupted_checkpoint_*.pt")
ORPHAN_PATTERN = "best_model_*.pt"  # a best model alone: its run was killed before its first training checkpoint


def resumable_checkpoints(directory: str | Path) -> list[Path]:
    """The files in ``directory`` named as checkpoints a run can continue from, by name (whatever they hold:
    ``run.rundir.read_candidates`` reads them). Files are written under a temporary name and renamed, so a
    half-written one is never named so."""
    return sorted(path for pattern in RESUMABLE_PATTERNS for path in Path(directory).glob(pattern))

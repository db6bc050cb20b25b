"""The names of a run directory's files that several layers look for. Imports no torch."""

from __future__ import annotations

import re
from pathlib import Path

from fmnist_ignite.errors import FmnistError

LOCK_FILE = ".lock"
RESUMABLE_PATTERNS = ("training_checkpoint_*.pt", "interrupted_checkpoint_*.pt")
ORPHAN_PATTERN = "best_model_*.pt"  # a best model alone: its run was killed before its first training checkpoint


def resumable_checkpoints(directory: str | Path) -> list[Path]:
    """The files in ``directory`` named as checkpoints a run can continue from, by name (whatever they hold:
    ``run.rundir.read_candidates`` reads them). Files are written under a temporary name and renamed, so a
    half-written one is never named so."""
    return sorted(path for pattern in RESUMABLE_PATTERNS for path in Path(directory).glob(pattern))


def model_file(source: str | Path) -> Path:
    """The checkpoint ``source`` names: the file itself, or in a run directory its best model (else its
    last training checkpoint). ``evaluate``, ``predict``, ``export`` and ``compare`` take either.

    Raises:
        FmnistError: no such file or directory, or a run directory without a model file.
    """
    path = Path(source)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FmnistError(f"{path}: no such checkpoint file or run directory")
    best = sorted(p for p in path.glob(ORPHAN_PATTERN) if p.is_file() and not p.is_symlink())
    if best:
        return max(best, key=epoch_of)
    kept = [p for p in resumable_checkpoints(path) if p.is_file() and not p.is_symlink()]
    if not kept:
        raise FmnistError(f"{path}: a directory without a model (no best_model_*.pt or training checkpoint)")
    return max(kept, key=epoch_of)


def epoch_of(path: Path) -> int:
    """The epoch or iteration a checkpoint's name carries (``best_model_7_...``: 7), else 0."""
    found = re.search(r"_(\d+)(?:_|\.pt$)", path.name)
    return int(found[1]) if found else 0

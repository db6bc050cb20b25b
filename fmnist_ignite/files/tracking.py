"""``tracking.json``: the ids of the runs an experiment tracker (MLflow, W&B) keeps for this run directory,
so that a resumed run continues the same tracked run. Written and read here only; read back it is input
like any other (bounded, no link followed, every id checked against its tracker's form).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.reading import Shape, read_json

TRACKING_FILE = "tracking.json"
MAX_TRACKING_BYTES = 16 << 10
RUN_IDS = {  # the form of each tracker's run ids: MLflow's 32 hex digits, W&B's short base-36 id
    "mlflow": re.compile(r"^[0-9a-f]{32}$"),
    "wandb": re.compile(r"^[0-9a-z]{1,64}$"),
}


def read_tracked_runs(directory: Path) -> dict[str, str]:
    """The tracked runs' ids by tracker, from ``directory/tracking.json``; empty when there is none.

    Raises:
        FmnistError: one line naming a damaged or planted file (a link, too large, an id of another form).
    """
    path = Path(directory) / TRACKING_FILE
    data = read_json(path, MAX_TRACKING_BYTES, "a tracking file")
    if data is None:
        return {}
    shape = Shape(str(path))
    kept = shape.mapping(data, "the file")
    ids: dict[str, str] = {}
    for tracker, form in RUN_IDS.items():
        run_id = shape.text(kept.get(tracker), tracker, optional=True)
        if run_id is None:
            continue
        if not form.match(run_id):
            raise FmnistError(f"{path}: {tracker} is not a {tracker} run id, got {run_id[:80]!r}")
        ids[tracker] = run_id
    return ids


def write_tracked_runs(directory: Path, ids: dict[str, str]) -> None:
    """Keep the tracked runs' ``ids`` (tracker -> run id) in ``directory/tracking.json``."""
    write_durably(Path(directory) / TRACKING_FILE, json.dumps(ids, indent=2, sort_keys=True) + "\n")

"""``calibration.json``: the temperature a run fitted on its validation split for the weights it kept (the
best model's, or the last), which ``predict`` and ``evaluate`` scale that model's probabilities by. Written
and read here only; read back it is input like any other (bounded, no link followed, every field checked).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.reading import Shape, read_json

CALIBRATION_FILE = "calibration.json"
MAX_CALIBRATION_BYTES = 64 << 10
TEMPERATURES = (0.05, 20.0)  # the range a fit searches (analysis.calibration) and a file may hold


def write_calibration(
    directory: Path, temperature: float, checkpoint: str | None, weights: str, validation: dict
) -> None:
    """Keep the fitted ``temperature`` of the ``weights`` the run scored (held by the file ``checkpoint`` in
    ``directory``, None when no file holds them as they were scored), with the validation block it was
    fitted on, in ``directory/calibration.json``."""
    data = {
        "temperature": temperature,
        "fitted_on": "validation",
        "checkpoint": checkpoint,
        "weights": weights,
        "validation": validation,
    }
    write_durably(Path(directory) / CALIBRATION_FILE, json.dumps(data, indent=2) + "\n")


def read_temperature(checkpoint: Path) -> float | None:
    """The temperature the run of ``checkpoint`` fitted for the weights that file holds.

    Args:
        checkpoint: a best-model file (or a training checkpoint) in its run directory.

    Returns:
        The temperature, or None: no ``calibration.json`` beside it (a run without a validation split, or
        from before calibration was kept), or one fitted for another file's weights.

    Raises:
        FmnistError: one line naming a damaged or planted file (a link, too large, a bad temperature).
    """
    path = Path(checkpoint).parent / CALIBRATION_FILE
    data = read_json(path, MAX_CALIBRATION_BYTES, "a calibration file")
    if data is None:
        return None
    shape = Shape(str(path))
    kept = shape.mapping(data, "the file")
    temperature = checked_temperature(shape.number(kept.get("temperature"), "temperature"), str(path))
    fitted_for = shape.text(kept.get("checkpoint"), "checkpoint", optional=True)
    return temperature if fitted_for == Path(checkpoint).name else None


def checked_temperature(value: object, source: str) -> float:
    """``value`` as a temperature a fit can give (a number in ``TEMPERATURES``), read back from ``source``.

    Raises:
        FmnistError: one line naming ``source``: anything else (a tampered or damaged file).
    """
    low, high = TEMPERATURES
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not low <= number <= high:
        raise FmnistError(f"{source}: temperature must be a number in [{low}, {high}], got {value!r}")
    return float(number)

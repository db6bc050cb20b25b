"""What a run's report page reads beyond its summary and predictions, each checked as untrusted input:
``corruptions.json`` (``evaluate --corruptions``), the settings against the recipe they came from, and the
test images of the top losses (used only when they are the images the run scored)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist_ignite.config.recipes import RECIPES
from fmnist_ignite.config.settings import settings
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.reading import Shape, read_json
from fmnist_ignite.files.runstate import one_line
from fmnist_ignite.ui.pages import shown_value

MAX_CORRUPTIONS_BYTES = 1 << 20  # 30 scores: about 8 KB
MAX_CORRUPTION_SCORES = 1000
UNCOMPARED = ("output_dir", "resume")  # where a run lies and how it was started, not what it is


def checked_corruptions(path: Path) -> dict | None:
    """``corruptions.json`` as ``CorruptionResults.to_dict`` writes it, every field checked; None: no file.

    Raises:
        FmnistError: one line naming the file and the field.
    """
    data = read_json(path, MAX_CORRUPTIONS_BYTES, "a corruptions file")
    if data is None:
        return None
    shape = Shape(str(path))
    kept = shape.mapping(data, "the file")
    clean = shape.mapping(kept.get("clean"), "clean")
    scores = kept.get("corruptions")
    if not isinstance(scores, list) or not 1 <= len(scores) <= MAX_CORRUPTION_SCORES:
        raise shape.fail("corruptions", f"a list of 1 to {MAX_CORRUPTION_SCORES} scores", scores)
    checked = []
    for i, score in enumerate(scores):
        score = shape.mapping(score, f"corruptions[{i}]")
        checked.append(
            {
                "corruption": shape.text(score.get("corruption"), f"corruptions[{i}].corruption"),
                "severity": shape.integer(score.get("severity"), f"corruptions[{i}].severity"),
                "accuracy": shape.fraction(score.get("accuracy"), f"corruptions[{i}].accuracy"),
                "ci95": shape.interval(score.get("ci95"), f"corruptions[{i}].ci95"),
            }
        )
    return {
        "seed": shape.integer(kept.get("seed"), "seed"),
        "clean": {
            "accuracy": shape.fraction(clean.get("accuracy"), "clean.accuracy"),
            "ci95": shape.interval(clean.get("ci95"), "clean.ci95"),
        },
        "mean_corruption_accuracy": shape.fraction(kept.get("mean_corruption_accuracy"), "mean_corruption_accuracy"),
        "corruptions": checked,
    }


def settings_rows(config: dict) -> tuple[list[tuple[str, str, str | None]], str]:
    """Each setting of a run's saved ``config`` as the page shows it (name, value, and the value of the
    recipe it is nearest to when it differs), and which recipe that is ("the fast recipe").

    The recipe is the one the fewest settings differ from (a run of ``--recipe fast --epochs 3`` differs from
    fast in its epochs, from the tutorial's defaults in eight settings); a setting this version does not
    know is marked as differing."""
    table = settings()
    defaults = {name: s.default for name, s in table.items()}
    compared = [
        name for name in config if name not in UNCOMPARED and not getattr(table.get(name), "from_environment", None)
    ]

    def differing(basis: dict) -> list[str]:
        return [name for name in compared if name not in basis or not same(config[name], basis[name])]

    bases = {name: {**defaults, **recipe} for name, recipe in RECIPES.items()}
    nearest = min(bases, key=lambda name: len(differing(bases[name])))  # ties: the first (the tutorial's)
    basis, changed = bases[nearest], set(differing(bases[nearest]))
    rows = []
    for name, value in config.items():
        was = None
        if name in changed:
            was = shown_value(basis[name]) if name in basis else "(not a setting of this version)"
        rows.append((name, shown_value(value), was))
    words = "the defaults (the tutorial's)" if nearest == "tutorial" else f"the {nearest} recipe"
    return rows, words


def same(value: object, other: object) -> bool:
    """Equal as settings are: 0.001 and 1e-3 are, True and 1 are not."""
    return type(value) is type(other) and value == other or (
        isinstance(value, int | float) and isinstance(other, int | float)
        and not isinstance(value, bool) and not isinstance(other, bool) and value == other
    )  # fmt: skip


def scored_test_images(data_dir: str | None, fingerprint: str, count: int) -> tuple[np.ndarray | None, str]:
    """The test images a run scored (uint8, N x 28 x 28), found under ``data_dir`` or the system copy and
    used only when their fingerprint is the run's; else None and why, in a sentence for the page."""
    from fmnist_ignite.analysis.predictions import fingerprint as fingerprint_of
    from fmnist_ignite.data.fashion_mnist import locate_fashion_mnist
    from fmnist_ignite.data.idx import read_idx

    looked = f"under {data_dir} and the system copy" if data_dir else "in the system copy"
    try:
        files = locate_fashion_mnist(data_dir or "data", download=False)
        images = read_idx(files["t10k-images-idx3-ubyte"])
        labels = read_idx(files["t10k-labels-idx1-ubyte"])
    except FmnistError as exc:
        first = one_line(str(exc), 160)
        return None, f"The test images were not found {looked} ({first}): the mistakes are listed by index."
    if (
        images.ndim != 3
        or len(images) != count
        or len(labels) != count
        or fingerprint_of(images, labels) != fingerprint
    ):
        return None, (
            f"The test images found {looked} are not the ones this run scored (their fingerprint differs): the "
            "mistakes are listed by index."
        )
    return images.numpy(), ""

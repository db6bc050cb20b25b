"""The recipes: named sets of settings over the defaults (the tutorial's), chosen on the validation split."""

from __future__ import annotations

from typing import Any

from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError

RECIPES = {
    # The tutorial's hyperparameters: SGD, lr 1e-3, momentum 0.9, batch 64, 5 epochs.
    "tutorial": {},
    # Trial 0 of a `fmnist-ignite tune` study, as found (docs/tuning.md, "The study behind best"): the fast
    # recipe's optimiser and schedule, a lower peak lr, lighter regularisation, batch 128, 30 epochs.
    "best": {
        "optimizer": "adamw",
        "lr": 0.0007439967183111558,
        "weight_decay": 0.005011152426786156,
        "label_smoothing": 0.15146618713522683,
        "scheduler": "onecycle",
        "batch_size": 128,
        "dropout": 0.11518620090693213,
        "epochs": 30,
    },
    # The tuned settings the other recipes start from (AdamW at lr 2e-3, weight decay 0.05, label smoothing 0.1,
    # the one-cycle schedule, batch 256), chosen on the validation split (docs/speed.md; the test set played no
    # part), in 10 epochs: most of best's accuracy in a quarter of the time.
    "fast": {
        "optimizer": "adamw",
        "lr": 2e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "scheduler": "onecycle",
        "batch_size": 256,
        "dropout": 0.2,
        "epochs": 10,
    },
    # Time to accuracy with the tutorial's MLP unchanged: >= 90% mean test in under 30 s a seed on 2 AVX2 cores in
    # fp32 (docs/speed.md, "Recipes and speed"). Muon for the weight matrices (AdamW for the biases) reaches 90%
    # on validation in 8-10 epochs where AdamW needs about 20; on a CPU its Newton-Schulz iterations cost more
    # than the step itself, so few, large steps: batch 4096, 3 iterations, 9 epochs of one-cycle at lr 2.5e-2,
    # chosen on validation (seed 0) among batch 1024-4096, lr 6e-3-3e-2, 3 or 5 iterations, 7-10 epochs.
    "speed": {
        "optimizer": "muon",
        "lr": 2.5e-2,
        "ns_steps": 3,
        "weight_decay": 0.005,
        "label_smoothing": 0.15,
        "scheduler": "onecycle",
        "batch_size": 4096,
        "dropout": 0.115,
        "epochs": 9,
    },
    # The small CNN with the fast recipe's optimiser and schedule, training flips and test-time flips, 30 epochs at
    # lr 5e-3: 93.30% on validation (seed 0) against 93.08% for 20 epochs at 3e-3, the most that fits in 150 s on
    # 2 cores once the CNN runs channels-last (docs/speed.md). Validated every 5 epochs (and after the last): a
    # validation with flips is about a tenth of an epoch, 7% of the run when each epoch has one.
    "cnn": {
        "optimizer": "adamw",
        "lr": 5e-3,
        "weight_decay": 0.05,
        "label_smoothing": 0.1,
        "scheduler": "onecycle",
        "batch_size": 128,
        "model": "cnn",
        "dropout": 0.3,
        "epochs": 30,
        "hflip": True,
        "tta": True,
        "validate_every": 5,
    },
}
"""The named recipes, each a dict of ``Config`` settings over the defaults (the tutorial's).

"tutorial" is the tutorial's own settings; the others were chosen on the validation split (the test set played
no part). Pick one with ``recipe(name)`` in Python (``recipe("fast", epochs=3)`` for one with overrides),
``--recipe NAME`` on the command line, or ``recipe: NAME`` in a configuration file.
"""


def recipe(name: str = "tutorial", **overrides: Any) -> Config:
    """The named recipe's configuration, with ``overrides`` on top.

    Args:
        name: the recipe, a key of ``RECIPES``; "tutorial" (the default) is the tutorial's own settings.
        **overrides: ``Config`` settings that replace the recipe's, e.g. ``epochs=3``.

    Returns:
        The ``Config`` of the recipe's settings and the overrides over the defaults.

    Raises:
        FmnistError: ``name`` is not a recipe.
    """
    if name not in RECIPES:
        raise FmnistError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return Config(**{**RECIPES[name], **overrides})

"""A tuner that does not crown noise: whether a study's best trial is distinguishable from the next ones on
the validation images, and ``--confirm-top K --seeds S``, which re-trains the top K trials once per seed on
the validation split only (the test split is never loaded) and picks the best by the mean over seeds.

Each completed trial keeps what it predicted on the validation images (``OUTPUT_DIR/validation_predictions/
trial-NNNN.npz``, kept whatever ``--keep-trials`` removes), so trials are compared image by image: McNemar's
exact test of the best against each other completed trial, Holm-corrected. Its trial was chosen on those same
images, so a "distinguishable" is optimistic; a "not distinguishable" is not.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from fmnist_ignite.analysis.predictions import load_predictions
from fmnist_ignite.analysis.statistics import MeanInterval, accuracy_interval, holm, mcnemar, mean_interval
from fmnist_ignite.config.settings import Config
from fmnist_ignite.errors import FmnistError, shell_command
from fmnist_ignite.experiments.seeds import SeedsResult, mean_text, parse_seeds, train_seeds
from fmnist_ignite.files.durable import open_log, write_durably
from fmnist_ignite.files.saved_config import check_saved_config
from fmnist_ignite.ui.console import lines_to, to_file

logger = logging.getLogger(__name__)

ALPHA = 0.05
PREDICTIONS_DIR = "validation_predictions"
CONFIRM_DIR = "confirm"


def trial_predictions_path(study_dir: Path, trial_number: int) -> Path:
    """Where a trial's validation predictions are kept."""
    return Path(study_dir) / PREDICTIONS_DIR / f"trial-{trial_number:04d}.npz"


def accuracy_cell(value: float, val_size: int | None) -> str:
    """A trial's validation accuracy with its 95% Wilson interval: ``0.9044 (0.8960-0.9122)``."""
    if not val_size or math.isnan(value):
        return f"{value:.4f}"
    low, high = accuracy_interval(value, val_size)
    return f"{value:.4f} ({low:.4f}-{high:.4f})"


def ranked_complete(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The completed trials, best first (the lower number first on ties, as the study's best is)."""

    def best_first(t: FrozenTrial) -> tuple[float, int]:
        assert t.value is not None  # a completed trial has its value
        return -t.value, t.number

    return sorted((t for t in trials if t.state == TrialState.COMPLETE), key=best_first)


def best_versus_rest(trials: list[FrozenTrial], study_dir: Path, alpha: float = ALPHA) -> str | None:
    """One sentence: is the best completed trial distinguishable from each of the others on the validation
    images (McNemar's exact test on their kept predictions, Holm-corrected)? None with fewer than two."""
    complete = ranked_complete(trials)
    if len(complete) < 2:
        return None
    best, rest = complete[0], complete[1:]
    try:
        kept = {t.number: load_predictions(trial_predictions_path(study_dir, t.number), "validation") for t in complete}
    except FmnistError:
        return (
            f"Whether trial {best.number} is distinguishable from the next cannot be told here: some completed "
            f"trials kept no validation predictions (in {Path(study_dir) / PREDICTIONS_DIR})"
        )
    if len({k["sha256"] for k in kept.values()}) > 1:
        return f"The trials were scored on different validation splits: trial {best.number} cannot be compared"
    tests = [mcnemar(kept[best.number]["correct"], kept[t.number]["correct"]) for t in rest]
    adjusted = holm([test.p_value for test in tests])
    tied = [t.number for t, p in zip(rest, adjusted, strict=False) if p >= alpha]
    how = (
        f"on the {len(kept[best.number]['labels']):,} validation images (McNemar's exact test, Holm-corrected over "
        f"{len(rest)} comparison{'s' * (len(rest) > 1)}, alpha {alpha:g})"
    )
    if tied:
        names = ", ".join(map(str, tied[:10])) + (f" and {len(tied) - 10} more" if len(tied) > 10 else "")
        return (
            f"Trial {best.number} is not distinguishable from trial{'s' * (len(tied) > 1)} {names} {how}: their "
            f"order may be noise; --confirm-top {min(len(tied) + 1, 5)} --seeds 3 re-trains the top trials with "
            "three more seeds each to tell"
        )
    return f"Trial {best.number} is distinguishable from every other completed trial {how}"


def confirm_top(
    study: optuna.Study,
    study_dir: Path,
    config: Config,
    top: int,
) -> tuple[Path, dict] | None:
    """Re-train the study's ``top`` completed trials once per seed of ``config.seeds`` (a count N: the N seeds
    after the study's own), on the validation split only, and write the trial with the best mean validation
    accuracy to ``best.yaml`` with the evidence. Returns its path and the evidence, or None when the study
    still has running trials or another worker still trains some of the seeds (the last one writes it)."""
    trials = study.get_trials(deepcopy=False)
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    if running:
        logger.info(
            f"Confirmation of the top {top} trials waits: trial{'s' * (len(running) > 1)} "
            f"{', '.join(map(str, running))} still running in other workers; run the same command again once they end"
        )
        return None
    chosen = ranked_complete(trials)[:top]
    if not chosen:
        return None
    seeds = parse_seeds(config.seeds, config.seed + 1)
    listed = ", ".join(map(str, seeds))
    logger.info(
        f"Confirming the top {len(chosen)} trials ({', '.join(str(t.number) for t in chosen)}) with seed"
        f"{'s' * (len(seeds) > 1)} {listed} each, on the validation split (the test split is not loaded)"
    )
    results: dict[int, SeedsResult] = {}
    for trial in chosen:
        parent = Path(study_dir) / CONFIRM_DIR / f"trial-{trial.number:04d}"
        trial_config = config.replace(
            **check_saved_config(trial.user_attrs.get("config"), f"study {study.study_name}, trial {trial.number}"),
            seeds=",".join(map(str, seeds)),
            output_dir=str(parent),
            resume=None,
            score_test=False,
            plots=False,
            progress=False,
        )
        parent.mkdir(parents=True, exist_ok=True)
        with open_log(parent / "train.log") as out, lines_to(to_file(out)):  # the seeds' lines and their runs'
            result = train_seeds(trial_config)
        if result.pending or result.validation is None:
            logger.info(
                f"Trial {trial.number}: seeds {', '.join(map(str, result.pending))} are being trained by another "
                "worker; the worker that finishes last writes best.yaml"
            )
            return None
        results[trial.number] = result
        values = ", ".join(f"{100 * run['validation']['accuracy']:.2f}%" for run in result.runs)
        logger.info(f"Trial {trial.number}: validation {values}; {mean_text(result.validation)}")
    picked = max(chosen, key=lambda t: (_validation(results[t.number]).mean, -chosen.index(t)))
    evidence = confirmation_evidence(chosen, results, picked, seeds)
    path = Path(study_dir) / "best.yaml"
    write_confirmed_best(path, study.study_name, picked, evidence)
    write_durably(Path(study_dir) / CONFIRM_DIR / "summary.json", json.dumps(evidence, indent=2) + "\n")
    logger.info(evidence["verdict"])
    logger.info(f"Its settings: {path}; train it: {shell_command('fmnist-ignite train', config=path)}")
    return path, evidence


def _validation(result: SeedsResult) -> MeanInterval:
    """The statistics over a confirmed trial's seeds (``confirm_top`` keeps only results that have them)."""
    assert result.validation is not None
    return result.validation


def confirmation_evidence(
    chosen: list[FrozenTrial], results: Mapping[int, SeedsResult], picked: FrozenTrial, seeds: list[int]
) -> dict:
    """What the confirmation found, as data: each trial's study score, its seeds' validation accuracies and
    their mean, sd and t-interval, the pick, and Welch's t-test of the pick against the runner-up."""
    trials = [
        {
            "trial": t.number,
            "study_validation_accuracy": t.value,
            "seeds": {str(run["seed"]): run["validation"]["accuracy"] for run in results[t.number].runs},
            "validation_accuracy": _validation(results[t.number]).as_dict(),
            "output_dir": str(results[t.number].output_dir),
        }
        for t in chosen
    ]
    order = sorted(chosen, key=lambda t: -_validation(results[t.number]).mean)
    verdict = (
        f"Picked trial {picked.number}: the best mean validation accuracy over seeds "
        f"{', '.join(map(str, seeds))}, {mean_text(_validation(results[picked.number]))}"
    )
    welch = None
    if len(order) > 1 and len(seeds) > 1:
        from scipy.stats import ttest_ind

        runner_up = order[1]
        a = [run["validation"]["accuracy"] for run in results[picked.number].runs]
        b = [run["validation"]["accuracy"] for run in results[runner_up.number].runs]
        p = float(ttest_ind(a, b, equal_var=False).pvalue) if len(set(a + b)) > 1 else 1.0
        difference = mean_interval(a).mean - mean_interval(b).mean
        welch = {"against_trial": runner_up.number, "difference": difference, "p_value": p}
        verdict += (
            f"; {100 * difference:+.2f} points over trial {runner_up.number} "
            f"(Welch's t-test p = {p:.2g}{'' if p < ALPHA else ': within the seeds noise'})"
        )
    return {"seeds": seeds, "trials": trials, "picked": picked.number, "welch": welch, "verdict": verdict}


def write_confirmed_best(path: Path, study_name: str, picked: FrozenTrial, evidence: dict) -> None:
    """``best.yaml``: the picked trial's settings, which ``--config`` takes, the evidence in its comments."""
    import yaml

    seeds = ", ".join(map(str, evidence["seeds"]))
    lines = [f"# Study {study_name}, trial {picked.number}: picked by its mean validation accuracy over seeds {seeds}"]
    lines.append("# (re-trained on the validation split only: the test split was not read)")
    for t in evidence["trials"]:
        stats = t["validation_accuracy"]
        values = ", ".join(f"seed {s}: {100 * v:.2f}%" for s, v in t["seeds"].items())
        mark = "  <- picked" if t["trial"] == picked.number else ""
        sd = f", sd {100 * stats['sd']:.2f} points" if stats["sd"] is not None else ""
        lines.append(
            f"#   trial {t['trial']}: mean {100 * stats['mean']:.2f}%{sd} ({values}); in the study "
            f"{100 * t['study_validation_accuracy']:.2f}%{mark}"
        )
    if evidence["welch"]:
        w = evidence["welch"]
        against = f"#   against trial {w['against_trial']}: {100 * w['difference']:+.2f} points"
        lines.append(f"{against}, Welch's t-test p = {w['p_value']:.2g}")
    lines.append(f"# Train it: fmnist-ignite train --config {path}")
    write_durably(path, "\n".join(lines) + "\n" + yaml.safe_dump(picked.user_attrs["config"], sort_keys=False))

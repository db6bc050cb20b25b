"""Numbers with their uncertainty: Wilson intervals where accuracies are reported, repeated seeds, and a tuner
that re-trains its top trials over seeds before it picks one. Small synthetic runs."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import signal
import statistics as stats
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import small_config_file, synthetic_set
from ignite.engine import Events
from scipy.stats import binomtest, t

from fmnist_ignite import FmnistError, TrainingInterrupted, TuneSettings, train, train_seeds
from fmnist_ignite.analysis.statistics import accuracy_with_interval, holm, mean_interval, wilson_interval
from fmnist_ignite.cli.main import main
from fmnist_ignite.config.files import read_config_file
from fmnist_ignite.experiments.seeds import parse_seeds
from fmnist_ignite.handlers.evaluation import format_metrics

INTERVAL = r"(\d+\.\d)% \(95% CI (\d+\.\d)-(\d+\.\d)%\)"


# ------------------------------------------------------------------------------------------- intervals


@pytest.mark.parametrize("correct, total", [(9070, 10000), (4512, 5000), (0, 20), (20, 20), (1, 3), (7, 1000)])
def test_wilson_intervals_are_scipy_s(correct, total):
    low, high = wilson_interval(correct, total)
    expected = binomtest(correct, total).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == (pytest.approx(expected.low, abs=1e-12), pytest.approx(expected.high, abs=1e-12))
    wide = binomtest(correct, total).proportion_ci(confidence_level=0.99, method="wilson")
    assert wilson_interval(correct, total, 0.99) == (
        pytest.approx(wide.low, abs=1e-12),
        pytest.approx(wide.high, abs=1e-12),
    )
    assert (low == 0.0) == (correct == 0) and (high == 1.0) == (correct == total)  # exact at the ends, as SciPy's


@pytest.mark.parametrize("correct, total, confidence", [(11, 10, 0.95), (-1, 10, 0.95), (5, 10, 1.0), (5, 10, -0.1)])
def test_a_wilson_interval_of_impossible_counts_or_confidence_is_refused(correct, total, confidence):
    with pytest.raises(ValueError, match="must be between"):
        wilson_interval(correct, total, confidence)


@pytest.mark.slow  # a subprocess
def test_a_run_s_intervals_do_not_import_scipy():
    # scipy.stats takes 0.6 s to import: a default run's intervals must not pay it.
    code = (
        "import sys; from fmnist_ignite.handlers.evaluation import format_metrics; "
        "print(format_metrics('Test', {'accuracy': 0.9, 'loss': 0.3, 'count': 10000})); "
        "print('scipy.stats' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["Test: Accuracy: 90.0% (95% CI 89.4-90.6%), Avg loss: 0.300000", "False"]


def test_the_printed_block_carries_the_interval_and_says_nothing_it_does_not_know():
    assert accuracy_with_interval(0.907, 10000) == "90.7% (95% CI 90.1-91.3%)"
    line = format_metrics("Test, best (epoch 30) weights", {"accuracy": 0.907, "loss": 0.25, "count": 10000})
    assert line == "Test, best (epoch 30) weights: Accuracy: 90.7% (95% CI 90.1-91.3%), Avg loss: 0.250000"
    assert (
        format_metrics("Validation", {"accuracy": 0.5, "loss": 0.5})
        == "Validation: Accuracy: 50.0%, Avg loss: 0.500000"
    )


def test_holm_and_the_t_interval_by_hand():
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    values = [0.9073, 0.8982, 0.9060]
    result = mean_interval(values)
    half = t.ppf(0.975, 2) * stats.stdev(values) / math.sqrt(3)
    assert (result.mean, result.sd) == (pytest.approx(stats.mean(values)), pytest.approx(stats.stdev(values)))
    assert (result.low, result.high) == (pytest.approx(result.mean - half), pytest.approx(result.mean + half))
    assert mean_interval([0.9]).sd is None


def test_a_run_prints_the_intervals_its_summary_csv_and_predictions_hold(small_config, said):
    result = train(small_config.replace(epochs=2, lr=0.01))
    out = result.output_dir
    summary = json.loads((out / "summary.json").read_text())
    test_line = next(line for line in said() if line.startswith("Test, "))
    accuracy, low, high = map(float, re.search(rf"Accuracy: {INTERVAL}, Avg loss", test_line).groups())
    test = summary["test"]
    assert 0 < test["accuracy"] < 1 and test["count"] == 200  # the synthetic test set, not learnt perfectly
    assert (accuracy, low, high) == (
        round(100 * test["accuracy"], 1),
        *(round(100 * b, 1) for b in test["accuracy_ci95"]),
    )
    assert test["accuracy_ci95"] == pytest.approx(list(wilson_interval(round(test["accuracy"] * 200), 200)))
    # Every validation line's interval is its metrics.csv row's, on the 100 validation images.
    printed = [re.search(rf"^Validation: Accuracy: {INTERVAL}", line) for line in said()]
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    assert len([m for m in printed if m]) == len(rows) == 2
    for match, row in zip(filter(None, printed), rows, strict=False):
        values = dict(zip(("epoch", "train_loss", "val_loss", "acc", "low", "high"), row.split(","), strict=False))
        assert tuple(map(float, match.groups())) == tuple(
            round(100 * float(values[k]), 1) for k in ("acc", "low", "high")
        )
        assert (float(values["low"]), float(values["high"])) == pytest.approx(
            wilson_interval(round(float(values["acc"]) * 100), 100)
        )
    assert summary["best_validation"]["accuracy_ci95"][0] < summary["best_validation"]["accuracy"]

    # The kept predictions: every test image, its probabilities, the labels, the test set's fingerprint.
    kept = np.load(out / "test_predictions.npz")
    images, labels = synthetic_set(200, seed=2, marker=255)  # the test set conftest wrote
    digest = hashlib.sha256(labels.numpy().tobytes() + images.numpy().tobytes()).hexdigest()
    assert str(kept["test_set_sha256"]) == test["test_set_sha256"] == digest
    assert kept["labels"].tolist() == labels.tolist() and kept["probabilities"].shape == (200, 10)
    assert np.allclose(kept["probabilities"].sum(axis=1), 1, atol=1e-5)
    assert (kept["predicted"] == kept["labels"]).mean() == pytest.approx(test["accuracy"])


# --------------------------------------------------------------------------------------------- seeds


def stop_the_second_seed_at(iteration: int):
    """Extra handlers for train_seeds: the second run it starts gets SIGTERM after ``iteration``."""
    started = []

    def attach(trainer):
        started.append(trainer)
        if len(started) == 2:
            trainer.add_event_handler(
                Events.ITERATION_COMPLETED(once=iteration), lambda e: os.kill(os.getpid(), signal.SIGTERM)
            )

    return attach


def test_seeds_train_one_run_each_resume_an_interrupted_one_and_summarise(tmp_path, small_config, capsys):
    parent = tmp_path / "seeds"
    file = small_config_file(tmp_path, epochs=2, lr=0.01, log_interval=100)
    config = small_config.replace(**read_config_file(file), seeds="0,1", output_dir=str(parent))
    with pytest.raises(TrainingInterrupted) as stopped:  # seed 1 stopped in its first epoch
        train_seeds(config, extra_handlers=[stop_the_second_seed_at(4)])
    # a notebook says how to go on with all the seeds, not with seed 1's run alone (train refuses seeds)
    assert stopped.value.again.said(command_line=True) == f"fmnist-ignite train --seeds=0,1 --output-dir={parent}"
    assert (
        stopped.value._render_traceback_()[-1]
        == f"Continue with train_seeds(config.replace(seeds='0,1', output_dir='{parent}'))"
    )
    first = parent / "seed-0" / "training_checkpoint_2.pt"
    first_written = first.stat().st_mtime_ns
    assert (parent / "seed-1" / "interrupted_checkpoint_4.pt").is_file()

    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--config",
                str(file),
                "--seeds",
                "0,1",
                "--output-dir",
                str(parent),
                "--no-progress",
                "--no-plots",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Seed 0: finished earlier, kept" in out and out.count("Epoch 1\n") == 1  # seed 1's epoch 1, continued
    assert f"Resuming from {parent / 'seed-1' / 'interrupted_checkpoint_4.pt'}" in out
    assert first.stat().st_mtime_ns == first_written  # seed 0 was not trained again

    assert sorted(p.name for p in parent.iterdir() if p.is_dir()) == ["seed-0", "seed-1"]
    runs = [json.loads((parent / f"seed-{s}" / "summary.json").read_text()) for s in (0, 1)]
    assert [run["seed"] for run in runs] == [0, 1] and all(run["status"] == "completed" for run in runs)
    accuracies = [run["test"]["accuracy"] for run in runs]
    assert accuracies[0] != accuracies[1]
    summary = json.loads((parent / "seeds_summary.json").read_text())
    assert summary["complete"] and summary["seeds"] == [0, 1]
    assert summary["test_accuracy"]["mean"] == pytest.approx(stats.mean(accuracies))
    assert summary["test_accuracy"]["sd"] == pytest.approx(stats.stdev(accuracies))
    assert summary["test_accuracy"]["ci95"] == pytest.approx(
        list(t.interval(0.95, 1, loc=stats.mean(accuracies), scale=stats.stdev(accuracies) / math.sqrt(2)))
    )
    assert f"Test accuracy over 2 seeds: mean {100 * stats.mean(accuracies):.2f}%" in out


def test_a_seed_another_process_holds_is_left_to_it_and_the_summary_says_so(tmp_path, small_config, said):
    parent = tmp_path / "seeds"
    (parent / "seed-0").mkdir(parents=True)
    with open(parent / "seed-0" / ".lock", "a+") as held:  # as another run holds its directory
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        result = train_seeds(small_config.replace(epochs=1, seeds="0,1", output_dir=str(parent)))
    assert "Seed 0: another process (pid 4242) is training it; left to it" in said()
    assert result.pending == [0] and [run["seed"] for run in result.runs] == [1]
    summary = json.loads((parent / "seeds_summary.json").read_text())
    assert not summary["complete"] and summary["pending"] == [0] and summary["test_accuracy"]["n"] == 1
    assert not list((parent / "seed-0").glob("*.pt"))


def test_bad_seeds_and_a_resume_path_are_refused_in_one_line(tmp_path, capsys):
    assert parse_seeds("3", 5) == [5, 6, 7] and parse_seeds("0,2,") == [0, 2]
    for bad, message in (
        ("0,0", "named twice"),
        ("x", "a list of seeds"),
        ("0", r"in \[1, 1000\]"),
        ("-1,2", r"in \[0, 4294967295\]"),
    ):
        with pytest.raises(FmnistError, match=message):
            parse_seeds(bad)
    file = small_config_file(tmp_path)
    assert main(["train", "--config", str(file), "--seeds", "1,1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(FmnistError, match="one run per seed"):
        train(read_config_file_config(file, seeds="0,1"))
    with pytest.raises(
        FmnistError, match="leave out resume='PATH', or resume that one run alone with output_dir='PARENT/seed-N'"
    ):
        train_seeds(read_config_file_config(file, seeds="0,1", resume=str(tmp_path / "x.pt")))


def read_config_file_config(file: Path, **changes):
    from fmnist_ignite import Config

    return Config(**{**read_config_file(file), **changes})


# --------------------------------------------------------------------------------------------- tuner


def test_confirm_top_retrains_the_top_trials_over_seeds_on_validation_and_picks_by_the_mean(
    small_config, tmp_path, splits_loaded, capsys
):
    pytest.importorskip("optuna", reason="the tune extra is not installed")
    from fmnist_ignite.experiments.storage import resolve_storage
    from fmnist_ignite.experiments.study import open_study
    from fmnist_ignite.experiments.tuning import tune

    study_dir = tmp_path / "study"
    study_dir.mkdir()
    study = open_study(resolve_storage(study_dir, None), "fmnist", 30)
    for lr in (0.004, 0.01):
        study.enqueue_trial({"lr": lr, "optimizer": "sgd"})
    config = small_config.replace(output_dir=str(study_dir), epochs=1, seeds="2")
    space = {"lr": [0.004, 0.01], "optimizer": ["sgd"]}
    result = tune(config, TuneSettings(2, confirm_top=2), space=space)
    out = capsys.readouterr().out

    assert splits_loaded == [["train", "validation"]] * 6  # 2 trials, then 4 runs: never the test split
    confirmed = sorted(
        p.relative_to(study_dir / "confirm").as_posix() for p in study_dir.glob("confirm/trial-*/seed-*")
    )
    assert confirmed == ["trial-0000/seed-1", "trial-0000/seed-2", "trial-0001/seed-1", "trial-0001/seed-2"]
    means = {}
    for number in (0, 1):
        summaries = [
            json.loads(p.read_text()) for p in study_dir.glob(f"confirm/trial-{number:04d}/seed-*/summary.json")
        ]
        assert all(s["test"] is None for s in summaries)
        means[number] = stats.mean(s["best_validation"]["accuracy"] for s in summaries)
    picked = max(means, key=lambda n: (means[n], -n))
    assert result.best_config == study_dir / "best.yaml"
    text = result.best_config.read_text()
    assert text.startswith(f"# Study fmnist, trial {picked}: picked by its mean validation accuracy over seeds 1, 2")
    assert read_config_file(result.best_config)["lr"] == study.trials[picked].params["lr"]
    assert f"mean {100 * means[picked]:.2f}%" in text
    # The trials table gives each validation accuracy its interval; the tuner says whether the best stands out.
    assert len(re.findall(r"\n\d +complete +[01]\.\d{4} \([01]\.\d{4}-[01]\.\d{4}\)", out)) == 2
    assert re.search(r"Trial \d is (not )?distinguishable from", out)
    assert json.loads((study_dir / "confirm" / "summary.json").read_text())["picked"] == picked
    assert yaml.safe_load(text)["epochs"] == 1

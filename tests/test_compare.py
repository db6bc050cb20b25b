"""``fmnist-ignite compare``: paired tests between runs from the predictions they kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import binomtest

from fmnist_ignite import compare_runs, train
from fmnist_ignite.analysis.statistics import holm
from fmnist_ignite.cli.main import main

N = 1000
RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 10, N).astype(np.uint8)


def write_run(directory, correct, sha="a" * 64, labels=LABELS):
    """A run directory holding only a crafted test_predictions.npz: right where ``correct`` says."""
    directory.mkdir(parents=True)
    predicted = np.where(correct, labels, (labels + 1) % 10).astype(np.uint8)
    probabilities = np.eye(10, dtype=np.float32)[predicted]
    np.savez(
        directory / "test_predictions.npz",
        predicted=predicted,
        probabilities=probabilities,
        labels=labels,
        test_set_sha256=np.array(sha),
    )
    return directory


def table(both, first_only, second_only):
    """Two runs' right/wrong on N images: both right, the first only, the second only, the rest both wrong."""
    first, second = np.zeros(N, bool), np.zeros(N, bool)
    first[:both] = second[:both] = True
    first[both : both + first_only] = True
    second[both + first_only : both + first_only + second_only] = True
    order = RNG.permutation(N)  # spread over the classes
    return first[order], second[order]


def test_a_known_discordant_split_gives_mcnemar_s_exact_p_and_the_verdict_both_ways(tmp_path, capsys):
    first, second = table(850, 10, 30)
    a, b = write_run(tmp_path / "a", first), write_run(tmp_path / "b", second)
    expected = binomtest(30, 40, 0.5).pvalue  # by hand: 30 of the 40 discordant images went to b

    ab = compare_runs([a, b], names=["A", "B"])
    assert (ab.pair.first_only, ab.pair.second_only) == (10, 30)
    assert ab.pair.p_value == pytest.approx(expected) and expected < 0.01
    assert ab.pair.difference == pytest.approx(0.02) and 0 < ab.pair.low < 0.02 < ab.pair.high
    assert ab.verdict.startswith(f"B beats A by 2.0 points (95% CI {100 * ab.pair.low:.1f}-{100 * ab.pair.high:.1f})")
    assert ab.verdict.endswith(f"p = {expected:.2g}") and ab.significant
    assert [run.accuracy for run in ab.runs] == [0.86, 0.88]

    ba = compare_runs([b, a], names=["B", "A"])  # the other way round: the same winner, the same test
    assert ba.pair.p_value == pytest.approx(expected) and ba.pair.difference == pytest.approx(-0.02)
    assert ba.verdict == ab.verdict
    # Per class: the discordant images of each class, Holm-corrected over the classes.
    assert sum(c.test.first_only for c in ab.per_class) == 10 and sum(c.test.second_only for c in ab.per_class) == 30
    assert [c.p_holm for c in ab.per_class] == pytest.approx(holm([c.test.p_value for c in ab.per_class]))

    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "only A right on 10, only B right on 30" in out
    assert (
        out.strip().splitlines()[-1] == f"Verdict: {b} beats {a} by 2.0 points" + ab.verdict.split("by 2.0 points")[1]
    )


def test_a_split_within_chance_and_identical_runs_are_no_difference(tmp_path):
    first, second = table(850, 15, 20)
    a, b = write_run(tmp_path / "a", first), write_run(tmp_path / "b", second)
    close = compare_runs([a, b], names=["A", "B"])
    assert close.pair.p_value == pytest.approx(binomtest(20, 35, 0.5).pvalue) and not close.significant
    assert close.verdict.startswith("no difference this test set can detect (B - A: +0.5 points")
    assert close.pair.low < 0 < close.pair.high

    same = compare_runs([a, a], names=["A", "A again"])
    assert same.pair.discordant == 0 and same.pair.p_value == 1.0
    assert same.verdict.startswith("no difference this test set can detect")


def test_runs_on_different_test_sets_or_without_predictions_are_refused_in_one_line(tmp_path, capsys):
    first, second = table(850, 10, 30)
    a = write_run(tmp_path / "a", first)
    other = write_run(tmp_path / "other", second, sha="b" * 64)
    assert main(["compare", str(a), str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "different test sets" in err
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(a), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no test_predictions.npz" in err
    assert main(["compare", str(a)]) == 2 and "two runs or more" in capsys.readouterr().err


def test_more_runs_are_ranked_and_marked_against_the_best_with_holm(tmp_path, capsys):
    best, close = table(850, 25, 20)  # best: 875 right; close: 870
    far = np.zeros(N, bool)
    far[np.flatnonzero(best)[:800]] = True  # 800 right, all of them right by the best too
    runs = [write_run(tmp_path / name, c) for name, c in (("close", close), ("far", far), ("best", best))]
    result = compare_runs(runs, names=["close", "far", "best"])
    assert [r.run.name for r in result.ranking] == ["best", "close", "far"]
    p_close, p_far = binomtest(20, 45, 0.5).pvalue, binomtest(0, 75, 0.5).pvalue
    assert result.ranking[1].p_holm == pytest.approx(holm([p_close, p_far])[0])
    assert result.ranking[2].p_holm == pytest.approx(holm([p_close, p_far])[1])
    assert [r.distinguishable for r in result.ranking] == [None, False, True]
    assert result.verdict.startswith("best ranks first, but this test set cannot tell it from close")
    assert main(["compare", *map(str, runs)]) == 0
    assert "Holm" in capsys.readouterr().out


def test_two_trained_runs_compare_from_the_predictions_they_kept(small_config, tmp_path):
    one = train(small_config.replace(epochs=1, lr=0.01, output_dir=str(tmp_path / "one")))
    two = train(small_config.replace(epochs=1, lr=0.01, seed=1, output_dir=str(tmp_path / "two")))
    result = compare_runs([one.output_dir, two.output_dir])
    summaries = [json.loads((r.output_dir / "summary.json").read_text())["test"] for r in (one, two)]
    assert [run.accuracy for run in result.runs] == pytest.approx([s["accuracy"] for s in summaries])
    for run, summary in zip(result.runs, summaries, strict=False):
        assert [run.low, run.high] == pytest.approx(summary["accuracy_ci95"])
    assert result.test_set_sha256 == summaries[0]["test_set_sha256"] and result.total == 200

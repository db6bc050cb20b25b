"""``fmnist-ignite compare RUN RUN [...]``: is one run really better than another on this test set?

Runs are compared image by image from the predictions each kept (``test_predictions.npz``), so the
comparison is paired (Dietterich 1998): two runs with McNemar's exact test on the images only one of them
got right, the difference of accuracy with its 95% interval and per class; more runs ranked by accuracy,
each tested against the best with Holm's correction for the number of comparisons. Runs scored on
different test sets, or without kept predictions, are refused in one line.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fmnist_ignite.analysis.predictions import load_predictions
from fmnist_ignite.analysis.statistics import (
    McNemar,
    accuracy_with_interval,
    holm,
    mcnemar,
    p_text,
    percent_range,
    wilson_interval,
)
from fmnist_ignite.errors import FmnistError

ALPHA = 0.05


@dataclass
class RunScore:
    """One run's test accuracy from its kept predictions, with the 95% Wilson interval."""

    name: str
    path: Path
    correct: int
    total: int
    accuracy: float
    low: float
    high: float
    per_class_accuracy: dict[str, float] = field(default_factory=dict)


@dataclass
class ClassDifference:
    """One class: each run's accuracy on its images, the difference (second minus first) and McNemar's test
    on them, Holm-corrected over the classes."""

    name: str
    images: int
    first: float
    second: float
    test: McNemar
    p_holm: float


@dataclass
class RankedRun:
    """A run in the ranking of several: against the best, McNemar's test and its Holm-corrected p-value."""

    rank: int
    run: RunScore
    against_best: McNemar | None  # None for the best itself
    p_holm: float | None
    distinguishable: bool | None  # from the best, at alpha after Holm's correction


@dataclass
class Comparison:
    """What ``compare_runs`` found; ``verdict`` in one sentence, ``text()`` for people.

    Attributes:
        runs: the runs, as given, each with its test accuracy and 95% Wilson interval.
        test_set_sha256: the fingerprint of the test set they share.
        total: the test images each was scored on.
        verdict: the finding in one sentence.
        pair: two runs: McNemar's test of the second against the first; None for more.
        per_class: two runs: each class's accuracies, difference and test, Holm-corrected over the classes.
        ranking: more than two runs: the runs ranked by accuracy, each tested against the best.
        alpha: the significance level the verdict is at.
    """

    runs: list[RunScore]
    test_set_sha256: str
    total: int
    verdict: str
    pair: McNemar | None = None  # two runs: the second against the first
    per_class: list[ClassDifference] = field(default_factory=list)
    ranking: list[RankedRun] = field(default_factory=list)
    alpha: float = ALPHA

    @property
    def significant(self) -> bool | None:
        """Two runs: whether McNemar's test tells them apart at ``alpha``."""
        return None if self.pair is None else self.pair.p_value < self.alpha

    def text(self) -> str:
        return format_comparison(self)

    def __repr__(self) -> str:
        return f"Comparison({len(self.runs)} runs on {self.total:,} test images: {self.verdict})"

    def _repr_html_(self) -> str:
        """In a notebook: the verdict, then the whole comparison as ``text()`` says it."""
        return f"<div><b>{html.escape(self.verdict)}</b><pre>{html.escape(self.text())}</pre></div>"


def points(fraction: float, digits: int = 1, sign: bool = False) -> str:
    """A difference of accuracies in percentage points."""
    return f"{100 * fraction:{'+' if sign else ''}.{digits}f}"


def interval_digits(low: float, high: float) -> int:
    """Decimals that show an interval of a difference: one, or two for an interval narrower than 0.2 points."""
    return 1 if high - low >= 0.002 else 2


def pair_verdict(first: str, second: str, test: McNemar, alpha: float = ALPHA) -> str:
    """``B beats A by 0.6 points (95% CI 0.2-1.0), p = 0.004``, or that this test set cannot tell them apart."""
    digits = interval_digits(test.low, test.high)
    if test.p_value < alpha and test.difference != 0:
        winner, loser, sign = (second, first, 1) if test.difference > 0 else (first, second, -1)
        low, high = sorted((sign * test.low, sign * test.high))
        return (
            f"{winner} beats {loser} by {points(sign * test.difference, digits)} points "
            f"(95% CI {percent_range(low, high, digits, unit='')}), {p_text(test.p_value)}"
        )
    return (
        f"no difference this test set can detect ({second} - {first}: {points(test.difference, digits, sign=True)} "
        f"points, 95% CI {percent_range(test.low, test.high, digits, unit='')}, {p_text(test.p_value)})"
    )


def compare_runs(runs: Sequence[str | Path], names: Sequence[str] | None = None, alpha: float = ALPHA) -> Comparison:
    """Compare runs on the test images they were all scored on, from their kept predictions.

    Two runs: McNemar's exact test and the difference of accuracy with its interval, overall and per class.
    More: ranked by accuracy, each tested against the best with Holm's correction.

    Args:
        runs: run directories (or their ``test_predictions.npz``), at least two.
        names: what to call them; None: the paths as given.
        alpha: the significance level of the verdict (0.05 by default).

    Raises:
        FmnistError: (one line) fewer than two runs, a run without predictions, or runs scored on different test
            sets.
    """
    if len(runs) < 2:
        raise FmnistError(f"compare needs two runs or more, got {len(runs)}")
    names = [str(run) for run in runs] if names is None else list(names)
    kept = [load_predictions(run) for run in runs]
    first_sha = kept[0]["sha256"]
    for name, predictions in zip(names[1:], kept[1:], strict=False):
        if predictions["sha256"] != first_sha or len(predictions["labels"]) != len(kept[0]["labels"]):
            raise FmnistError(
                f"{names[0]} and {name} were scored on different test sets (test set sha256 {first_sha[:12]}... and "
                f"{predictions['sha256'][:12]}...): their predictions cannot be paired image by image"
            )
    labels = kept[0]["labels"]
    class_names = kept[0].get("class_names")
    if class_names is None:  # a file without them: the data set's
        from fmnist_ignite.data.fashion_mnist import CLASS_NAMES

        class_names = CLASS_NAMES
    scores = []
    for name, run, predictions in zip(names, runs, kept, strict=False):
        correct = predictions["correct"]
        per_class = {c: float(correct[labels == i].mean()) for i, c in enumerate(class_names) if (labels == i).any()}
        k, n = int(correct.sum()), int(correct.size)
        scores.append(RunScore(name, Path(run), k, n, k / n, *wilson_interval(k, n), per_class))
    total = int(labels.size)
    if len(runs) == 2:
        a, b = (predictions["correct"] for predictions in kept)
        test = mcnemar(a, b)
        classes = [(i, c) for i, c in enumerate(class_names) if (labels == i).any()]
        class_tests = [mcnemar(a[labels == i], b[labels == i]) for i, _ in classes]
        class_adjusted = holm([t.p_value for t in class_tests])
        differences = [
            ClassDifference(
                c, int((labels == i).sum()), scores[0].per_class_accuracy[c], scores[1].per_class_accuracy[c], t, p
            )
            for (i, c), t, p in zip(classes, class_tests, class_adjusted, strict=False)
        ]
        verdict = pair_verdict(names[0], names[1], test, alpha)
        return Comparison(scores, first_sha, total, verdict, test, differences, alpha=alpha)
    order = sorted(range(len(runs)), key=lambda i: (-scores[i].correct, i))
    best = order[0]
    tests = {i: mcnemar(kept[best]["correct"], kept[i]["correct"]) for i in order[1:]}
    adjusted = dict(zip(order[1:], holm([tests[i].p_value for i in order[1:]]), strict=False))
    ranking = [RankedRun(1, scores[best], None, None, None)] + [
        RankedRun(rank, scores[i], tests[i], adjusted[i], adjusted[i] < alpha) for rank, i in enumerate(order[1:], 2)
    ]
    tied = [r.run.name for r in ranking[1:] if not r.distinguishable]
    if tied:
        verdict = (
            f"{scores[best].name} ranks first, but this test set cannot tell it from {', '.join(tied)} "
            f"(McNemar's exact test, Holm-corrected over {len(order) - 1} comparisons, alpha {alpha:g})"
        )
    else:
        verdict = (
            f"{scores[best].name} beats every other run on this test set (McNemar's exact test, Holm-corrected "
            f"over {len(order) - 1} comparisons, alpha {alpha:g})"
        )
    return Comparison(scores, first_sha, total, verdict, ranking=ranking, alpha=alpha)


def table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in rows]


def format_comparison(comparison: Comparison) -> str:
    """The comparison as people read it: the runs, the test, the per-class differences or the ranking, the verdict."""
    lines = [
        f"Compared on the same {comparison.total:,} test images (test set sha256 {comparison.test_set_sha256[:12]}...)"
    ]
    if comparison.pair is not None:
        a, b = comparison.runs
        test = comparison.pair
        letters = {"A": a, "B": b}
        width = max(len(run.name) for run in (a, b))
        lines += [
            f"  {letter}: {run.name:<{width}}  {accuracy_with_interval(run.accuracy, run.total, 2)}"
            for letter, run in letters.items()
        ]
        both_right = a.correct - test.first_only
        both_wrong = comparison.total - both_right - test.discordant
        digits = interval_digits(test.low, test.high)
        counts = f"only A right on {test.first_only:,}, only B right on {test.second_only:,}"
        difference = f"{points(test.difference, digits, sign=True)} points"
        lines += [
            f"Both right on {both_right:,}, both wrong on {both_wrong:,}; {counts}: "
            + f"McNemar's exact test {p_text(test.p_value)}",
            f"B - A: {difference} (95% CI {percent_range(test.low, test.high, digits, unit='')}, paired)",
            "Per class (p: McNemar's exact test on the class's images, Holm-corrected over the classes):",
        ]
        rows = [["  class", "A", "B", "B - A", "only A", "only B", "p"]]
        for c in sorted(comparison.per_class, key=lambda c: c.second - c.first):
            rows.append(
                [
                    f"  {c.name}",
                    f"{100 * c.first:.1f}%",
                    f"{100 * c.second:.1f}%",
                    points(c.second - c.first, sign=True),
                    str(c.test.first_only),
                    str(c.test.second_only),
                    p_text(c.p_holm).removeprefix("p = ").removeprefix("p "),
                ]
            )
        lines += table(rows)
    else:
        rows = [["rank", "run", "accuracy (95% CI)", "vs best (points, 95% CI)", "p", "p (Holm)", "distinguishable"]]
        for r in comparison.ranking:
            if r.against_best is None:
                rows.append(
                    [
                        str(r.rank),
                        r.run.name,
                        accuracy_with_interval(r.run.accuracy, r.run.total, 2),
                        "-",
                        "-",
                        "-",
                        "(best)",
                    ]
                )
                continue
            t = r.against_best
            assert r.p_holm is not None  # set with against_best: every run but the best has both
            digits = interval_digits(t.low, t.high)
            rows.append(
                [
                    str(r.rank),
                    r.run.name,
                    accuracy_with_interval(r.run.accuracy, r.run.total, 2),
                    f"{points(t.difference, digits, sign=True)} ({percent_range(t.low, t.high, digits, unit='')})",
                    p_text(t.p_value).removeprefix("p = ").removeprefix("p "),
                    p_text(r.p_holm).removeprefix("p = ").removeprefix("p "),
                    "yes" if r.distinguishable else "no",
                ]
            )
        lines += table(rows)
    lines.append(f"Verdict: {comparison.verdict}")
    return "\n".join(lines)

"""The uncertainty of the numbers a run reports: Wilson intervals of an accuracy (closed form, SciPy's numbers),
and from SciPy McNemar's exact test and a paired interval for two classifiers scored on the same images, a
t-interval over seeds, and Holm's correction when one is compared with many.

SciPy is imported when a function needs it (0.6 s), never by a run's accuracy intervals nor by the command
line's parser.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

CONFIDENCE = 0.95


def wilson_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval of an accuracy of ``correct`` out of ``total``, as fractions.

    Its closed form (Wilson 1927) with the normal quantile from the standard library: the numbers of
    SciPy's ``binomtest(correct, total).proportion_ci(method="wilson")`` (a test holds them equal to
    1e-12), without importing ``scipy.stats``, which took 0.6 s of a 10 s default run.

    Args:
        correct: the images classified right.
        total: the images scored.
        confidence: the interval's confidence level, between 0 and 1 (0.95 by default).

    Returns:
        ``(low, high)``, fractions; (nan, nan) for no images.

    Raises:
        ValueError: ``correct`` is not between 0 and ``total``, or ``confidence`` not between 0 and 1.
    """
    if total <= 0:
        return (math.nan, math.nan)
    correct, total = int(correct), int(total)
    if not 0 <= correct <= total:
        raise ValueError(f"correct must be between 0 and total ({total}), got {correct}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, shrink = correct / total, 1 + z * z / total
    centre = (p + z * z / (2 * total)) / shrink
    half = z / shrink * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (0.0 if correct == 0 else centre - half, 1.0 if correct == total else centre + half)


def accuracy_interval(accuracy: float, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson interval of an ``accuracy`` (a fraction) measured on ``total`` images."""
    return wilson_interval(round(accuracy * total), total, confidence)


def percent_range(low: float, high: float, digits: int = 1, unit: str = "%") -> str:
    """``90.1-91.3%``; ``-0.3 to 0.5`` when a bound is negative (a difference), so no sign reads as a dash."""
    if low < 0 or high < 0:
        return f"{100 * low:.{digits}f} to {100 * high:.{digits}f}{unit}"
    return f"{100 * low:.{digits}f}-{100 * high:.{digits}f}{unit}"


def accuracy_with_interval(accuracy: float, total: int | None, digits: int = 1) -> str:
    """``90.7% (95% CI 90.1-91.3%)``; just ``90.7%`` when the number of images is not known."""
    text = f"{100 * accuracy:.{digits}f}%"
    if not total:
        return text
    return f"{text} (95% CI {percent_range(*accuracy_interval(accuracy, total), digits=digits)})"


@dataclass(frozen=True)
class McNemar:
    """Two classifiers on the same images: the images only one of them got right, McNemar's exact test on
    them, and the difference of accuracy (second minus first) with its interval."""

    total: int  # images scored by both
    first_only: int  # right by the first, wrong by the second
    second_only: int  # right by the second, wrong by the first
    p_value: float  # two-sided exact binomial test of second_only among the discordant images, p = 1/2
    difference: float  # accuracy of the second minus the first, a fraction
    low: float  # its interval
    high: float

    @property
    def discordant(self) -> int:
        return self.first_only + self.second_only


def mcnemar(first_correct: Sequence[bool], second_correct: Sequence[bool], confidence: float = CONFIDENCE) -> McNemar:
    """McNemar's exact test of two classifiers scored on the same images, and the paired difference of accuracy.

    The test (Dietterich 1998) is computed from which images each got right. The p-value is SciPy's
    two-sided ``binomtest(second_only, discordant, 0.5)``. The interval of the difference (second minus
    first) is Newcombe's score interval for paired proportions (Newcombe 1998, his method 10): the two
    accuracies' Wilson intervals, combined with the correlation of the two classifiers' results. It need
    not agree with the test exactly at the boundary: the verdict follows the test.

    Args:
        first_correct: which images the first classifier got right, one bool an image.
        second_correct: which images the second got right, in the same order.
        confidence: the confidence level of the difference's interval (0.95 by default).

    Returns:
        The images only one of them got right, the test's p-value, and the difference of accuracy (second minus
        first) with its interval.

    Raises:
        ValueError: the two are not results on the same images (different lengths), or there are no images.
    """
    import numpy as np

    first, second = np.asarray(first_correct, dtype=bool), np.asarray(second_correct, dtype=bool)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(f"two classifiers' results on the same images, got shapes {first.shape} and {second.shape}")
    total = int(first.size)
    if total == 0:
        raise ValueError("no images to compare on")
    both = int(np.sum(first & second))
    first_only, second_only = int(np.sum(first & ~second)), int(np.sum(second & ~first))
    neither = total - both - first_only - second_only
    if first_only + second_only == 0:
        p_value = 1.0
    else:
        from scipy.stats import binomtest

        p_value = float(binomtest(second_only, first_only + second_only, 0.5).pvalue)
    low, high = paired_difference_interval(both, first_only, second_only, neither, confidence)
    return McNemar(total, first_only, second_only, p_value, (second_only - first_only) / total, low, high)


def paired_difference_interval(
    both: int, first_only: int, second_only: int, neither: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Newcombe's (1998) method-10 interval of ``second accuracy - first accuracy`` from the 2 x 2 table of
    paired results: right by both, by the first only, by the second only, by neither."""
    n = both + first_only + second_only + neither
    p1, p2 = (both + first_only) / n, (both + second_only) / n
    l1, u1 = wilson_interval(both + first_only, n, confidence)
    l2, u2 = wilson_interval(both + second_only, n, confidence)
    margins = (both + first_only) * (second_only + neither) * (both + second_only) * (first_only + neither)
    # their correlation, a positive one shrunk by n/2 as Newcombe does (Altman et al., Statistics with Confidence)
    association: float = both * neither - first_only * second_only
    association = max(association - n / 2, 0.0) if association > 0 else association
    phi = association / math.sqrt(margins) if margins else 0.0
    difference = p2 - p1
    below = (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2
    above = (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2
    return (max(-1.0, difference - math.sqrt(max(below, 0.0))), min(1.0, difference + math.sqrt(max(above, 0.0))))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (in their order): reject where the adjusted p < alpha,
    and the chance of any false rejection stays below alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class MeanInterval:
    """The mean of a few numbers (one per seed), their standard deviation and Student's t-interval of the mean."""

    n: int
    mean: float
    sd: float | None  # None for a single value
    low: float | None
    high: float | None

    def as_dict(self) -> dict:
        interval = [self.low, self.high] if self.sd is not None else None
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "ci95": interval}


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanInterval:
    """Mean, sample standard deviation (n - 1) and the t-interval ``mean +- t(n - 1) sd / sqrt(n)``.

    Args:
        values: the numbers, e.g. one accuracy a seed.
        confidence: the interval's confidence level (0.95 by default).

    Returns:
        Their count, mean, standard deviation and interval; for a single value, the standard deviation and the
        interval are None.

    Raises:
        ValueError: no values.
    """
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n
    if n == 1:
        return MeanInterval(1, mean, None, None, None)
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return MeanInterval(n, mean, sd, mean - half, mean + half)


def p_text(p: float) -> str:
    """A p-value as people write it: ``p = 0.004``, ``p = 0.31``, ``p < 0.0001``."""
    if p < 1e-4:
        return "p < 0.0001"
    if p >= 0.1:
        return f"p = {p:.2f}"
    text = f"{p:.2g}"
    return f"p = {p:.3g}" if text == "0.05" else f"p = {text}"  # 0.0496 is not 0.05

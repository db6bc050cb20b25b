"""Accuracy per class, with its 95% Wilson interval, from a confusion matrix, and the table a run prints of
it. With 1,000 test images a class, 90% carries about +-1.9 points and 70% about +-2.8: a bare number hides
which differences between classes the test set can tell."""

from __future__ import annotations

import torch

from fmnist_ignite.analysis.statistics import wilson_interval
from fmnist_ignite.data.fashion_mnist import CLASS_NAMES


def per_class_accuracy(confusion: torch.Tensor) -> dict[str, float]:
    """Accuracy of each class, by class name.

    Args:
        confusion: 10 x 10 counts, rows the true classes, columns the predicted (the evaluator's
            ``confusion``); a class without images has accuracy 0.
    """
    confusion = confusion.double()
    correct, total = confusion.diagonal(), confusion.sum(dim=1).clamp(min=1)
    return {name: float(c / t) for name, c, t in zip(CLASS_NAMES, correct, total, strict=False)}


def per_class_counts(confusion: torch.Tensor) -> dict[str, tuple[int, int]]:
    """Each class's images predicted right and its images, by class name.

    Args:
        confusion: 10 x 10 counts, rows the true classes, columns the predicted.
    """
    confusion = confusion.long()
    rows = zip(CLASS_NAMES, confusion.diagonal().tolist(), confusion.sum(dim=1).tolist(), strict=False)
    return {name: (int(right), int(total)) for name, right, total in rows}


def per_class_intervals(confusion: torch.Tensor) -> dict[str, list[float] | None]:
    """Each class's 95% Wilson interval of its accuracy, by class name (None for a class without images).

    Args:
        confusion: 10 x 10 counts, rows the true classes, columns the predicted.
    """
    return {
        name: list(wilson_interval(right, total)) if total else None
        for name, (right, total) in per_class_counts(confusion).items()
    }


def per_class_table(accuracies: dict[str, float], counts: dict[str, tuple[int, int]] | None = None) -> str:
    """The per-class accuracies as lines, worst class first; with ``counts`` (``per_class_counts``), each
    with its 95% Wilson interval and its images.

    Args:
        accuracies: each class's accuracy, by class name.
        counts: each class's images predicted right and its images, by class name.
    """
    lines = ["Per-class test accuracy (worst first" + (", 95% Wilson interval):" if counts else "):")]
    for name, accuracy in sorted(accuracies.items(), key=lambda item: item[1]):
        line = f"  {name:<12} {100 * accuracy:5.1f}%"
        if counts and counts.get(name, (0, 0))[1]:
            right, total = counts[name]
            low, high = wilson_interval(right, total)
            line += f"  ({100 * low:.1f}-{100 * high:.1f}%, {total:,} images)"
        lines.append(line)
    return "\n".join(lines)

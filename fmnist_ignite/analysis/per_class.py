"""Accuracy per class, from a confusion matrix, and the table a run prints of it."""

from __future__ import annotations

import torch

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


def per_class_table(accuracies: dict[str, float]) -> str:
    """The per-class accuracies as lines, worst class first."""
    lines = ["Per-class test accuracy (worst first):"]
    for name, accuracy in sorted(accuracies.items(), key=lambda item: item[1]):
        lines.append(f"  {name:<12} {100 * accuracy:5.1f}%")
    return "\n".join(lines)

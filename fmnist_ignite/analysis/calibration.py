"""Whether a model's confidence can be believed: the expected calibration error (ECE), the Brier score, the
reliability diagram's bins, and temperature scaling (Guo et al. 2017) fitted on the validation split.

The ECE is the top-label one with ``BINS`` equal-width bins: the images are binned by the probability of
the class predicted, and the ECE is the mean over bins, weighted by their share of the images, of
``|accuracy - mean confidence|``. The binning is torchmetrics' (``MulticlassCalibrationError(n_bins=15,
norm="l1")``; a test holds the two equal to 1e-6): bins ``[i/15, (i+1)/15)``, a confidence of exactly 1 in
a bin of its own. The Brier score is the mean over images of the squared distance between the probability
vector and the one-hot label (0 is perfect, 2 the worst). Both take probabilities (N x 10) and class
indices; NumPy arrays, as the kept predictions are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fmnist_ignite.files.calibration import TEMPERATURES
from fmnist_ignite.files.durable import write_figure
from fmnist_ignite.ui.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BINS = 15


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram.

    Attributes:
        low: the bin's lowest confidence.
        high: the bin's highest (excluded but for the last).
        count: the images whose confidence falls in it.
        confidence: their mean confidence (nan for an empty bin).
        accuracy: the fraction of them predicted right (nan for an empty bin).
    """

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def _top_label(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ValueError(f"probabilities N x classes and N labels, got {probabilities.shape} and {labels.shape}")
    return probabilities.max(axis=1), (probabilities.argmax(axis=1) == labels).astype(np.float64)


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[ReliabilityBin]:
    """The bins of the reliability diagram (and of the ECE), the last one a confidence of exactly 1.

    Args:
        probabilities: each image's class probabilities (N x 10, rows summing to 1).
        labels: the true classes (N).
        bins: the equal-width bins over [0, 1].

    Returns:
        ``bins + 1`` bins: ``[i/bins, (i+1)/bins)`` for each i, then the confidences of exactly 1.
    """
    confidence, correct = _top_label(probabilities, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges, confidence, side="right") - 1  # torch.bucketize(right=True) - 1
    found = []
    for i in range(bins + 1):
        inside = index == i
        count = int(inside.sum())
        found.append(
            ReliabilityBin(
                float(edges[i]),
                float(edges[i + 1]) if i < bins else 1.0,
                count,
                float(confidence[inside].mean()) if count else math.nan,
                float(correct[inside].mean()) if count else math.nan,
            )
        )
    return found


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """The top-label ECE: the images' share of each bin times its ``|accuracy - confidence|``, summed.

    Args:
        probabilities: each image's class probabilities (N x 10).
        labels: the true classes (N).
        bins: the equal-width bins over [0, 1].

    Returns:
        A fraction in [0, 1]; nan for no images.
    """
    found = reliability_bins(probabilities, labels, bins)
    total = sum(b.count for b in found)
    if total == 0:
        return math.nan
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in found if b.count))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The mean over images of the squared distance from the probabilities to the one-hot label.

    Args:
        probabilities: each image's class probabilities (N x 10).
        labels: the true classes (N).

    Returns:
        A number in [0, 2] (0: every image's true class given probability 1); nan for no images.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if len(probabilities) == 0:
        return math.nan
    onehot = np.eye(probabilities.shape[1])[np.asarray(labels).astype(np.int64)]
    return float(((probabilities - onehot) ** 2).sum(axis=1).mean())


def _log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Log-probabilities, the logits up to a per-row constant (which the softmax ignores)."""
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-45, None))


def scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities the logits divided by ``temperature`` give (``softmax(log p / T)``).

    Args:
        probabilities: each image's class probabilities (N x 10), as the model gave them.
        temperature: above 1 softens them, below 1 sharpens them; 1 leaves them.

    Returns:
        The scaled probabilities, float64.
    """
    z = _log_probabilities(probabilities) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` (Guo et al. 2017); fit it on
    the validation split, never the test.

    The likelihood is convex in the inverse temperature (a log-sum-exp of linear functions less a linear
    one), so torch's L-BFGS with a strong-Wolfe line search finds its one minimum in a few steps, in float64,
    and the minimum within ``files.calibration.TEMPERATURES`` is that one clamped to the range. torch, not
    SciPy: ``scipy.optimize``'s import alone takes longer than the fit.

    Args:
        probabilities: the model's class probabilities on the validation images (N x 10).
        labels: their true classes (N).

    Returns:
        The temperature, within ``files.calibration.TEMPERATURES``; 1.0 for no images.
    """
    import torch

    if len(labels) == 0:
        return 1.0
    z = torch.from_numpy(_log_probabilities(probabilities))
    y = torch.from_numpy(np.asarray(labels).astype(np.int64))
    inverse = torch.ones((), dtype=torch.float64, requires_grad=True)
    solver = torch.optim.LBFGS(
        [inverse], lr=1.0, max_iter=100, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def nll() -> torch.Tensor:
        solver.zero_grad()
        loss = torch.nn.functional.cross_entropy(z * inverse, y)
        loss.backward()
        return loss

    with torch.enable_grad():
        solver.step(nll)
    low, high = TEMPERATURES
    found = inverse.item()
    return high if found <= 1 / high else min(max(1 / found, low), high)


def calibration_report(probabilities: np.ndarray, labels: np.ndarray, temperature: float | None) -> dict:
    """``summary.json``'s calibration block of one split: the ECE and Brier score as the model gave its
    probabilities and, with a ``temperature``, after scaling by it.

    Args:
        probabilities: the model's class probabilities (N x 10).
        labels: the true classes (N).
        temperature: the fitted temperature, or None.

    Returns:
        ``{"ece": ..., "brier": ...}``, with ``ece_calibrated`` and ``brier_calibrated`` given a temperature.
    """
    report = {"ece": expected_calibration_error(probabilities, labels), "brier": brier_score(probabilities, labels)}
    if temperature is not None:
        calibrated = scaled(probabilities, temperature)
        report["ece_calibrated"] = expected_calibration_error(calibrated, labels)
        report["brier_calibrated"] = brier_score(calibrated, labels)
    return report


def calibration_line(split: str, report: dict, temperature: float | None) -> str:
    """``Calibration (test): ECE 3.1%, Brier 0.158; at temperature 1.42 (fitted on validation): ECE 0.9%, ...``."""
    line = f"Calibration ({split}): ECE {report['ece']:.2%}, Brier {report['brier']:.4f}"
    if temperature is not None and "ece_calibrated" in report:
        line += (
            f"; at temperature {temperature:.3g} (fitted on validation): ECE {report['ece_calibrated']:.2%}, "
            f"Brier {report['brier_calibrated']:.4f}"
        )
    return line


def plot_reliability(
    probabilities: np.ndarray,
    labels: np.ndarray,
    temperature: float | None = None,
    path: str | Path | None = None,
    title: str = "Reliability on the test set",
) -> Figure | None:
    """The reliability diagram (``reliability.png``): for each confidence bin, the accuracy of its images
    against their mean confidence (a calibrated model's points lie on the diagonal), with the share of the
    images in each bin below; the scaled probabilities beside the model's own, given a ``temperature``.

    Args:
        probabilities: each image's class probabilities (N x 10).
        labels: the true classes (N).
        temperature: the fitted temperature; None: the model's probabilities only.
        path: where to save the figure, durably; None: not saved.
        title: the figure's title.

    Returns:
        The figure, saved to ``path`` when given; None without matplotlib.
    """
    fig = new_figure(figsize=(6, 6.5), dpi=100)
    if fig is None:
        return None
    curve, share = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    curve.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="calibrated")
    kinds = [("model's probabilities", probabilities, "tab:blue")]
    if temperature is not None:
        kinds.append((f"at temperature {temperature:.3g}", scaled(probabilities, temperature), "tab:orange"))
    width = 1 / BINS
    for n, (name, probs, color) in enumerate(kinds):
        found = [b for b in reliability_bins(probs, labels) if b.count]
        ece = expected_calibration_error(probs, labels)
        curve.plot(
            [b.confidence for b in found], [b.accuracy for b in found], marker="o", color=color,
            label=f"{name}: ECE {ece:.2%}",
        )  # fmt: skip
        share.bar(
            [b.low + width * (0.3 + 0.4 * n) for b in found], [b.count / len(labels) for b in found],
            width=width * 0.4, color=color,
        )  # fmt: skip
    curve.set(ylabel="accuracy", title=title, xlim=(0, 1), ylim=(0, 1))
    curve.legend(loc="upper left")
    curve.grid(alpha=0.3)
    share.set(xlabel="confidence (probability of the class predicted)", ylabel="share of images")
    share.grid(alpha=0.3)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.09, top=0.94, hspace=0.08)
    if path is not None:
        write_figure(fig, Path(path))
    return fig

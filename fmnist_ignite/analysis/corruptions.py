"""How a model holds up when the images are not clean: the test set under a fixed, seeded suite of
corruptions, in the spirit of MNIST-C (Mu & Gilmer 2019) and Fashion-MNIST-C (Weiss & Tonella 2022).

Ten corruptions, each at three severities, generated on the fly from the test images (no data set to
download): Gaussian and shot noise, Gaussian and motion blur, shifts, rotations, scaling, lower contrast,
higher brightness and inversion. Torchvision's transforms do the blur and the contrast; the geometric ones
are one affine warp per image (``torch.nn.functional.affine_grid``), so each image gets its own direction.
Every random draw comes from a generator seeded by the seed, the corruption and the severity: the same
checkpoint and seed give the same numbers. A corrupted image is rounded back to 8 bits, as a photo would be.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fmnist_ignite.analysis.statistics import wilson_interval
from fmnist_ignite.files.durable import write_durably, write_figure
from fmnist_ignite.ui.figures import new_figure
from fmnist_ignite.ui.html import table_html, text_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CORRUPTIONS_FILE = "corruptions.json"
SEVERITIES = (1, 2, 3)
Corrupt = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]  # float N x 1 x 28 x 28 in [0, 1]


def _warp(images: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image rotated by its ``angle`` (degrees), scaled by its ``scale`` and shifted by its ``shift``
    (pixels, x and y), the space it leaves black."""
    theta = torch.deg2rad(angle)
    cos, sin = torch.cos(theta) / scale, torch.sin(theta) / scale
    matrix = torch.zeros(len(images), 2, 3)
    matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 1, 0], matrix[:, 1, 1] = cos, -sin, sin, cos
    matrix[:, :, 2] = -shift * 2 / images.shape[-1]  # affine_grid's units: half the image per 1
    grid = torch.nn.functional.affine_grid(matrix, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _signs(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1


def _gaussian_noise(x: torch.Tensor, sd: float, g: torch.Generator) -> torch.Tensor:
    return x + sd * torch.randn(x.shape, generator=g)


def _shot_noise(x: torch.Tensor, photons: float, g: torch.Generator) -> torch.Tensor:
    return torch.poisson(x * photons, generator=g) / photons


def _gaussian_blur(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    from torchvision.transforms.v2.functional import gaussian_blur

    size = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x, [size, size], [sigma, sigma])


def _motion_blur(x: torch.Tensor, length: float, g: torch.Generator) -> torch.Tensor:
    """A horizontal smear over ``length`` pixels (a camera moving sideways)."""
    n = int(length)
    kernel = torch.full((1, 1, 1, n), 1.0 / n)
    return torch.nn.functional.conv2d(x, kernel, padding=(0, n // 2))


def _shift(x: torch.Tensor, pixels: float, g: torch.Generator) -> torch.Tensor:
    direction = torch.rand(len(x), generator=g) * 2 * math.pi
    shift = torch.stack([torch.cos(direction), torch.sin(direction)], dim=1) * pixels
    return _warp(x, torch.zeros(len(x)), torch.ones(len(x)), shift)


def _rotation(x: torch.Tensor, degrees: float, g: torch.Generator) -> torch.Tensor:
    return _warp(x, _signs(len(x), g) * degrees, torch.ones(len(x)), torch.zeros(len(x), 2))


def _scale(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
    return _warp(x, torch.zeros(len(x)), torch.full((len(x),), factor), torch.zeros(len(x), 2))


def _contrast(x: torch.Tensor, factor: float, g: torch.Generator) -> torch.Tensor:
    from torchvision.transforms.v2.functional import adjust_contrast

    return adjust_contrast(x, factor)


def _brightness(x: torch.Tensor, added: float, g: torch.Generator) -> torch.Tensor:
    return x + added


def _inversion(x: torch.Tensor, share: float, g: torch.Generator) -> torch.Tensor:
    """Part way (or all the way) to the negative: a garment dark on a light background."""
    return (1 - share) * x + share * (1 - x)


# name: (what it does, the corruption, its parameter at severities 1, 2 and 3)
CORRUPTIONS: dict[str, tuple[str, Corrupt, tuple[float, float, float]]] = {
    "gaussian_noise": ("Gaussian noise, sd of the 0-1 intensity", _gaussian_noise, (0.08, 0.16, 0.28)),
    "shot_noise": ("Poisson noise, photons at full intensity", _shot_noise, (60.0, 25.0, 10.0)),
    "gaussian_blur": ("Gaussian blur, sigma in pixels", _gaussian_blur, (0.6, 1.0, 1.5)),
    "motion_blur": ("horizontal motion blur, pixels", _motion_blur, (3.0, 5.0, 7.0)),
    "shift": ("shift in a random direction, pixels", _shift, (2.0, 4.0, 6.0)),
    "rotation": ("rotation either way, degrees", _rotation, (10.0, 20.0, 30.0)),
    "scale": ("zoomed out, scale factor", _scale, (0.85, 0.7, 0.55)),
    "contrast": ("lower contrast, factor", _contrast, (0.6, 0.4, 0.2)),
    "brightness": ("brighter, intensity added", _brightness, (0.2, 0.35, 0.5)),
    "inversion": ("towards the negative, share", _inversion, (0.3, 0.6, 1.0)),
}


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """The uint8 images under one corruption at one severity, deterministic for a seed.

    Args:
        images: uint8 N x 28 x 28 pixels.
        name: a key of ``CORRUPTIONS``.
        severity: 1, 2 or 3.
        seed: the seed of the corruption's random draws (with the corruption and the severity).

    Returns:
        uint8 N x 28 x 28 pixels.
    """
    _, function, levels = CORRUPTIONS[name]
    g = torch.Generator().manual_seed(seed * 1009 + list(CORRUPTIONS).index(name) * 10 + severity)
    x = images.float().div(255).unsqueeze(1)
    corrupted = function(x, levels[severity - 1], g)
    return corrupted.clamp(0, 1).mul(255).round().to(torch.uint8).squeeze(1)


@dataclass
class CorruptionScore:
    """The accuracy under one corruption at one severity.

    Attributes:
        corruption: its name (a key of ``CORRUPTIONS``).
        severity: 1, 2 or 3.
        parameter: the corruption's parameter at that severity.
        correct: the images still predicted right.
        total: the images.
        accuracy: ``correct / total``.
        ci95: its 95% Wilson interval.
    """

    corruption: str
    severity: int
    parameter: float
    correct: int
    total: int
    accuracy: float
    ci95: tuple[float, float]


@dataclass
class CorruptionResults:
    """A model's accuracy on the clean test set and under each corruption and severity.

    Attributes:
        clean: the accuracy on the clean images, with its interval (a ``CorruptionScore`` named "clean").
        scores: one per corruption and severity.
        seed: the seed of the corruptions' draws.
        examples: one image per corruption (at severity 2) and the clean one, for the figure.
    """

    clean: CorruptionScore
    scores: list[CorruptionScore]
    seed: int
    examples: dict[str, torch.Tensor]

    @property
    def mean_accuracy(self) -> float:
        """The mean corruption accuracy: over every corruption and severity, each counted once."""
        return sum(s.accuracy for s in self.scores) / len(self.scores)

    def rows(self) -> list[list[str]]:
        """A row per corruption: its accuracy (and interval) at each severity."""
        by_name: dict[str, list[CorruptionScore]] = {}
        for score in self.scores:
            by_name.setdefault(score.corruption, []).append(score)
        rows = [["corruption", *(f"severity {s}" for s in SEVERITIES)]]
        for name, scores in by_name.items():
            rows.append(
                [name, *(f"{100 * s.accuracy:.1f}% ({100 * s.ci95[0]:.1f}-{100 * s.ci95[1]:.1f})" for s in scores)]
            )
        return rows

    def headline(self) -> str:
        return (
            f"Clean test accuracy {self.clean.accuracy:.2%}; mean corruption accuracy {self.mean_accuracy:.2%} "
            f"over {len(CORRUPTIONS)} corruptions x {len(SEVERITIES)} severities (seed {self.seed})"
        )

    def text(self) -> str:
        """The table as a terminal shows it."""
        return text_table(self.rows(), self.headline())

    def __repr__(self) -> str:
        return f"CorruptionResults(clean {self.clean.accuracy:.2%}, mean corruption accuracy {self.mean_accuracy:.2%})"

    def _repr_html_(self) -> str:
        return f"<div>{table_html(self.rows(), self.headline())}</div>"

    def to_dict(self) -> dict:
        """What ``corruptions.json`` holds."""
        return {
            "seed": self.seed,
            "clean": {"accuracy": self.clean.accuracy, "ci95": list(self.clean.ci95), "count": self.clean.total},
            "mean_corruption_accuracy": self.mean_accuracy,
            "corruptions": [
                {
                    "corruption": s.corruption,
                    "what": CORRUPTIONS[s.corruption][0],
                    "severity": s.severity,
                    "parameter": s.parameter,
                    "accuracy": s.accuracy,
                    "ci95": list(s.ci95),
                    "count": s.total,
                }
                for s in self.scores
            ],
        }

    def write(self, path: str | Path) -> None:
        """``corruptions.json``, durably."""
        write_durably(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    def plot_examples(self, path: str | Path | None = None) -> Figure | None:
        """One test image under each corruption (severity 2), the clean one first: a figure, saved to
        ``path`` when given (None without matplotlib)."""
        fig = new_figure(figsize=(11, 2.6), dpi=100)
        if fig is None:
            return None
        for n, (name, image) in enumerate(self.examples.items()):
            ax = fig.add_subplot(1, len(self.examples), n + 1)
            ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_title(name.replace("_", "\n"), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.8, wspace=0.1)
        if path is not None:
            write_figure(fig, Path(path))
        return fig


def score(predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor, name: str,
          severity: int, parameter: float) -> CorruptionScore:  # fmt: skip
    """The accuracy of ``predict`` (uint8 images to predicted classes) on ``images``, with its interval."""
    correct = int((predict(images) == labels).sum())
    return CorruptionScore(name, severity, parameter, correct, len(labels), correct / len(labels),
                           wilson_interval(correct, len(labels)))  # fmt: skip


def corruption_scores(
    predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor, seed: int = 0
) -> CorruptionResults:
    """Score a classifier on the clean images and under every corruption and severity.

    Args:
        predict: uint8 N x 28 x 28 images to their predicted classes (N).
        images: the test images, uint8 N x 28 x 28.
        labels: their true classes.
        seed: the seed of the corruptions' draws.

    Returns:
        The accuracies, their intervals and an example image of each corruption.
    """
    clean = score(predict, images, labels, "clean", 0, 0.0)
    scores, examples = [], {"clean": images[0].clone()}
    for name, (_, _, levels) in CORRUPTIONS.items():
        for severity in SEVERITIES:
            corrupted = corrupt(images, name, severity, seed)
            scores.append(score(predict, corrupted, labels, name, severity, levels[severity - 1]))
            if severity == 2:
                examples[name] = corrupted[0].clone()  # not a view keeping the whole corrupted set alive
    return CorruptionResults(clean, scores, seed, examples)

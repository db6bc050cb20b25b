"""Looking at a model's mistakes on the test split: the classes it confuses most, and the images it got
most confidently wrong (fastai's ``ClassificationInterpretation``, for this library's models).

``interpret(checkpoint)`` reads a saved model; a ``TrainResult`` has the same methods for the model it
holds (``result.most_confused(5)``, ``result.plot_top_losses(9)``), through ``ResultViews``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from fmnist_ignite.config.settings import EVAL_BATCH_SIZE
from fmnist_ignite.data.fashion_mnist import CLASS_NAMES, NUM_CLASSES, load_fashion_mnist
from fmnist_ignite.data.loaders import to_float_images
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_figure
from fmnist_ignite.ui.figures import new_figure
from fmnist_ignite.ui.html import ShownList, ShownResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class Confused(NamedTuple):
    """One cell of the confusion matrix off its diagonal: ``count`` test images of class ``true``
    predicted as ``predicted``."""

    true: str
    predicted: str
    count: int  # type: ignore[assignment]  # the field's name hides tuple.count, as it does at run time


class TopLoss(NamedTuple):
    """A test image the model got wrong: its index in the test split, its class, the class predicted,
    the probability the model gave that wrong class, and the loss (``-log p(true class)``)."""

    index: int  # type: ignore[assignment]  # the field's name hides tuple.index, as it does at run time
    true: str
    predicted: str
    probability: float
    loss: float


def most_confused(confusion: torch.Tensor, k: int = 5, min_count: int = 1) -> ShownList[Confused]:
    """The ``k`` class pairs most often confused (true class, predicted class, count), most first.

    Ties are in the order of the classes.

    Args:
        confusion: counts, rows the true classes, columns the predicted.
        k: how many pairs at most.
        min_count: leave out pairs confused fewer times than this (at least once, whatever it says).
    """
    counts = confusion.long().cpu()
    cells = [
        (int(counts[i, j]), i, j)
        for i in range(counts.shape[0])
        for j in range(counts.shape[1])
        if i != j and int(counts[i, j]) >= max(min_count, 1)
    ]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    pairs = [Confused(CLASS_NAMES[i], CLASS_NAMES[j], count) for count, i, j in cells[:k]]
    return ShownList(pairs, "Class pairs most often confused", {"true": "{}", "predicted": "{}", "count": "{:d}"})


@dataclass
class Interpretation:
    """A model's class probabilities on a set of images (the test split), and what follows from them.

    Attributes:
        images: the images, uint8 N x 28 x 28.
        labels: their true classes, int64 N.
        probabilities: the model's, float N x 10, each row summing to 1.
    """

    images: torch.Tensor  # uint8 N x 28 x 28
    labels: torch.Tensor  # int64 N
    probabilities: torch.Tensor  # float N x 10, each row summing to 1

    @classmethod
    def from_model(
        cls, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE
    ) -> Interpretation:
        """Run ``model`` (in fp32, in eval mode, put back as it was) over uint8 ``images``."""
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        parts = []
        try:
            with torch.no_grad():
                for start in range(0, len(images), batch_size):
                    batch = to_float_images(images[start : start + batch_size]).to(device)
                    parts.append(model(batch).float().softmax(dim=1).cpu())
        finally:
            model.train(was_training)
        probabilities = torch.cat(parts) if parts else torch.empty(0, NUM_CLASSES)
        return cls(images.cpu(), labels.cpu().long(), probabilities)

    def __repr__(self) -> str:
        return f"Interpretation({len(self.labels)} images, accuracy {self.accuracy:.2%})"

    def _repr_html_(self) -> str:
        """In a notebook: the accuracy, the pairs most confused, and the methods that look further."""
        mistakes = int((self.predictions != self.labels).sum())
        head = f"<b>Interpretation</b>: {len(self.labels)} images, accuracy {self.accuracy:.2%}, {mistakes} mistakes"
        methods = "most_confused(k), top_losses(k), plot_top_losses(k), plot_confusion()"
        return f"<div>{head}{self.most_confused(5)._repr_html_()}<small>{methods}</small></div>"

    @property
    def predictions(self) -> torch.Tensor:
        return self.probabilities.argmax(dim=1)

    @property
    def losses(self) -> torch.Tensor:
        """Each image's cross-entropy loss: ``-log`` of the probability given to its true class."""
        true = self.probabilities.gather(1, self.labels.unsqueeze(1)).squeeze(1)
        return -true.clamp(min=1e-45).log()

    @property
    def confusion(self) -> torch.Tensor:
        """10 x 10 counts, rows the true classes, columns the predicted ones."""
        cells = self.labels * NUM_CLASSES + self.predictions
        return torch.bincount(cells, minlength=NUM_CLASSES * NUM_CLASSES).reshape(NUM_CLASSES, NUM_CLASSES)

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).float().mean()) if len(self.labels) else math.nan

    def most_confused(self, k: int = 5, min_count: int = 1) -> ShownList[Confused]:
        """The ``k`` (true, predicted, count) pairs most often confused."""
        return most_confused(self.confusion, k, min_count)

    def top_losses(self, k: int = 9) -> ShownList[TopLoss]:
        """The ``k`` images the model got most confidently wrong: misclassified, ordered by the probability
        it gave the wrong class (then by loss), highest first."""
        if k < 1:
            raise FmnistError(f"the number of images to show must be at least 1, got {k}")
        predicted = self.predictions
        confidence = self.probabilities.max(dim=1).values
        losses = self.losses
        wrong = (predicted != self.labels).nonzero().flatten().tolist()
        wrong.sort(key=lambda i: (-float(confidence[i]), -float(losses[i]), i))
        found = [
            TopLoss(
                i,
                CLASS_NAMES[int(self.labels[i])],
                CLASS_NAMES[int(predicted[i])],
                float(confidence[i]),
                float(losses[i]),
            )
            for i in wrong[:k]
        ]
        formats = {"index": "{:d}", "true": "{}", "predicted": "{}", "probability": "{:.1%}", "loss": "{:.3f}"}
        return ShownList(found, f"Most confidently wrong: {len(found)} of {len(wrong)} mistakes", formats)

    def plot_top_losses(self, k: int = 9, path: str | Path | None = None, columns: int | None = None) -> Figure | None:
        """A grid of the ``k`` most confidently wrong images, each titled with its true class, the class
        predicted and the probability given to it: the figure, saved to ``path`` when given (None
        without matplotlib)."""
        found = self.top_losses(k)
        columns = columns or max(1, math.ceil(math.sqrt(max(len(found), 1))))
        rows = max(1, math.ceil(len(found) / columns))
        fig = new_figure(figsize=(2.2 * columns, 2.7 * rows + 0.5), dpi=100, layout="constrained")
        if fig is None:
            return None
        mistakes = int((self.predictions != self.labels).sum())
        fig.suptitle(f"Most confidently wrong: {len(found)} of {mistakes} mistakes in {len(self.labels)} images")
        if not found:
            fig.text(0.5, 0.5, "no mistakes", ha="center", va="center")
        for n, mistake in enumerate(found):
            ax = fig.add_subplot(rows, columns, n + 1)
            ax.imshow(self.images[mistake.index].numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_title(
                f"true: {mistake.true}\npredicted: {mistake.predicted}\n{mistake.probability:.1%}", fontsize=8.5
            )
            ax.set_xticks([])
            ax.set_yticks([])
        if path is not None:
            write_figure(fig, Path(path))
        return fig

    def plot_confusion(self, path: str | Path | None = None, title: str = "Test set confusion matrix") -> Figure | None:
        """The confusion matrix as a figure, saved to ``path`` when given (None without matplotlib)."""
        from fmnist_ignite.ui.plots import plot_confusion

        return plot_confusion(self.confusion, path, title)


def interpret(
    checkpoint: str | Path,
    data_dir: str = "data",
    device: str = "auto",
    verify: bool = True,
    model: torch.nn.Module | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
) -> Interpretation:
    """The test-split ``Interpretation`` of a saved model, as ``evaluate_checkpoint`` finds the model and data.

    Args:
        checkpoint: a best-model file or a training checkpoint.
        data_dir: the data root the test set is found under.
        device: "auto" (the default), "cpu" or "cuda", as ``resolve_device`` takes it.
        verify: check the test files against the upstream ones.
        model: your own model, to load the weights into; None: a built-in model rebuilt from the weights.
        batch_size: the images scored in a batch.
    """
    from fmnist_ignite.analysis.inference import load_model
    from fmnist_ignite.config.settings import check_data_dir
    from fmnist_ignite.core.device import resolve_device

    check_data_dir(data_dir)
    resolved = resolve_device(device)
    loaded = load_model(checkpoint, resolved, model)
    images, labels = load_fashion_mnist(data_dir, verify=verify)["test"]
    return Interpretation.from_model(loaded, images, labels, batch_size)


class ResultViews(ShownResult):
    """What a ``TrainResult`` shows: an HTML summary in a notebook, its curves and confusion matrix as
    figures, and its model's mistakes on the test split."""

    # What it reads of the class it is mixed into beyond what ``result_html`` reads: ``TrainResult``'s fields.
    confusion: torch.Tensor | None
    model: torch.nn.Module | None

    def _repr_html_(self) -> str:
        from fmnist_ignite.ui.html import result_html

        return result_html(self)

    def plot_curves(self, path: str | Path | None = None) -> Figure | None:
        """Loss and validation accuracy per epoch: a matplotlib figure (saved to ``path`` when given)."""
        from fmnist_ignite.ui.plots import plot_curves

        return plot_curves(self.history, path)

    def _test_confusion(self) -> torch.Tensor:
        if self.confusion is None:
            raise FmnistError("this run did not score the test split (score_test=False): there is no confusion matrix")
        return self.confusion

    def plot_confusion(self, path: str | Path | None = None) -> Figure | None:
        """The test-set confusion matrix: a matplotlib figure (saved to ``path`` when given)."""
        from fmnist_ignite.ui.plots import plot_confusion

        return plot_confusion(self._test_confusion(), path)

    def plot_reliability(self, path: str | Path | None = None) -> Figure | None:
        """The reliability diagram of the test split (``reliability.png``) from the run's kept predictions,
        with the probabilities scaled by the temperature it fitted on validation beside them."""
        from fmnist_ignite.analysis.calibration import plot_reliability
        from fmnist_ignite.analysis.predictions import load_predictions

        kept = load_predictions(self.output_dir)
        if "probabilities" not in kept:
            raise FmnistError(f"{self.output_dir}: the kept test predictions hold no probabilities")
        from fmnist_ignite.files.summary import SUMMARY_FILE, read_summary

        summary = read_summary(self.output_dir / SUMMARY_FILE)
        temperature = ((summary.calibration if summary else None) or {}).get("temperature")  # the scored weights'
        return plot_reliability(kept["probabilities"], kept["labels"], temperature, path)

    def most_confused(self, k: int = 5, min_count: int = 1) -> ShownList[Confused]:
        """The ``k`` class pairs the scored weights confused most on the test split: (true, predicted, count)."""
        return most_confused(self._test_confusion(), k, min_count)

    def interpretation(self) -> Interpretation:
        """The model's probabilities on the test split (computed once, then kept)."""
        cached = getattr(self, "_interpretation", None)
        if cached is None:
            if self.model is None or self.config is None:
                raise FmnistError("this result holds no model and configuration to look at the test images with")
            if not self.config.score_test:
                raise FmnistError("this run kept the test split out (score_test=False): its images are not looked at")
            config = self.config
            images, labels = load_fashion_mnist(
                config.data_dir, config.verify_data, config.allow_download, config.system_data_dir
            )["test"]
            cached = self._interpretation = Interpretation.from_model(
                self.model, images, labels, config.eval_batch_size
            )
        return cached

    def top_losses(self, k: int = 9) -> ShownList[TopLoss]:
        """The ``k`` test images the model got most confidently wrong."""
        return self.interpretation().top_losses(k)

    def plot_top_losses(self, k: int = 9, path: str | Path | None = None) -> Figure | None:
        """A grid of the ``k`` test images the model got most confidently wrong: a matplotlib figure."""
        return self.interpretation().plot_top_losses(k, path)

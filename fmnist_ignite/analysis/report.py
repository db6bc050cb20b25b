"""A run's report page, ``report.html``: every result of one run in one self-contained file, written at the
end of each run (rank 0) and by ``fmnist-ignite report RUN`` for a run of any age.

Everything on it is read back from the run directory as the untrusted input it is (bounded reads, no link
followed, every value checked; what cannot be read is listed on the page in one line each), so the page of a
finished run, a killed one and a damaged one come from the same code. Figures come from the PNG files the
run drew when it finished, else are drawn here from its summary and kept predictions (with matplotlib; without
it the page says what to install). The top losses are the test images themselves: from the run's own loader
at its end, else from the data set, used only when its fingerprint is the one the run scored.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from fmnist_ignite import __version__
from fmnist_ignite.analysis.report_data import checked_corruptions, scored_test_images, settings_rows
from fmnist_ignite.data.fashion_mnist import CLASS_NAMES
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.predictions import PREDICTIONS_FILE, read_predictions
from fmnist_ignite.files.reading import Shape, read_bounded
from fmnist_ignite.files.runstate import CONFIG_FILE, one_line, read_run_state
from fmnist_ignite.files.saved_config import saved_config
from fmnist_ignite.files.summary import SUMMARY_FILE
from fmnist_ignite.ui.pages import data_uri, gray_png, is_png
from fmnist_ignite.ui.report_page import PLOT_EXTRA, ReportView, TopLossView, report_html

if TYPE_CHECKING:
    import torch

    from fmnist_ignite.analysis.predictions import Loader

logger = logging.getLogger(__name__)
REPORT_FILE = "report.html"
TOP_K = 16  # top losses shown
MAX_FIGURE_BYTES = 8 << 20  # a run's PNG: about 60 KB
FIGURE_FILES = {
    "curves": "curves.png",
    "confusion": "confusion.png",
    "reliability": "reliability.png",
    "corruptions": "corruptions.png",
}


def report(
    run_dir: str | Path, data_dir: str | None = None, output: str | Path | None = None, top_k: int = TOP_K
) -> Path:
    """Write the report page of a run: ``RUN_DIR/report.html``, one self-contained file to open in a browser.

    It shows the verdict (test accuracy with its 95% interval, ECE raw and calibrated, the epoch kept), the
    curves, the confusion matrix, the reliability diagram, the per-class table, the most confused pairs, the
    top losses as images, the corruption robustness (after ``evaluate --corruptions``), the settings (those
    that differ from the recipe's marked), the machine, the time and the resumes.

    Args:
        run_dir: the run directory.
        data_dir: where to find the test images for the top losses; None: where the run found them, then the
            system copy (never downloaded).
        output: the file to write; None: ``RUN_DIR/report.html``.
        top_k: the top losses shown.

    Returns:
        The page's path.

    Raises:
        FmnistError: ``run_dir`` is not a run directory (what it holds that is damaged is said on the page).
    """
    directory = Path(run_dir)
    if not directory.is_dir():
        raise FmnistError(f"{directory}: no such run directory")
    view = gather(directory, None, data_dir, top_k, draw=True)
    path = Path(output) if output is not None else directory / REPORT_FILE
    write_durably(path, report_html(view))
    return path


class FinishingRun(Protocol):
    """What ``report_at_finish`` uses of a ``Training`` at its end (``fmnist_ignite.run.training``)."""

    @property
    def rank(self) -> int: ...

    @property
    def output_dir(self) -> Path: ...

    @property
    def loaders(self) -> Mapping[str, Loader]: ...


def report_at_finish(training: FinishingRun) -> None:
    """The run's ``report.html``, written by rank 0 once its final summary is; the test images from its own
    loader. A page that cannot be written never fails the run: it says so in one line."""
    if training.rank != 0:
        return
    directory = training.output_dir
    try:
        from fmnist_ignite.analysis.predictions import split_tensors

        loader = training.loaders.get("test")
        images = split_tensors(loader) if loader is not None else None
        path = directory / REPORT_FILE
        write_durably(path, report_html(gather(directory, images, None, TOP_K, draw=False)))
    except Exception as exc:  # noqa: BLE001 (the run is done and recorded: its page is a convenience)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(str(exc))
        logger.warning(
            f"Report not written ({type(exc).__name__}: {reason}): fmnist-ignite report {directory} tries again"
        )
        return
    logger.info(f"Report: {path}")


def gather(
    directory: Path, images: tuple[torch.Tensor, torch.Tensor] | None, data_dir: str | None, top_k: int, draw: bool
) -> ReportView:
    """Everything the page shows, read and checked; ``draw``: draw the figures the run did not leave."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise FmnistError(f"{directory}: cannot list it ({exc.strerror})") from None
    if not {SUMMARY_FILE, CONFIG_FILE, PREDICTIONS_FILE} & set(names):
        raise FmnistError(f"{directory}: not a run directory (no {SUMMARY_FILE}, {CONFIG_FILE} or {PREDICTIONS_FILE})")
    state = read_run_state(directory, names)
    view = ReportView(name=directory.resolve().name or str(directory), state=state)
    if state.status == "damaged":
        view.problems.append(state.note)
    predictions = None
    if PREDICTIONS_FILE in names:
        try:
            predictions = read_predictions(directory / PREDICTIONS_FILE, "test")
        except FmnistError as exc:
            view.problems.append(one_line(str(exc)))
    figures(view, directory, names, predictions, draw)
    per_class(view, predictions)
    if predictions is not None:
        confusion = np.bincount(predictions["labels"] * 10 + predictions["predicted"], minlength=100).reshape(10, 10)
        view.confused = most_confused(confusion)
        top_losses(view, predictions, images, data_dir, top_k)
    corruptions = directory / "corruptions.json"
    if "corruptions.json" in names:
        try:
            view.corruptions = checked_corruptions(corruptions)
        except FmnistError as exc:
            view.problems.append(one_line(str(exc)))
    config = state.summary.config if state.summary is not None else None
    if config is None:
        try:
            config = saved_config(directory)
        except FmnistError as exc:
            view.problems.append(one_line(str(exc)))
    if config:
        view.settings, view.settings_basis = settings_rows(config)
    when = time.strftime("%Y-%m-%d %H:%M")
    view.footer = f"Written by fmnist-ignite {__version__} on {when} from the files in {directory}; self-contained."
    return view


def figures(view: ReportView, directory: Path, names: list[str], predictions: dict | None, draw: bool) -> None:
    """The run's own PNGs where it finished and left them (a link or a damaged file is said, then drawn
    again), else drawn here when asked (``draw``) and matplotlib is there."""
    summary = view.state.summary
    kept = summary is not None and summary.finished
    for kind, name in FIGURE_FILES.items():
        if name in names and (kept or kind == "corruptions"):  # an unfinished run's curves.png: an old one
            try:
                data = read_bounded(directory / name, MAX_FIGURE_BYTES, "a figure")
            except FmnistError as exc:
                view.problems.append(one_line(str(exc)))
                continue
            if data is not None and is_png(data):
                view.figures[kind] = data_uri(data)
            elif data is not None:
                view.problems.append(f"{directory / name}: not a PNG image; drawn again where it can be")
    plotting = importlib.util.find_spec("matplotlib") is not None
    wanted = [kind for kind in ("curves", "confusion", "reliability") if kind not in view.figures]
    if wanted and draw and plotting:
        drawn = draw_figures(wanted, view, predictions)
        view.figures.update({kind: data_uri(png) for kind, png in drawn.items()})
    elif wanted and not plotting:
        view.figures_note = f"The figures need matplotlib, the plot extra: {PLOT_EXTRA}; the tables are all here."
    elif wanted and summary is not None and summary.finished:
        view.figures_note = f"The run drew no figures (--no-plots): fmnist-ignite report {directory} draws them."


def draw_figures(wanted: list[str], view: ReportView, predictions: dict | None) -> dict[str, bytes]:
    import torch

    from fmnist_ignite.analysis.calibration import plot_reliability
    from fmnist_ignite.files.calibration import checked_temperature
    from fmnist_ignite.ui.figures import png_bytes
    from fmnist_ignite.ui.plots import plot_confusion, plot_curves

    summary, drawn = view.state.summary, {}
    if "curves" in wanted and summary is not None and summary.history:
        drawn["curves"] = plot_curves(summary.history)
    if predictions is not None and "confusion" in wanted:
        confusion = np.bincount(predictions["labels"] * 10 + predictions["predicted"], minlength=100).reshape(10, 10)
        drawn["confusion"] = plot_confusion(torch.from_numpy(confusion))
    if predictions is not None and "probabilities" in predictions and "reliability" in wanted:
        temperature = None
        kept = (summary.calibration or {}).get("temperature") if summary is not None else None
        if kept is not None:
            try:
                temperature = checked_temperature(kept, "summary.json: calibration")
            except FmnistError as exc:
                view.problems.append(one_line(str(exc)))
        drawn["reliability"] = plot_reliability(predictions["probabilities"], predictions["labels"], temperature)
    return {kind: png_bytes(fig) for kind, fig in drawn.items() if fig is not None}


def per_class(view: ReportView, predictions: dict | None) -> None:
    """Each class's test accuracy and interval: the summary's, checked, else counted from the predictions."""
    from fmnist_ignite.analysis.statistics import wilson_interval

    test = view.state.summary.test if view.state.summary is not None else None
    if test and test.get("per_class_accuracy"):
        view.per_class = dict(test["per_class_accuracy"])
        shape = Shape(f"{view.state.path / SUMMARY_FILE}")
        try:
            found = shape.mapping(test.get("per_class_ci95", {}), "test.per_class_ci95")
            view.per_class_ci = {k: shape.interval(v, f"test.per_class_ci95.{k}") for k, v in found.items()}
        except FmnistError as exc:
            view.problems.append(one_line(str(exc)))
    elif predictions is not None:
        labels, correct = predictions["labels"], predictions["predicted"] == predictions["labels"]
        for c, name in enumerate(CLASS_NAMES):
            total = int((labels == c).sum())
            if total:
                right = int(correct[labels == c].sum())
                view.per_class[name] = right / total
                view.per_class_ci[name] = list(wilson_interval(right, total))


def most_confused(confusion: np.ndarray, k: int = 5) -> list[tuple[str, str, int]]:
    cells = [(int(confusion[i, j]), i, j) for i in range(10) for j in range(10) if i != j and confusion[i, j]]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [(CLASS_NAMES[i], CLASS_NAMES[j], count) for count, i, j in cells[:k]]


def top_losses(
    view: ReportView,
    predictions: dict,
    images: tuple[torch.Tensor, torch.Tensor] | None,
    data_dir: str | None,
    top_k: int,
) -> None:
    """The ``top_k`` wrong test images with the highest loss, as images when the scored test set is found."""
    probabilities = predictions.get("probabilities")
    if probabilities is None:
        return
    labels, predicted = predictions["labels"], predictions["predicted"]
    wrong = np.flatnonzero(predicted != labels)
    if not len(wrong):
        view.top_losses_note = "The model got every test image right."
        return
    losses = -np.log(np.clip(probabilities[wrong, labels[wrong]], 1e-12, 1.0))
    chosen = wrong[np.argsort(-losses, kind="stable")[:top_k]]
    pixels = None
    if images is not None:
        pixels = images[0].numpy()
    else:
        configured = view.state.summary.config.get("data_dir") if view.state.summary is not None else None
        where = data_dir or (configured if isinstance(configured, str) else None)
        pixels, view.top_losses_note = scored_test_images(where, predictions["test_set_sha256"], len(labels))
    for index in chosen.tolist():
        image = None
        if pixels is not None:
            image = data_uri(gray_png(np.ascontiguousarray(pixels[index], dtype=np.uint8).tobytes(), 28, 28))
        probability = float(probabilities[index, predicted[index]])
        true, said = CLASS_NAMES[int(labels[index])], CLASS_NAMES[int(predicted[index])]
        view.top_losses.append(
            TopLossView(int(index), true, said, probability if math.isfinite(probability) else 0.0, image)
        )

"""Ignite's ``FastaiLRFinder`` on this library's model, optimizer and data: a learning rate to start from.

It needs no Optuna, so ``fmnist-ignite lr-find`` works without the tune extra.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from ignite.handlers import FastaiLRFinder

from fmnist_ignite.config.commands import LrFindSettings
from fmnist_ignite.config.fields import named
from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.allocator import keep_freed_memory
from fmnist_ignite.core.device import choose_precision, resolve_device
from fmnist_ignite.core.engines import create_trainer
from fmnist_ignite.core.models import check_model_output
from fmnist_ignite.core.optim import make_optimizer
from fmnist_ignite.core.threads import apply_threads, plan_threads
from fmnist_ignite.data.loaders import get_data_loaders
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_figure
from fmnist_ignite.run.engines import seeded_model
from fmnist_ignite.ui.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MatplotlibFigure


@dataclass
class LRFinderResult:
    """The suggested learning rate, the loss curve it was read from, and the file the curve was saved to.

    ``plot()`` draws the curve (inline in a notebook).

    Attributes:
        suggestion: the suggested learning rate: where the loss falls fastest.
        lrs: the learning rates tried, one a batch, in order.
        losses: the (smoothed) loss at each of them.
        plot_path: the file the curve was saved to; None when none was asked for, or without matplotlib.
        diverged: whether the loss blew up by the last rate tried; False: it had not (a wider range may tell
            more).
    """

    suggestion: float
    lrs: list[float]
    losses: list[float]
    plot_path: Path | None = None
    diverged: bool = True  # False: the loss had not blown up by the last rate tried (a wider range may tell more)

    def __repr__(self) -> str:
        return f"LRFinderResult(suggestion={self.suggestion:.3g}, {len(self.lrs)} learning rates tried)"

    def _repr_html_(self) -> str:
        """In a notebook: the suggestion and the curve it was read from."""
        from fmnist_ignite.ui.figures import png_data_uri

        figure = self.plot()
        curve = f'<br><img src="{png_data_uri(figure, dpi=72)}" alt="learning-rate finder"/>' if figure else ""
        return f"<div><b>Suggested learning rate: {self.suggestion:.3g}</b> (where the loss fell fastest){curve}</div>"

    def plot(self, path: str | Path | None = None) -> MatplotlibFigure | None:
        """Loss against learning rate (log scale), the suggestion marked: a matplotlib figure, saved to
        ``path`` when given (None without matplotlib)."""
        fig = new_figure(figsize=(6, 4), dpi=100)
        if fig is None:
            return None
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        nearest = min(range(len(self.lrs)), key=lambda i: abs(self.lrs[i] - self.suggestion)) if self.lrs else None
        if nearest is not None:
            ax.plot([self.lrs[nearest]], [self.losses[nearest]], "o", color="tab:red", label="suggestion")
            ax.legend()
        ax.set(
            xlabel="learning rate",
            ylabel="loss (smoothed)",
            title=f"Learning-rate finder: suggestion {self.suggestion:.3g}",
        )
        ax.grid(alpha=0.3, which="both")
        fig.tight_layout()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            write_figure(fig, path)
        return fig


def find_lr(
    config: Config,
    sweep: LrFindSettings | None = None,
    plot_path: str | Path | None = None,
    model: torch.nn.Module | None = None,
) -> LRFinderResult:
    """Raise the learning rate exponentially over a few training batches and suggest where the loss falls fastest.

    This is Ignite's ``FastaiLRFinder``; the model and optimizer are restored after.

    Args:
        config: the run's settings (the model, optimizer, data, device, ...); the test split is not loaded.
        sweep: the sweep: ``sweep.iterations`` training batches, from ``sweep.start_lr`` to ``sweep.end_lr``;
            None: ``LrFindSettings()``.
        plot_path: where the curve is saved (with matplotlib); None: not saved.
        model: your own module instead of ``config.model``.

    Raises:
        FmnistError: the loss diverged at once, or the curve has no fall to read a suggestion from.
    """
    sweep = (sweep or LrFindSettings()).validate()
    start_lr, end_lr, iterations = sweep.start_lr, sweep.end_lr, sweep.iterations
    config = config.replace(score_test=False).validate()
    device = resolve_device(config.device)
    keep_freed_memory()
    apply_threads(plan_threads(config.threads))
    model = seeded_model(config, model, device)[0].to(device)  # as a run draws it, beside any other in a thread
    check_model_output(model, device)
    optimizer = make_optimizer(config, model)
    precision, _ = choose_precision(config.precision, device)
    trainer = create_trainer(model, optimizer, device, config.label_smoothing, precision)
    finder = FastaiLRFinder()
    to_restore = {"model": model, "optimizer": optimizer}
    with warnings.catch_warnings(record=True) as caught:  # Ignite's "completed without loss diverging": said below
        warnings.simplefilter("always", UserWarning)
        with finder.attach(trainer, to_restore, num_iter=iterations, start_lr=start_lr, end_lr=end_lr) as finding:
            finding.run(get_data_loaders(config, device)["train"])
    diverged = not any("without loss diverging" in str(w.message) for w in caught)
    results = finder.get_results()
    if len(results["loss"]) < 3:
        raise FmnistError(
            "the loss diverged within {done} iterations: lower {start_lr}",
            done=len(results["loss"]),
            start_lr=named(LrFindSettings, "start_lr"),
        )
    try:
        suggestion = float(finder.lr_suggestion())
    except RuntimeError as exc:  # Ignite's: a curve without the fall it reads the suggestion from
        raise FmnistError(
            "no learning rate to suggest: the loss did not fall and rise over {done} iterations ({start_lr:g} to "
            "{end_lr:g}); raise {iterations} or widen the range",
            done=iterations,
            start_lr=start_lr,
            end_lr=end_lr,
            iterations=named(LrFindSettings, "iterations"),
        ) from exc
    result = LRFinderResult(
        suggestion, [float(v) for v in results["lr"]], [float(v) for v in results["loss"]], diverged=diverged
    )
    if plot_path is not None and result.plot(plot_path) is not None:
        result.plot_path = Path(plot_path)
    return result

"""Ignite's ``FastaiLRFinder`` on this library's model, optimizer and data: a learning rate to start from.

It needs no Optuna, so ``fmnist-ignite lr-find`` works without the tune extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from ignite.handlers import FastaiLRFinder
from ignite.utils import manual_seed

from fmnist_ignite.config import Config
from fmnist_ignite.data import get_data_loaders
from fmnist_ignite.engines import choose_precision, create_trainer, make_optimizer, resolve_device
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.models import build_model, check_model_output
from fmnist_ignite.reports import pyplot


@dataclass
class LRFinderResult:
    """The suggested learning rate, the loss curve it was read from, and the plot (None without matplotlib)."""

    suggestion: float
    lrs: list[float]
    losses: list[float]
    plot: Path | None


def find_lr(
    config: Config,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    iterations: int = 300,
    plot_path: str | Path | None = None,
    model: torch.nn.Module | None = None,
) -> LRFinderResult:
    """Raise the learning rate exponentially over ``iterations`` training batches and suggest the one
    where the loss falls fastest (Ignite's ``FastaiLRFinder``); the model and optimizer are restored after.
    """
    if not 0 < start_lr < end_lr:
        raise FmnistError(f"the learning rates must rise from start to end, got {start_lr} to {end_lr}")
    if iterations < 3:
        raise FmnistError(f"the finder needs at least 3 iterations, got {iterations}")
    config = config.replace(score_test=False).validate()
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    manual_seed(config.seed)
    model = (model if model is not None else build_model(config.model, config.dropout)).to(device)
    check_model_output(model, device)
    optimizer = make_optimizer(config, model)
    precision, _ = choose_precision(config.precision, device)
    trainer = create_trainer(model, optimizer, device, config.label_smoothing, precision)
    finder = FastaiLRFinder()
    to_restore = {"model": model, "optimizer": optimizer}
    with finder.attach(trainer, to_restore, num_iter=iterations, start_lr=start_lr, end_lr=end_lr) as finding:
        finding.run(get_data_loaders(config, device)["train"])
    results = finder.get_results()
    if len(results["loss"]) < 3:
        raise FmnistError(f"the loss diverged within {len(results['loss'])} iterations: lower --start-lr")
    try:
        suggestion = float(finder.lr_suggestion())
    except RuntimeError as exc:  # Ignite's: a curve without the fall it reads the suggestion from
        raise FmnistError(
            f"no learning rate to suggest: the loss did not fall and rise over {iterations} iterations "
            f"({start_lr:g} to {end_lr:g}); raise --iterations or widen the range"
        ) from exc
    plot, plt = None, pyplot() if plot_path is not None else None
    if plt is not None:
        plot = Path(plot_path)
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 4))
        finder.plot(ax=ax)
        ax.set_title(f"Learning-rate finder: suggestion {suggestion:.3g}")
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
        plt.close(fig)
    return LRFinderResult(suggestion, [float(v) for v in results["lr"]], [float(v) for v in results["loss"]], plot)

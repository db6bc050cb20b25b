"""What a study shows: the trials table, each trial's outcome, best.yaml and Optuna's plots."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from fmnist_ignite.experiments.confirm import accuracy_cell
from fmnist_ignite.files.durable import write_durably, write_figure
from fmnist_ignite.ui.plots import pyplot


def shown(value: object) -> str:
    """A sampled value, short: floats to three significant digits."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_outcome(trial: FrozenTrial) -> str:
    """How a finished trial ended, in a few words."""
    seconds = f"{trial.duration.total_seconds():.0f} s" if trial.duration else "?"
    if trial.state == TrialState.COMPLETE:
        return f"validation accuracy {trial.value:.4f} ({trial.user_attrs.get('epochs')} epochs, {seconds})"
    if trial.state == TrialState.PRUNED:
        last = list(trial.intermediate_values.items())[-1]
        return f"pruned at epoch {last[0]}, validation accuracy {last[1]:.4f} ({seconds})"
    why = trial.user_attrs.get("diverged") or trial.user_attrs.get("failed") or "its worker stopped"
    return f"failed: {why}"


def trials_table(trials: list[FrozenTrial], names: list[str]) -> str:
    """The trials as a table: completed ones best first, then pruned, then failed and running."""
    title, table = trials_rows(trials, names)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in table]
    return "\n".join([title, *lines])


def trials_rows(trials: list[FrozenTrial], names: list[str]) -> tuple[str, list[list[str]]]:
    """The trials table's title and rows of cells, the headings first (``trials_table``'s order)."""
    order = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.FAIL: 2, TrialState.RUNNING: 3}
    rows = sorted(trials, key=lambda t: (order.get(t.state, 4), -(t.value or 0.0), t.number))
    table = [["trial", "state", "val acc (95% CI)", "epochs", "time", *names]]
    for t in rows:
        value = t.value if t.value is not None else (list(t.intermediate_values.values()) or [math.nan])[-1]
        seconds = f"{t.duration.total_seconds():.0f}s" if t.duration else "-"
        params = [shown(t.params.get(n, "-")) for n in names]
        epochs = t.user_attrs.get("epochs", len(t.intermediate_values))
        accuracy = accuracy_cell(value, t.user_attrs.get("config", {}).get("val_size"))
        table.append([str(t.number), t.state.name.lower(), accuracy, str(epochs), seconds, *params])
    counts = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    summary = ", ".join(f"{sum(t.state == state for t in trials)} {name}" for name, state in counts.items())
    title = (
        f"{len(trials)} trials ({summary}); val acc: of the epoch each run keeps (pruned: the last reported), "
        "with its 95% Wilson interval"
    )
    return title, table


def write_best_config(trial: FrozenTrial, path: Path, study_name: str) -> None:
    """The best trial's settings, as a file ``--config`` takes."""
    import yaml

    header = (
        f"# Study {study_name}, trial {trial.number}: validation accuracy {trial.value:.4f}\n"
        f"# Train it: fmnist-ignite train --config {path}\n"
    )
    write_durably(path, header + yaml.safe_dump(trial.user_attrs["config"], sort_keys=False))


def plot_study(study: optuna.Study, directory: Path) -> list[Path]:
    """Optuna's optimisation history, parameter importances and intermediate values, as PNGs."""
    plt = pyplot()
    if plt is None:
        return []
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    plots: dict[str, Callable[[optuna.Study], Any]] = {  # each gives matplotlib Axes, or an array of them
        "history.png": optuna_plots.plot_optimization_history,
        "importances.png": optuna_plots.plot_param_importances,
        "intermediate_values.png": optuna_plots.plot_intermediate_values,
    }
    for name, plot in plots.items():
        try:
            with warnings.catch_warnings():  # experimental, and importances of a few trials: noted in docs/tuning.md
                warnings.simplefilter("ignore")
                ax = plot(study)
        except (ValueError, RuntimeError):  # too few completed trials for importances, for example
            continue
        figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        write_figure(figure, directory / name, dpi=100)
        plt.close(figure)
        written.append(directory / name)
    return written

"""The HTML that a run's view and its results show themselves with in a notebook: plain tables, no widgets."""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Protocol, TypeVar

from fmnist_ignite.config.settings import best_row

if TYPE_CHECKING:
    from pathlib import Path

    from fmnist_ignite.config.settings import Config

COLUMNS = (  # history key, heading, format
    ("epoch", "epoch", "{:d}"),
    ("train_loss", "train loss", "{:.4f}"),
    ("val_loss", "validation loss", "{:.4f}"),
    ("val_accuracy", "validation accuracy", "{:.2%}"),
    ("lr", "learning rate", "{:.3g}"),
    ("epoch_time_s", "time", "{:.1f} s"),
)


def clock(seconds: float) -> str:
    """``1:02:03`` or ``2:03``."""
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None:
        return ""
    return fmt.format(int(value) if fmt == "{:d}" else value)


def epoch_table(rows: list[dict], best_epoch: int | None = None) -> str:
    """The history as an HTML table, the best epoch's row in bold."""
    columns = shown_columns(rows)
    head = "".join(f"<th>{html.escape(heading)}</th>" for _, heading, _ in columns)
    body = []
    for row in rows:
        style = ' style="font-weight:bold"' if row.get("epoch") == best_epoch else ""
        cells = "".join(f'<td style="text-align:right">{cell(row, key, fmt)}</td>' for key, _, fmt in columns)
        body.append(f"<tr{style}>{cells}</tr>")
    return (
        '<table class="fmnist-epochs" style="border-collapse:collapse;margin:4px 0">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def shown_columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    """The columns of ``COLUMNS`` some row has (the epoch always): no column stays empty."""
    return [c for c in COLUMNS if c[0] == "epoch" or any(row.get(c[0]) is not None for row in rows)]


def missing_columns_note(rows: list[dict]) -> str:
    """What adds the columns of the training side the rows lack (train loss, learning rate, time), or ""."""
    shown = {key for key, _, _ in shown_columns(rows)}
    missing = [heading for key, heading, _ in COLUMNS if key not in shown]
    if not rows or not missing:
        return ""
    return (
        f"{', '.join(missing)}: attach_epoch_stats(trainer, history, optimizer) adds them, "
        "or attach_notebook_view(..., optimizer=optimizer)"
    )


def per_class_html(accuracies: dict[str, float], intervals: dict[str, list[float] | None] | None = None) -> str:
    """The per-class test accuracies, worst first, each with a bar and, given ``intervals``, its 95% interval."""
    rows = []
    for name, accuracy in sorted(accuracies.items(), key=lambda item: item[1]):
        bar = (
            f'<div style="background:#4c72b0;opacity:0.6;height:10px;width:{max(0.0, min(1.0, accuracy)) * 120:.0f}px">'
            "</div>"
        )
        interval = (intervals or {}).get(name)
        ci = f'<td style="text-align:right">{100 * interval[0]:.1f}-{100 * interval[1]:.1f}%</td>' if interval else ""
        rows.append(
            f'<tr><td style="text-align:left">{html.escape(name)}</td>'
            f'<td style="text-align:right">{accuracy:.1%}</td>{ci}<td style="text-align:left">{bar}</td></tr>'
        )
    heading = "<th>95% interval</th>" if intervals else ""
    return (
        '<table class="fmnist-classes" style="border-collapse:collapse;margin:4px 0">'
        f"<thead><tr><th>class</th><th>test accuracy</th>{heading}<th></th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def test_line(test: dict, scored: str | None) -> str:
    """``Test, best (epoch 5) weights: accuracy 82.1%, loss 0.5078``."""
    which = f", {scored} weights" if scored else ""
    return f"Test{which}: accuracy {test['accuracy']:.1%}, loss {test['loss']:.4f}"


class ShownResult(Protocol):
    """What ``result_html`` reads of a ``TrainResult``."""

    history: list[dict]
    test_metrics: dict
    scored_weights: str
    output_dir: Path
    epochs_run: int
    stopped_early: bool
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    config: Config | None


def result_html(result: ShownResult) -> str:
    """A ``TrainResult`` in a notebook: test accuracy, best epoch, where the checkpoints are."""
    rows = []
    if result.test_metrics:
        rows.append(("test", test_line(result.test_metrics, result.scored_weights).split(": ", 1)[1]))
    monitor = getattr(result.config, "monitor", "loss")
    best = best_row(result.history, f"val_{monitor}")
    if best is not None:
        accuracy = f", validation accuracy {best['val_accuracy']:.2%}" if "val_accuracy" in best else ""
        rows.append(("best epoch", f"{best['epoch']} (by validation {monitor}{accuracy})"))
    ran = f"{result.epochs_run}" + (" (stopped early)" if result.stopped_early else "")
    rows.append(("epochs run", ran))
    rows.append(("output", f"<code>{html.escape(str(result.output_dir))}</code>"))
    for name, path in (("best weights", result.best_checkpoint), ("last checkpoint", result.last_checkpoint)):
        if path:
            rows.append((name, f"<code>{html.escape(path.name)}</code>"))
    body = "".join(
        f'<tr><th style="text-align:left">{html.escape(k)}</th><td style="text-align:left">{v}</td></tr>'
        for k, v in rows
    )
    methods = "plot_curves(), plot_confusion(), plot_reliability(), most_confused(k), plot_top_losses(k)"
    return (
        f'<div class="fmnist-result"><b>TrainResult</b><table style="border-collapse:collapse">{body}</table>'
        f"<small>{html.escape(methods)}</small></div>"
    )


def table_html(rows: list[list[str]], title: str = "") -> str:
    """Rows of cells (the first the headings) as an HTML table under ``title``."""
    if not rows:
        return f"<p>{html.escape(title)}</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f'<td style="text-align:right">{html.escape(c)}</td>' for c in row) + "</tr>"
        for row in rows[1:]
    )
    caption = f"<p>{html.escape(title)}</p>" if title else ""
    return (
        f'{caption}<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def text_table(rows: list[list[str]], title: str = "") -> str:
    """Rows of cells (the first the headings) as aligned text under ``title``: what a terminal shows."""
    if not rows:
        return title
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    lines += [
        "  ".join(c.rjust(w) if n else c.ljust(w) for n, (c, w) in enumerate(zip(r, widths, strict=True))) for r in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


Row = TypeVar("Row")


class ShownList(list[Row]):
    """A list of result rows (named tuples) that shows itself as a table: in HTML in a notebook, as aligned
    text in a terminal or a ``print``. Still a list: index it, iterate it, compare it with one.

    Args:
        items: the rows.
        title: the line above the table.
        formats: how each field of a row is shown (``str.format`` patterns), in the row's order.
    """

    def __init__(self, items: list[Row], title: str, formats: dict[str, str]) -> None:
        super().__init__(items)
        self.title, self.formats = title, formats

    def rows(self) -> list[list[str]]:
        """The headings, then each item's cells."""
        return [[name.replace("_", " ") for name in self.formats]] + [
            [fmt.format(getattr(item, name)) for name, fmt in self.formats.items()] for item in self
        ]

    def _repr_html_(self) -> str:
        return table_html(self.rows(), self.title)

    def __repr__(self) -> str:
        return text_table(self.rows(), self.title) if self else f"{self.title}: none"

"""A run's live view in a Jupyter notebook, and the HTML that results show themselves with.

``attach_notebook_view(trainer, history)`` gives a run one output area, updated in place through
``IPython.display`` (a ``display_id``), never more often than every half second while batches run:

- a progress bar over the whole run: epoch x/N, batch, batches per second, time spent and left;
- a table that gains a row per epoch: train loss, validation loss and accuracy, learning rate, time;
- the learning curves, redrawn after each epoch (an inline PNG);
- at the end, when ``Training`` closes it: how the run ended, the test block and the per-class table.

Plain HTML: no ipywidgets, so nothing renders as ``HBox(children=...)`` where they are missing, and a
saved notebook shows the last state. The tutorial's text lines (``Epoch N``, the loss every
``log_interval`` batches, ``Validation: ...``) stay off the live view: it keeps them and shows them at the
end, folded, under "Text log" (``Training`` makes the view their destination: ``fmnist_ignite.ui.console``);
a handler of your own on the ``fmnist_ignite`` logger, ``logging.StreamHandler(sys.stdout)``, prints them as well.
"""

from __future__ import annotations

import html
import math
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ignite.engine import Engine, Events

from fmnist_ignite.analysis.calibration import calibration_line
from fmnist_ignite.files.summary import RunStatus, RunSummary
from fmnist_ignite.handlers.epoch_stats import attach_epoch_stats
from fmnist_ignite.handlers.history import MetricsHistory
from fmnist_ignite.ui.html import COLUMNS, cell, clock, epoch_table, missing_columns_note, per_class_html, test_line

if TYPE_CHECKING:
    import torch
    from IPython.display import DisplayHandle

MIN_INTERVAL_S = 0.5  # the bar is redrawn at most this often; epoch ends and the end always are
# A folded part's heading, with its disclosure triangle also where a front end's style sheet hides it (the
# classic notebook sets summary to display: block).
SUMMARY = '<summary style="display:list-item;cursor:pointer">'
KEPT_LINES = 2_000  # the text lines the view keeps for its "Text log" (the newest)


class ViewOutput(Protocol):
    """Where a view draws: anything with ``show(bundle)``, the bundle a dict of MIME type to data."""

    def show(self, bundle: dict) -> None: ...


class JupyterOutput:
    """One output area of the running cell, created at the first ``show`` and updated in place after."""

    def __init__(self) -> None:
        self.handle: DisplayHandle | None = None

    def show(self, bundle: dict) -> None:
        from IPython.display import display

        if self.handle is None:
            self.handle = display(bundle, raw=True, display_id=True)
        else:
            self.handle.update(bundle, raw=True)


class NotebookView:
    """The live view of one run (see the module's docstring).

    Its ``log`` method keeps a text line of the run for the end: a destination of the run's lines.

    Args:
        history: the history that gives the table and curves.
        title: the view's heading.
        monitor: the metric that selects ("loss" or "accuracy"): the table marks the epoch of the best
            validation value.
        progress: draw the progress bar (the words beside it are shown either way).
        curves: draw the learning curves after each epoch.
        min_interval: the fewest seconds between two redraws while batches run; epoch ends and the end are
            always drawn.
        output: where to draw (anything with ``show(bundle)``); None: an output area of the running cell.
    """

    def __init__(
        self,
        history: MetricsHistory,
        title: str = "Training",
        monitor: str = "loss",
        progress: bool = True,
        curves: bool = True,
        min_interval: float = MIN_INTERVAL_S,
        output: ViewOutput | None = None,
    ) -> None:
        self.history = history
        self.title = title
        self.monitor = monitor
        self.progress = progress
        self.curves = curves
        self.min_interval = min_interval
        self.output: ViewOutput = output if output is not None else JupyterOutput()
        self.lines: deque[str] = deque(maxlen=KEPT_LINES)
        self.engine: Engine | None = None
        self.started_at: float | None = None
        self.started_iteration = 0
        self.last_shown = -math.inf
        self.status: str | None = None  # how the run ended, once it has
        self.final = ""  # the end's HTML: test block, per-class table, checkpoints
        self.final_text = ""
        self.curves_uri: str | None = None
        self.curves_of: list[dict] | None = None  # the rows the curves were drawn from
        self.closed = False
        self.shows = 0  # how often the view was drawn (the throttle is tested by it)

    # ------------------------------------------------------------------------------------------ attaching

    def attach(self, trainer: Engine, evaluator: Engine | None = None) -> NotebookView:
        """Show the run of ``trainer`` (attach it after the handlers that fill the history); with
        ``evaluator``, redraw the table when an evaluation ends too."""
        trainer.add_event_handler(Events.STARTED, self._started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._epoch)
        trainer.add_event_handler(Events.COMPLETED, self._completed)
        if evaluator is not None:
            evaluator.add_event_handler(Events.COMPLETED, lambda engine: self.render(force=True))
        self.engine = trainer
        return self

    def log(self, line: str) -> None:
        """Keep a text line of the run: shown folded at the end, not while it runs."""
        self.lines.append(str(line))

    def _started(self, engine: Engine) -> None:
        self.engine = engine
        self.started_at = time.perf_counter()
        self.started_iteration = engine.state.iteration
        self.status = None
        self.render(force=True)

    def _iteration(self, engine: Engine) -> None:
        if time.perf_counter() - self.last_shown >= self.min_interval:
            self.render()

    def _epoch(self, engine: Engine) -> None:
        self.render(force=True)

    def _completed(self, engine: Engine) -> None:
        state = engine.state
        if state.max_epochs and state.epoch < state.max_epochs:
            self.status = f"Stopped at epoch {state.epoch} of {state.max_epochs}"
        else:
            self.status = f"Done: {epochs_text(state.epoch)}"
        self.render(force=True)

    def close(self, summary: RunSummary | None = None) -> None:
        """The end: how the run ended and its test results, from the run's ``summary.json`` contents
        (``Training`` calls it however the run ended). A view never shown and told nothing stays unshown."""
        if self.closed:
            return
        self.closed = True
        if summary is None:
            if self.shows:
                self.render(force=True)
            return
        self.status = ended(summary)
        parts, text = [], []
        test = summary.test or {}
        if "accuracy" in test:
            line = test_line(test, summary.scored_weights)
            parts.append(f"<p><b>{html.escape(line)}</b></p>")
            text.append(line)
            if test.get("calibration"):
                temperature = (summary.calibration or {}).get("temperature")
                calibration = calibration_line("test", test["calibration"], temperature)
                parts.append(f"<p>{html.escape(calibration)}</p>")
                text.append(calibration)
            if test.get("per_class_accuracy"):
                parts.append(f"<details open>{SUMMARY}Per-class test accuracy (worst first)</summary>")
                parts.append(per_class_html(test["per_class_accuracy"], test.get("per_class_ci95")) + "</details>")
        checkpoints = [path for path in summary.checkpoints.values() if path]
        if summary.interrupted_checkpoint:
            checkpoints.append(summary.interrupted_checkpoint)
        if checkpoints:
            names = ", ".join(f"<code>{html.escape(str(path).rsplit('/', 1)[-1])}</code>" for path in checkpoints)
            where = html.escape(summary.output_dir)
            parts.append(f"<p>Checkpoints in <code>{where}</code>: {names}</p>")
        self.final, self.final_text = "".join(parts), "\n".join(text)
        self.render(force=True)

    # ------------------------------------------------------------------------------------------ drawing

    def render(self, force: bool = False) -> None:
        """Draw the view (at most every ``min_interval`` seconds unless ``force``)."""
        now = time.perf_counter()
        if not force and now - self.last_shown < self.min_interval:
            return
        self.last_shown = now
        self.shows += 1
        self.output.show({"text/html": self.html(), "text/plain": self.text()})

    def _progress(self) -> tuple[str, str]:
        """The bar (HTML) and its words (text)."""
        engine = self.engine
        state = engine.state if engine is not None else None
        if state is None or not state.max_epochs or not state.epoch_length:
            return "", ""
        total = state.max_epochs * state.epoch_length
        done = state.iteration
        in_epoch = done - (state.epoch - 1) * state.epoch_length if done else 0
        elapsed = time.perf_counter() - self.started_at if self.started_at is not None else 0.0
        run_here = done - self.started_iteration
        rate = run_here / elapsed if elapsed > 0 and run_here > 0 else math.nan
        left = (total - done) / rate if rate and math.isfinite(rate) else math.nan
        words = [f"epoch {state.epoch}/{state.max_epochs}", f"batch {in_epoch}/{state.epoch_length}"]
        if math.isfinite(rate):
            words.append(f"{rate:.1f} batches/s")
        words.append(f"{clock(elapsed)} spent")
        if self.status is None:
            words.append(f"~{clock(left)} left")
            if state.output is not None:
                try:
                    words.append(f"loss {float(state.output):.4f}")
                except (TypeError, ValueError):
                    pass
        value = total if self.status and self.status.startswith(("Done", "Stopped early")) else done
        bar = (
            f'<progress value="{value}" max="{total}" style="width:300px;height:16px;vertical-align:middle"></progress>'
            if self.progress
            else ""
        )
        text = " · ".join(words)
        return f'{bar} <span style="font-family:monospace">{html.escape(text)}</span>', text

    def _draw_curves(self) -> None:
        rows = [dict(row) for row in self.history.epochs]
        if not self.curves or not rows or rows == self.curves_of:
            return
        from fmnist_ignite.ui.figures import png_data_uri
        from fmnist_ignite.ui.plots import plot_curves

        figure = plot_curves(rows)
        self.curves_of = rows
        self.curves_uri = png_data_uri(figure, dpi=72) if figure is not None else None

    def best_epoch(self) -> int | None:
        best = self.history.best(f"val_{self.monitor}")
        return best["epoch"] if best else None

    def html(self) -> str:
        self._draw_curves()
        bar, _ = self._progress()
        parts = [f'<div class="fmnist-ignite-run"><b>{html.escape(self.title)}</b>']
        if self.status:
            parts.append(f" — {html.escape(self.status)}")
        parts.append(f"<div>{bar}</div>" if bar else "")
        if self.history.epochs:
            parts.append(epoch_table(self.history.epochs, self.best_epoch()))
            note = missing_columns_note(self.history.epochs)
            parts.append(f"<div><small>{html.escape(note)}</small></div>" if note else "")
        if self.curves_uri:
            parts.append(f'<img src="{self.curves_uri}" alt="learning curves" style="max-width:720px"/>')
        parts.append(self.final)
        if self.closed and self.lines:
            text = "\n".join(self.lines)
            log = html.escape(text)
            parts.append(
                f"<details>{SUMMARY}Text log ({len(text.splitlines())} lines)</summary>"
                f'<pre style="max-height:300px;overflow:auto">{log}</pre></details>'
            )
        parts.append("</div>")
        return "".join(parts)

    def text(self) -> str:
        """What a front end without HTML shows: the bar's words, the last epoch, the test line."""
        _, words = self._progress()
        lines = [f"{self.title}" + (f": {self.status}" if self.status else "")]
        if words:
            lines.append(words)
        if self.history.epochs:
            last = self.history.epochs[-1]
            lines.append(", ".join(f"{heading} {cell(last, key, fmt)}" for key, heading, fmt in COLUMNS if key in last))
        if self.final_text:
            lines.append(self.final_text)
        return "\n".join(lines)


def epochs_text(count: int) -> str:
    """``1 epoch``, ``3 epochs``."""
    return f"{count} epoch{'s' * (count != 1)}"


def ended(summary: RunSummary) -> str:
    """How a run ended, in a few words, from its summary."""
    done = summary.epochs_done
    if summary.status is RunStatus.COMPLETED:
        early = f"stopped early after epoch {done}" if summary.stopped_early else epochs_text(done)
        resumed = f", resumed from {summary.resumed_from.rsplit('/', 1)[-1]}" if summary.resumed_from else ""
        return f"Done: {early} in {clock(summary.wall_time_s)}{resumed}"
    if summary.status is RunStatus.INTERRUPTED:
        where = summary.interrupted_checkpoint
        saved = f"; saved {where.rsplit('/', 1)[-1]}, continue with resume='auto'" if where else ""
        return f"Interrupted after {epochs_text(done)}{saved}"
    text = summary.status_text
    return text[:1].upper() + text[1:]


def attach_notebook_view(
    trainer: Engine,
    history: MetricsHistory | None = None,
    evaluator: Engine | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    title: str = "Training",
    monitor: str = "loss",
    progress: bool = True,
    curves: bool = True,
    min_interval: float = MIN_INTERVAL_S,
    output: ViewOutput | None = None,
) -> NotebookView:
    """Show ``trainer``'s run live in the notebook: bar, epoch table, curves (module docstring).

    Args:
        trainer: the trainer whose run it shows.
        history: the ``MetricsHistory`` the run's handlers fill (``attach_evaluation``'s, with
            ``attach_epoch_stats`` for train loss, lr and time); attach the view after them. None: the view
            keeps its own, from ``evaluator``'s metrics (validation) and, given ``optimizer``, the epoch's
            mean train loss, lr and time.
        evaluator: the validation evaluator: the table is redrawn when an evaluation ends (and, without
            ``history``, its metrics recorded).
        optimizer: the optimizer whose learning rate is recorded, with the epoch's mean train loss and time
            (into ``history`` too: leave it out when ``attach_epoch_stats`` already fills that history).
        title: the view's heading.
        monitor: the metric that selects ("loss" or "accuracy"): the table marks the epoch of the best
            validation value.
        progress: draw the progress bar.
        curves: draw the learning curves after each epoch.
        min_interval: the fewest seconds between two redraws while batches run.
        output: where to draw (anything with ``show(bundle)``); None: a cell's output area.

    Returns:
        The view, attached; ``Training`` closes it at the end.

    Examples:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import Engine, Events
        >>> from fmnist_ignite import Net, create_evaluator
        >>> model = Net()
        >>> images, labels = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
        >>> loader = DataLoader(TensorDataset(images, labels), batch_size=10)
        >>> evaluator = create_evaluator(model)
        >>> from fmnist_ignite import attach_notebook_view
        >>> class Shown:  # where the view draws (by default: the running cell's output)
        ...     def show(self, bundle):
        ...         self.bundle = bundle
        >>> trainer = Engine(lambda engine, batch: torch.tensor(0.25))
        >>> @trainer.on(Events.EPOCH_COMPLETED)
        ... def validate(engine):
        ...     evaluator.run(loader)
        >>> shown = Shown()
        >>> view = attach_notebook_view(trainer, evaluator=evaluator, output=shown)
        >>> _ = trainer.run([0, 1], max_epochs=2)
        >>> sorted(shown.bundle), len(view.history.epochs)
        (['text/html', 'text/plain'], 2)
    """
    if history is None:
        history = MetricsHistory()
        if evaluator is not None:

            def record(engine: Engine) -> None:
                metrics = engine.state.metrics
                values = {f"val_{key}": metrics[key] for key in ("loss", "accuracy") if key in metrics}
                history.record(trainer.state.epoch, **values)

            evaluator.add_event_handler(Events.COMPLETED, record)
    if optimizer is not None:
        attach_epoch_stats(trainer, history, optimizer)
    view = NotebookView(history, title, monitor, progress, curves, min_interval, output)
    return view.attach(trainer, evaluator)


def tee(*logs: Callable[[str], None]) -> Callable[[str], None]:
    """A destination of lines that passes each line to every one of ``logs``."""

    def log(line: str) -> None:
        for each in logs:
            each(line)

    return log

"""The HTML of a run's ``report.html`` (``analysis.report`` gathers what it shows into a ``ReportView``): the
verdict, the curves, the test set's figures and tables, the worst mistakes, the corruption robustness, the
settings, the machine, the time and the resumes, each section from what the run's files say, and what could
not be read said plainly. Every value read from a file is checked here again or escaped: the page is built
from untrusted input. Imports no torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fmnist_ignite.files.layout import epoch_of
from fmnist_ignite.files.runstate import RunState, continue_command
from fmnist_ignite.files.summary import RunSummary
from fmnist_ignite.ui.html import epoch_table, per_class_html
from fmnist_ignite.ui.pages import (
    Row,
    escape,
    figure,
    fraction,
    number,
    page,
    percent,
    seconds,
    shown_value,
    table,
    with_interval,
)

PLOT_EXTRA = "pip install 'fmnist-ignite[plot]'"


@dataclass
class TopLossView:
    """A test image the model got most confidently wrong, as the page shows it (``image``: a data URI, or
    None when the test images were not found)."""

    index: int
    true: str
    predicted: str
    probability: float
    image: str | None = None


@dataclass
class ReportView:
    """What a report page shows, gathered and checked by ``analysis.report``."""

    name: str
    state: RunState
    figures: dict[str, str] = field(default_factory=dict)  # curves, confusion, reliability, corruptions: data URIs
    figures_note: str = ""  # why figures are missing, when they are
    per_class: dict[str, float] = field(default_factory=dict)
    per_class_ci: dict[str, list[float] | None] = field(default_factory=dict)
    confused: list[tuple[str, str, int]] = field(default_factory=list)
    top_losses: list[TopLossView] = field(default_factory=list)
    top_losses_note: str = ""
    corruptions: dict | None = None
    settings: list[tuple[str, str, str | None]] = field(default_factory=list)  # name, value, basis value if changed
    settings_basis: str = "the defaults"
    problems: list[str] = field(default_factory=list)
    footer: str = ""


def report_html(view: ReportView) -> str:
    """The whole page."""
    summary = view.state.summary
    parts = [header(view), f'<p class="verdict">{escape(verdict(summary, view.state))}</p>']
    parts += [curves(view, summary), test_section(view), corruption_section(view.corruptions, view.figures)]
    parts += [settings_section(view), machine_section(summary), time_section(summary), resume_section(summary)]
    if view.problems:
        items = "".join(f'<li class="problem">{escape(problem)}</li>' for problem in view.problems)
        parts.append(f"<section><h2>What could not be read</h2><ul>{items}</ul></section>")
    parts.append(f"<footer>{escape(view.footer)}</footer>")
    return page(f"Run {view.name}", "\n".join(part for part in parts if part))


def header(view: ReportView) -> str:
    state = view.state
    note = ""
    if state.note and state.status != "damaged":  # a damaged run's reason: under "What could not be read"
        note = " · " + escape(state.note)
        command = escape(continue_command(state.path))
        note = note.replace(command, f"<code>{command}</code>")
    summary = state.summary
    epochs = ""
    if summary is not None:
        planned = summary.config.get("epochs")
        of = f" of {planned}" if isinstance(planned, int) and not isinstance(planned, bool) else ""
        epochs = f" · {summary.epochs_done} epoch{'s' * (summary.epochs_done != 1)}{of}"
    return (
        f"<header><h1>Run {escape(view.name)}</h1>"
        f'<p><b class="status-{escape(state.status)}">{escape(state.status)}</b>{epochs}{note}</p>'
        f'<p class="note">Directory: <code>{escape(state.path)}</code></p></header>'
    )


def verdict(summary: RunSummary | None, state: RunState) -> str:
    """The line a reader looks for first: the test accuracy with its interval, the ECE before and after the
    temperature, and the epoch the run kept."""
    if summary is None:
        return "No verdict: " + ("its summary.json cannot be read (below)" if state.status == "damaged" else state.note)
    test = summary.test or {}
    if not test:
        how = {"failed": "the run failed", "interrupted": "the run was interrupted", "running": "the run is running"}
        why = "it was kept out" if summary.finished else how.get(state.status, "the run did not finish")
        best = summary.best_validation
        if best is None:
            return f"Not scored on the test set ({why}); no epoch was validated"
        ci = best.get("accuracy_ci95")
        return (
            f"Not scored on the test set ({why}) · best validation accuracy {percent(best['accuracy'], 2)}"
            + (f" (95% CI {100 * ci[0]:.2f}-{100 * ci[1]:.2f}%)" if ci else "")
            + (f" at epoch {summary.best_epoch}" if summary.best_epoch is not None else "")
        )
    count = test.get("count")
    ci = test.get("accuracy_ci95")
    accuracy = f"Test accuracy {percent(test['accuracy'], 2)}"
    if ci:
        accuracy += f" (95% CI {100 * ci[0]:.2f}-{100 * ci[1]:.2f}%" + (f", {count:,} images)" if count else ")")
    found = test.get("calibration")
    calibration: Mapping = found if isinstance(found, Mapping) else {}
    ece, after = fraction(calibration.get("ece")), fraction(calibration.get("ece_calibrated"))
    temperature = number((summary.calibration or {}).get("temperature"))
    parts = [accuracy]
    if ece is not None:
        at = f" at temperature {temperature:.3g}" if temperature is not None else ""
        parts.append(f"ECE {percent(ece, 2)}" + (f", calibrated {percent(after, 2)}{at}" if after is not None else ""))
    if summary.best_epoch is not None:
        monitor = summary.config.get("monitor", "loss")
        parts.append(f"epoch kept: {summary.best_epoch} (best validation {shown_value(monitor, 20)})")
    elif summary.scored_weights:
        parts.append(f"weights scored: {summary.scored_weights}")
    return " · ".join(parts)


def curves(view: ReportView, summary: RunSummary | None) -> str:
    if summary is None and "curves" not in view.figures:
        return ""
    parts = ["<section><h2>Learning curves</h2>"]
    if "curves" in view.figures:
        parts.append(figure(view.figures["curves"], "loss and validation accuracy per epoch"))
    elif view.figures_note:
        parts.append(f'<p class="note">{escape(view.figures_note)}</p>')
    if summary is not None and summary.history:
        parts.append(f'<div class="scroll">{epoch_table(summary.history, summary.best_epoch)}</div>')
    elif summary is not None:
        parts.append('<p class="note">No epoch finished.</p>')
    return "".join(parts) + "</section>"


def test_section(view: ReportView) -> str:
    parts = []
    for kind, alt in (("confusion", "test-set confusion matrix"), ("reliability", "reliability diagram")):
        if kind in view.figures:
            parts.append(figure(view.figures[kind], alt))
    body = f'<div class="figures">{"".join(parts)}</div>' if parts else ""
    if not parts and view.figures_note and view.state.summary and view.state.summary.test:
        body += f'<p class="note">{escape(view.figures_note)}</p>'
    if view.per_class:
        intervals = view.per_class_ci if any(view.per_class_ci.values()) else None
        body += "<h3>Per class (worst first, 95% Wilson interval)</h3>"
        body += f'<div class="scroll">{per_class_html(view.per_class, intervals)}</div>'
    if view.confused:
        rows = [[escape(true), escape(predicted), f"{count:,}"] for true, predicted, count in view.confused]
        body += "<h3>Most confused pairs</h3>" + table(
            ("true class", "predicted", "images"), rows, (False, False, True)
        )
    body += top_losses(view)
    return f"<section><h2>The test set</h2>{body}</section>" if body else ""


def top_losses(view: ReportView) -> str:
    if not view.top_losses and not view.top_losses_note:
        return ""
    head = "<h3>Top losses: the test images it got most confidently wrong</h3>"
    note = f'<p class="note">{escape(view.top_losses_note)}</p>' if view.top_losses_note else ""
    if view.top_losses and view.top_losses[0].image is not None:
        cells = "".join(
            f'<figure><img src="{escape(t.image)}" alt="test image {t.index}"><figcaption>#{t.index}: '
            f"{escape(t.true)}, taken for {escape(t.predicted)} ({percent(t.probability)})</figcaption></figure>"
            for t in view.top_losses
            if t.image is not None
        )
        return f'{head}{note}<div class="grid">{cells}</div>'
    rows = [[str(t.index), escape(t.true), escape(t.predicted), percent(t.probability)] for t in view.top_losses]
    shown = table(("image", "true class", "predicted", "probability"), rows, (True, False, False, True)) if rows else ""
    return head + note + shown


def corruption_section(corruptions: dict | None, figures: dict[str, str]) -> str:
    if corruptions is None:
        return ""
    clean = corruptions["clean"]
    line = (
        f"Clean test accuracy {with_interval(clean['accuracy'], clean['ci95'])}; mean accuracy under the "
        f"corruptions {percent(corruptions['mean_corruption_accuracy'])} (seed {corruptions['seed']})"
    )
    by_name: dict[str, dict[int, dict]] = {}
    for score in corruptions["corruptions"]:
        by_name.setdefault(score["corruption"], {})[score["severity"]] = score
    severities = sorted({severity for scores in by_name.values() for severity in scores})
    rows = [
        [escape(name)] + [with_interval(s["accuracy"], s["ci95"]) if (s := scores.get(n)) else "-" for n in severities]
        for name, scores in by_name.items()
    ]
    headings = ("corruption", *(f"severity {n}" for n in severities))
    shown = table(headings, rows, (False, *(True for _ in severities)))
    examples = (
        figure(figures["corruptions"], "one test image under each corruption") if "corruptions" in figures else ""
    )
    return f"<section><h2>Corruption robustness</h2><p>{escape(line)}</p>{shown}{examples}</section>"


def settings_section(view: ReportView) -> str:
    if not view.settings:
        return ""
    changed = [Row([f"<code>{escape(n)}</code>", escape(v), escape(b)], "changed") for n, v, b in view.settings if b]
    rest = "".join(
        f"<div><code>{escape(name)}</code> {escape(value)}</div>" for name, value, basis in view.settings if not basis
    )
    parts = [f"<section><h2>Settings</h2><p>Those that differ from {escape(view.settings_basis)} first.</p>"]
    if changed:
        parts.append(table(("setting", "this run", view.settings_basis), changed))
    else:
        parts.append(f"<p>None differ from {escape(view.settings_basis)}.</p>")
    parts.append(f'<h3>The others</h3><div class="rest">{rest}</div></section>')
    return "".join(parts)


def machine_section(summary: RunSummary | None) -> str:
    if summary is None:
        return ""
    precision = summary.precision
    rows = [
        ("device", summary.device or "-"),
        ("CPU capability", summary.cpu or "not recorded (a run from before it was kept)"),
        ("threads", f"{summary.threads} per process, {summary.processes} process{'es' * (summary.processes > 1)}"),
        ("precision", f"{shown_value(precision.get('used', '-'))} ({shown_value(precision.get('why', '-'))})"),
        ("model", summary.model or "-"),
        ("seed", str(summary.seed)),
        *((f"{name} version", shown_value(version)) for name, version in summary.versions.items()),
    ]
    body = table(("", ""), [[escape(name), escape(value)] for name, value in rows])
    return f"<section><h2>The machine</h2>{body}</section>"


def time_section(summary: RunSummary | None) -> str:
    if summary is None:
        return ""
    phases = getattr(summary, "phases", None)
    parts = ["<section><h2>Time</h2>"]
    if isinstance(phases, Mapping) and phases:
        rows = [[escape(name), seconds(number(value))] for name, value in phases.items()]
        parts.append(table(("phase", "time"), rows, (False, True)))
    whose = "this process's, since the resume" if summary.resumed_from else "from the start to the last summary"
    parts.append(f"<p>Wall time {seconds(summary.wall_time_s)} ({whose}).</p>")
    times = [t for row in summary.history if (t := number(row.get("epoch_time_s"))) is not None]
    if times:
        parts.append(
            f"<p>Epochs: {len(times)} timed, {seconds(sum(times))} in all; the first {seconds(times[0])}, "
            f"the median {seconds(sorted(times)[len(times) // 2])} (the table above has each).</p>"
        )
    return "".join(parts) + "</section>"


def resume_section(summary: RunSummary | None) -> str:
    if summary is None or not summary.resumed_from:
        return ""
    checkpoint = summary.resumed_from.replace("\\", "/").rsplit("/", 1)[-1]
    number_in_name = epoch_of(Path(checkpoint))
    where = (
        f"after epoch {number_in_name}"
        if checkpoint.startswith("training_checkpoint")
        else f"after iteration {number_in_name}"
        if checkpoint.startswith("interrupted_checkpoint")
        else "from a checkpoint"
    )
    return (
        "<section><h2>Resumed</h2>"
        f"<p>The last resume began {escape(where)}, from <code>{escape(checkpoint)}</code>; "
        "summary.json keeps the last resume only (the history above has every epoch once).</p></section>"
    )

"""Every run at a glance: one row per run directory found under the directories given (``fmnist-ignite runs``,
``list_runs()``), with its status, epochs, accuracies, ECE, wall time and the settings that differ among them.

Run directories are found by walking the directories given, a bounded number of levels deep and of
directories in all, never through a symbolic link (a link to a directory, or a loop, is a row that says so);
a directory holding ``summary.json`` or ``config.json`` is a run's (a study's ``trial-NNNN``, a ``--seeds``
parent's ``seed-N`` among them) and is not walked further. Each is read as untrusted input
(``files.runstate``): a damaged one is a row saying why in one line, never a traceback. Imports no torch:
the table answers at once.
"""

from __future__ import annotations

import csv
import errno
import importlib
import io
import json
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fmnist_ignite.config.commands import RUN_COLUMNS, RunsSettings
from fmnist_ignite.config.settings import settings
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.runstate import RUN_MARKERS, RunState, continue_command, printable, read_run_state
from fmnist_ignite.files.summary import RunSummary
from fmnist_ignite.ui.pages import Row, escape, fraction, page, percent, seconds, shown_value, table, with_interval

MAX_DEPTH = 8  # levels below a directory given: a study's confirm/trial-N/seed-M is 3
MAX_DIRECTORIES = 100_000  # directories looked into, all given together
REPORT_FILE = "report.html"  # analysis.report's, named here without importing it (it imports torch)
UNCOMPARED = ("output_dir", "resume", "epochs")  # where a run lies, how it started; epochs: its column says them
BEST_FIRST = ("validation", "test")


@dataclass
class RunRow:
    """One run of the table: where it is, how it stands, what it scored and the settings it ran with."""

    run: str
    path: Path
    status: str
    note: str = ""
    epochs_done: int | None = None
    epochs: int | None = None
    validation: float | None = None
    test: float | None = None
    test_ci95: list[float] | None = None
    ece: float | None = None
    wall_time_s: float | None = None
    config: dict = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, run: str, state: RunState) -> RunRow:
        row = cls(run, state.path, state.status, state.note)
        summary: RunSummary | None = state.summary
        if summary is None:
            return row
        test = summary.test or {}
        calibration = test.get("calibration")
        ece = calibration.get("ece") if isinstance(calibration, dict) else None
        planned = summary.config.get("epochs")
        row.epochs_done, row.wall_time_s, row.config = summary.epochs_done, summary.wall_time_s, summary.config
        row.epochs = planned if isinstance(planned, int) and not isinstance(planned, bool) else None
        row.validation = (summary.best_validation or {}).get("accuracy")
        row.test, row.test_ci95 = test.get("accuracy"), test.get("accuracy_ci95")
        row.ece = fraction(ece)
        return row


def find_runs(roots: list[Path]) -> tuple[list[tuple[str, Path, list[str] | None, str]], list[str]]:
    """The run directories under ``roots``: (name, path, entry names, why it cannot be read) each, and the
    notes of the walk (a bound reached)."""
    found: list[tuple[str, Path, list[str] | None, str]] = []
    notes: list[str] = []
    listed = 0
    stack = [(root, 0) for root in reversed(roots)]
    while stack:
        directory, depth = stack.pop()
        if listed >= MAX_DIRECTORIES:
            notes.append(f"stopped after looking into {MAX_DIRECTORIES:,} directories: give fewer or narrower ones")
            break
        listed += 1
        try:
            with os.scandir(directory) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError as exc:
            found.append((str(directory), directory, None, f"{directory}: cannot list it ({exc.strerror})"))
            continue
        names = [entry.name for entry in entries]
        if not set(RUN_MARKERS).isdisjoint(names):
            found.append((str(directory), directory, names, ""))
            continue
        below = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                why = linked(Path(entry.path))
                if why:
                    found.append((entry.path, Path(entry.path), None, why))
            elif entry.is_dir(follow_symlinks=False):
                if depth + 1 > MAX_DEPTH:
                    notes.append(f"{entry.path}: deeper than {MAX_DEPTH} levels, not looked into")
                else:
                    below.append((Path(entry.path), depth + 1))
        stack.extend(reversed(below))
    return found, notes


def linked(path: Path) -> str:
    """Why a symbolic link in a directory of runs is a row (a link to a directory, a loop), or ""."""
    try:
        target = os.stat(path)
    except OSError as exc:
        return f"{path}: a symbolic link loop, not followed" if exc.errno == errno.ELOOP else ""
    if stat.S_ISDIR(target.st_mode):
        return f"{path}: a symbolic link to a directory, not followed (give its target to list it)"
    return ""


def list_runs(*dirs: str | Path, sort: str = "run", status: str | None = None) -> RunsTable:
    """The table of the runs under ``dirs``: one row per run directory, with its status (finished,
    stopped-early, interrupted, failed, running, damaged), epochs, best validation accuracy, test accuracy
    with its 95% interval, ECE, wall time and the settings that differ among the runs listed. It shows itself
    in a notebook and as text; ``to_pandas()``, ``to_csv()`` and ``to_json()`` give it to a program.

    Args:
        *dirs: the directories to look in, recursively (a run directory itself is one row); none: ``runs``.
        sort: a column (run, status, epochs, validation, test, ece, wall) or a setting's name; accuracies
            best first, the rest smallest first, unknown values last.
        status: only the runs of this status.

    Raises:
        FmnistError: a directory that does not exist, or an unknown column or status.
    """
    RunsSettings(sort=sort, status=status).validate()
    roots = [Path(d) for d in dirs] or [Path("runs")]
    for root in roots:
        if not root.is_dir():
            raise FmnistError(f"{root}: no such directory (give the directories that hold the runs)")
    found, notes = find_runs(roots)
    rows = [RunRow.of(name, read_run_state(path, names) if not why else RunState(path, "damaged", why))
            for name, path, names, why in found]  # fmt: skip
    table = RunsTable(rows, differing_settings(rows), notes)
    if status is not None:
        table.rows = [row for row in table.rows if row.status == status]
    table.rows.sort(key=lambda row: sort_key(row, sort, table.defaults))
    return table


def differing_settings(rows: list[RunRow]) -> list[str]:
    """The settings whose values are not all the same among the rows that have settings (one missing from
    an older run's file counts as its default), in the order the runs' files give them."""
    table = settings()
    defaults = {name: s.default for name, s in table.items()}
    configs = [row.config for row in rows if row.config]
    names = dict.fromkeys(name for config in configs for name in config)
    kept = []
    for name in names:
        if name in UNCOMPARED or getattr(table.get(name), "from_environment", None):
            continue
        values = {shown_value(config.get(name, defaults.get(name)), 200) for config in configs}
        if len(values) > 1:
            kept.append(name)
    return kept


def sort_key(row: RunRow, column: str, defaults: dict[str, object]) -> tuple:
    values = {"run": row.run, "status": row.status, "epochs": row.epochs_done, "validation": row.validation,
              "test": row.test, "ece": row.ece, "wall": row.wall_time_s}  # fmt: skip
    value = values[column] if column in RUN_COLUMNS else row.config.get(column, defaults.get(column))
    if value is None or not row.config and column not in ("run", "status"):
        return (2, 0, "", row.run)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, -value if column in BEST_FIRST else value, "", row.run)
    return (1, 0, shown_value(value, 200), row.run)


class RunsTable:
    """The runs found (``list_runs``): ``rows``, the settings that differ among them (``settings``) and what
    the walk could not cover (``notes``). Iterate it for the rows; print it, or show it in a notebook."""

    def __init__(self, rows: list[RunRow], differing: list[str], notes: list[str]) -> None:
        self.rows, self.settings, self.notes = rows, differing, notes
        self.defaults = {name: s.default for name, s in settings().items()}  # a setting an older run lacks

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[RunRow]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> RunRow:
        return self.rows[index]

    def title(self) -> str:
        count = f"{len(self.rows)} run{'s' * (len(self.rows) != 1)}"
        return count + (f"; settings that differ: {', '.join(self.settings)}" if self.settings else "")

    def cells(self, row: RunRow) -> list[str]:
        """A row's cells as text, in the columns' order."""
        epochs = "-" if row.epochs_done is None else f"{row.epochs_done}" + (f"/{row.epochs}" if row.epochs else "")
        wall = seconds(row.wall_time_s) if row.config else "-"
        return [row.run, row.status, epochs, percent(row.validation, 2), with_interval(row.test, row.test_ci95, 2),
                percent(row.ece, 2), wall, *(self.setting(row, name) for name in self.settings), row.note]  # fmt: skip

    def setting(self, row: RunRow, name: str) -> str:
        if not row.config:
            return "-"
        return shown_value(row.config.get(name, self.defaults.get(name)), 24)

    def headings(self) -> list[str]:
        return ["run", "status", "epochs", "best val. acc.", "test (95% CI)", "ECE", "wall", *self.settings, "note"]

    def __str__(self) -> str:
        rows = [self.headings(), *([printable(cell) for cell in self.cells(row)] for row in self.rows)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        right = range(2, 7)  # the numbers' columns
        lines = [self.title() if self.rows else f"{self.title()}: none found"]
        if self.rows:
            lines += [
                "  ".join(
                    c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
                ).rstrip()
                for r in rows
            ]
        return "\n".join(lines + [f"note: {printable(note)}" for note in self.notes])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return f"<div><p>{escape(self.title())}</p>{self.html_table(links_from=None)}</div>"

    def html_table(self, links_from: Path | None) -> str:
        """The table as HTML; with ``links_from`` (the page's directory), each run's name links to its
        ``report.html`` when it has one."""
        numeric = (False, False, True, True, True, True, True)
        body = []
        for row in self.rows:
            cells = [escape(cell) for cell in self.cells(row)[:-1]]  # the note: on a line of its own below
            cells[1] = f'<span class="status-{escape(row.status)}">{cells[1]}</span>'
            report = row.path / REPORT_FILE
            if links_from is not None and is_regular(report):
                target = os.path.relpath(report, links_from)
                cells[0] = f'<a href="{escape(href(target))}">{cells[0]}</a>'
            note = escape(row.note)
            if row.note:
                command = escape(continue_command(row.path))
                note = note.replace(command, f"<code>{command}</code>")
            body.append(Row(cells, "has-note" if note else "", note))
        return table(self.headings()[:-1], body, numeric, class_="runs")

    def write_html(self, path: str | Path) -> Path:
        """The table as a self-contained page at ``path`` (written durably), each run linked to its report."""
        from fmnist_ignite.files.durable import write_durably

        path = Path(path)
        when = time.strftime("%Y-%m-%d %H:%M")
        notes = "".join(f'<p class="note">{escape(note)}</p>' for note in self.notes)
        body = f"<h1>Runs</h1><p>{escape(self.title())}</p>{self.html_table(path.parent.resolve())}{notes}"
        body += f"<footer>Written by fmnist-ignite runs on {escape(when)}; a run's name opens its report.</footer>"
        write_durably(path, page("Runs", body, wide=True))
        return path

    def records(self) -> list[dict]:
        """Each row as a dict of plain values (what ``to_json`` writes)."""
        return [
            {
                "run": row.run,
                "path": str(row.path),
                "status": row.status,
                "epochs_done": row.epochs_done,
                "epochs": row.epochs,
                "best_validation_accuracy": row.validation,
                "test_accuracy": row.test,
                "test_accuracy_ci95": row.test_ci95,
                "ece": row.ece,
                "wall_time_s": row.wall_time_s,
                "settings": {name: row.config.get(name) for name in self.settings} if row.config else {},
                "note": row.note,
            }  # fmt: skip
            for row in self.rows
        ]

    def to_json(self) -> str:
        """The rows as a JSON list of objects."""
        return json.dumps(self.records(), indent=2, default=str)

    def flat_records(self) -> list[dict]:
        """Each row with one column per value (the interval's ends, each differing setting), for CSV and pandas."""
        flat = []
        for record in self.records():
            low, high = record.pop("test_accuracy_ci95") or (None, None)
            shown, note = record.pop("settings"), record.pop("note")
            ece, wall = record.pop("ece"), record.pop("wall_time_s")
            interval = {"test_accuracy_ci_low": low, "test_accuracy_ci_high": high}
            values = {name: shown.get(name) for name in self.settings}
            flat.append({**record, **interval, "ece": ece, "wall_time_s": wall, **values, "note": note})
        return flat

    def to_csv(self) -> str:
        """The rows as CSV, a header line first."""
        out = io.StringIO()
        columns = list(self.flat_records()[0]) if self.rows else ["run", "path", "status"]
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        for record in self.flat_records():
            writer.writerow({k: shown_value(v, 10_000) if isinstance(v, dict | list) else v for k, v in record.items()})
        return out.getvalue()

    def to_pandas(self) -> object:
        """The rows as a pandas ``DataFrame`` (one column per value, as ``to_csv``).

        Raises:
            FmnistError: pandas is not installed.
        """
        try:
            pandas = importlib.import_module("pandas")
        except ImportError:
            raise FmnistError("to_pandas() needs pandas: pip install pandas") from None
        return pandas.DataFrame(self.flat_records())


def is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def href(relative: str) -> str:
    """A relative path as a URL path (each part percent-encoded: a name with ``#``, ``?`` or ``:`` is a file)."""
    from urllib.parse import quote

    return "/".join(quote(part) for part in relative.split(os.sep))

"""`fmnist-ignite runs` and `list_runs()`: one row per run directory, its status told from its summary and its
lock, the settings that differ among the runs, sorted and filtered, as text, CSV, JSON, pandas and a page;
a hostile directory says so in its row. Summaries written as runs write them (``RunSummary``), no training."""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fmnist_ignite import Config, FmnistError, list_runs
from fmnist_ignite.cli.main import main
from fmnist_ignite.errors import SettingError
from fmnist_ignite.experiments import listing
from fmnist_ignite.files.summary import RunStatus, RunSummary, write_summary


def fake_run(
    directory: Path,
    status: RunStatus = RunStatus.COMPLETED,
    *,
    test: float | None = 0.8,
    checkpoint: bool = False,
    failure: str | None = None,
    stopped_early: bool | None = False,
    wall: float = 10.0,
    **settings: object,
) -> Path:
    """A run directory as a run of ``settings`` leaves it with ``status`` (its summary, a checkpoint's name)."""
    directory.mkdir(parents=True)
    config = dataclasses.asdict(Config(output_dir=str(directory), epochs=3, **settings))  # type: ignore[arg-type]
    finished = status is RunStatus.COMPLETED
    summary = RunSummary(
        status=status,
        failure=failure,
        config=config,
        epochs_done=3 if finished else 1,
        best_epoch=1,
        best_validation={"loss": 0.5, "accuracy": 0.75, "accuracy_ci95": [0.7, 0.8]},
        wall_time_s=wall,
        stopped_early=stopped_early if finished else None,
        test={
            "accuracy": test,
            "count": 10_000,
            "accuracy_ci95": [test - 0.01, test + 0.01],
            "calibration": {"ece": 0.02, "ece_calibrated": 0.01},
            "per_class_accuracy": {},
        }
        if finished and test is not None
        else None,
    )
    write_summary(directory / "summary.json", summary)
    if checkpoint:
        (directory / "training_checkpoint_1.pt").write_bytes(b"")
    return directory


def by_run(table) -> dict[str, listing.RunRow]:
    return {Path(row.run).name: row for row in table}


def test_each_status_is_told_from_the_summary_and_the_lock(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "done")
    fake_run(runs / "early", stopped_early=True)
    fake_run(runs / "stopped", RunStatus.INTERRUPTED, checkpoint=True)
    fake_run(runs / "killed", RunStatus.RUNNING, checkpoint=True)  # kill -9: the summary still says running
    fake_run(runs / "killed-early", RunStatus.RUNNING)  # before its first checkpoint
    fake_run(runs / "full", RunStatus.FAILED, failure="disk full", checkpoint=True)
    fake_run(runs / "nan", RunStatus.NON_FINITE, checkpoint=True)
    live = fake_run(runs / "live", RunStatus.RUNNING, checkpoint=True)
    (runs / "damaged").mkdir()
    (runs / "damaged" / "summary.json").write_text('{"status": "completed", "epochs_done": -1}')
    (runs / "set-up").mkdir()
    (runs / "set-up" / "config.json").write_text("{}")  # killed before its first summary
    with (live / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a live run holds it
        held.write("4242\n")
        held.flush()
        rows = by_run(list_runs(runs))
    statuses = {name: row.status for name, row in rows.items()}
    assert statuses == {
        "damaged": "damaged",
        "done": "finished",
        "early": "stopped-early",
        "full": "failed",
        "killed": "interrupted",
        "killed-early": "interrupted",
        "live": "running",
        "nan": "failed",
        "set-up": "interrupted",
        "stopped": "interrupted",
    }
    for name in ("stopped", "killed", "full", "killed-early", "set-up"):
        command = f"fmnist-ignite train --resume=auto --output-dir={runs / name}"
        assert rows[name].note.endswith(command), rows[name].note
    assert rows["killed"].note.startswith("killed: its summary still says running, and no live process holds it")
    assert "no checkpoint yet, so it starts again" in rows["killed-early"].note
    assert rows["full"].note.startswith("disk full; once that is fixed")
    assert rows["nan"].note.startswith("the loss became NaN") and "fmnist-ignite" not in rows["nan"].note
    assert rows["live"].note == "in use by a live process (pid 4242)"
    assert rows["damaged"].note == f"{runs / 'damaged' / 'summary.json'}: epochs_done: expected an integer >= 0, got -1"
    assert by_run(list_runs(runs))["live"].status == "interrupted"  # the lock released: the process is gone
    assert not (runs / "done" / ".lock").exists()  # looking never creates a lock


def test_only_the_settings_that_differ_are_columns_and_an_older_runs_missing_one_is_its_default(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "a", lr=1e-3, batch_size=64)
    fake_run(runs / "b", lr=2e-3)
    older = fake_run(runs / "c", lr=1e-3, batch_size=128)
    summary = json.loads((older / "summary.json").read_text())
    del summary["config"]["weight_decay"]  # a setting added since: it was the default then
    (older / "summary.json").write_text(json.dumps(summary))
    table = list_runs(runs)
    assert table.settings == ["batch_size", "lr"]  # output_dir differs for every run: never a column
    assert str(table).splitlines()[0] == "3 runs; settings that differ: batch_size, lr"
    assert [row["settings"] for row in table.records()] == [
        {"batch_size": 64, "lr": 0.001},
        {"batch_size": 64, "lr": 0.002},
        {"batch_size": 128, "lr": 0.001},
    ]
    assert list_runs(runs / "a").settings == []  # one run: nothing to differ


def test_sort_by_a_column_or_a_setting_best_accuracy_first_and_filter_by_status(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "a", test=0.85, wall=30.0, lr=3e-3)
    fake_run(runs / "b", test=0.90, wall=10.0, lr=1e-3)
    fake_run(runs / "c", RunStatus.INTERRUPTED, checkpoint=True, wall=20.0, lr=2e-3)  # no test accuracy: last
    (runs / "d").mkdir()
    (runs / "d" / "summary.json").write_text("not json")  # damaged: no values, last
    names = lambda table: [Path(row.run).name for row in table]  # noqa: E731
    assert names(list_runs(runs)) == ["a", "b", "c", "d"]
    assert names(list_runs(runs, sort="test")) == ["b", "a", "c", "d"]
    assert names(list_runs(runs, sort="wall")) == ["b", "c", "a", "d"]
    assert names(list_runs(runs, sort="lr")) == ["b", "c", "a", "d"]
    assert names(list_runs(runs, status="interrupted")) == ["c"]
    assert names(list_runs(runs, status="running")) == []
    with pytest.raises(SettingError, match=r"sort='tset': not a column nor a setting \(did you mean test\?\)"):
        list_runs(runs, sort="tset")
    with pytest.raises(SettingError, match="status='done': choose one of finished, stopped-early"):
        list_runs(runs, status="done")
    with pytest.raises(FmnistError, match="no such directory"):
        list_runs(tmp_path / "nowhere")


def test_csv_and_json_parse_and_say_the_same_rows(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs / "a", lr=1e-3)
    fake_run(runs / "b, with a comma", RunStatus.INTERRUPTED, checkpoint=True, lr=2e-3)
    assert main(["runs", str(runs), "--csv", "--sort", "test"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(Path(r["run"]).name, r["status"], r["test_accuracy"], r["lr"]) for r in rows] == [
        ("a", "finished", "0.8", "0.001"),
        ("b, with a comma", "interrupted", "", "0.002"),
    ]
    assert float(rows[0]["test_accuracy_ci_low"]) == pytest.approx(0.79) and rows[0]["ece"] == "0.02"
    assert rows[1]["note"].endswith(f"'--output-dir={runs / 'b, with a comma'}'")  # quoted to run as printed
    assert main(["runs", str(runs), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [(Path(r["run"]).name, r["status"], r["test_accuracy"], r["settings"]) for r in records] == [
        ("a", "finished", 0.8, {"lr": 0.001}),
        ("b, with a comma", "interrupted", None, {"lr": 0.002}),
    ]
    assert records[0]["test_accuracy_ci95"] == pytest.approx([0.79, 0.81]) and records[0]["epochs"] == 3
    assert main(["runs", str(runs), "--csv", "--json"]) == 2
    assert capsys.readouterr().err.strip() == "error: --json True: choose one of --csv and --json"


def test_the_text_table_names_each_run_and_its_values(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs / "a", test=0.8213)
    fake_run(runs / "b", RunStatus.INTERRUPTED, checkpoint=True)
    assert main(["runs", str(runs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 runs"
    headings = ["run", "status", "epochs", "best val. acc.", "test (95% CI)", "ECE", "wall", "note"]
    assert re.split(r"\s{2,}", lines[1]) == headings
    assert lines[2].split()[1:] == ["finished", "3/3", "75.00%", "82.13%", "(81.13-83.13%)", "2.00%", "10.0", "s"]
    assert lines[3].split()[:3] == [str(runs / "b"), "interrupted", "1/3"]
    assert lines[3].endswith(f"continue it: fmnist-ignite train --resume=auto --output-dir={runs / 'b'}")


def test_study_trials_and_seeds_are_found_and_links_never_followed(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "study" / "trial-0000", lr=1e-3)
    fake_run(runs / "study" / "trial-0001", lr=2e-3)
    (runs / "study" / "study.journal").write_text("")
    fake_run(runs / "fast-seeds" / "seed-0", seed=0)
    (runs / "fast-seeds" / "seeds_summary.json").write_text("{}")
    outside = fake_run(tmp_path / "elsewhere" / "run")
    (runs / "link").symlink_to(outside)
    (runs / "loop").symlink_to(runs / "loop")
    (runs / "hidden").mkdir()
    (runs / ".cache").mkdir()
    fake_run(runs / ".cache" / "not-a-run")
    rows = {str(Path(row.run).relative_to(runs)): row for row in list_runs(runs)}
    assert sorted(rows) == ["fast-seeds/seed-0", "link", "loop", "study/trial-0000", "study/trial-0001"]
    assert rows["link"].status == "damaged" and rows["link"].note.endswith(
        "a symbolic link to a directory, not followed (give its target to list it)"
    )
    assert rows["loop"].status == "damaged" and rows["loop"].note.endswith("a symbolic link loop, not followed")
    assert [row.status for row in list_runs(runs / "link")] == ["finished"]  # the link typed: followed


def test_a_hostile_run_directory_says_so_in_its_row_and_never_hangs_or_reads_too_much(tmp_path, capsys):
    runs = tmp_path / "runs"
    (runs / "fifo").mkdir(parents=True)
    os.mkfifo(runs / "fifo" / "summary.json")  # read from, it would block
    (runs / "huge").mkdir()
    with (runs / "huge" / "summary.json").open("wb") as huge:
        huge.truncate(100 << 20)  # 100 MB (sparse): refused by its size, unread
    (runs / "link").mkdir()
    (runs / "link" / "summary.json").symlink_to("/etc/passwd")
    (runs / "nested").mkdir()
    (runs / "nested" / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    (runs / "lock-link").mkdir()
    fake_run(runs / "lock-link" / "run", RunStatus.RUNNING, checkpoint=True)
    (runs / "lock-link" / "run" / ".lock").symlink_to("/dev/zero")  # never opened through
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    notes = {Path(row.run).name: (row.status, row.note) for row in list_runs(runs)}
    assert notes["fifo"] == ("damaged", f"{runs / 'fifo' / 'summary.json'}: not a regular file, so not a run's summary")
    assert notes["huge"] == (
        "damaged",
        f"{runs / 'huge' / 'summary.json'}: 104,857,600 bytes, more than a run's summary may be (16,777,216)",
    )
    assert notes["link"][0] == "damaged" and "a symbolic link, not a run's summary: refused" in notes["link"][1]
    assert notes["nested"] == ("damaged", f"{runs / 'nested' / 'summary.json'}: not a run's summary (nested too deep)")
    assert notes["run"][0] == "interrupted"


def test_names_and_reasons_cannot_forge_lines_or_escape_sequences(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs / "evil\nname\x1b[31m", RunStatus.FAILED, failure="boom\n\x1b[2Jfake line")
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and len(out.splitlines()) == 3
    assert "evil\\nname\\x1b[31m" in out and "boom \\x1b[2Jfake line" in out


def test_the_walk_is_bounded_in_depth_and_in_directories(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    fake_run(runs / "a" / "b" / "c" / "deep")
    fake_run(runs / "shallow")
    monkeypatch.setattr(listing, "MAX_DEPTH", 2)
    table = list_runs(runs)
    assert [Path(row.run).name for row in table] == ["shallow"]
    assert table.notes == [f"{runs / 'a' / 'b' / 'c'}: deeper than 2 levels, not looked into"]
    assert str(table).splitlines()[-1] == f"note: {runs / 'a' / 'b' / 'c'}: deeper than 2 levels, not looked into"
    monkeypatch.setattr(listing, "MAX_DIRECTORIES", 2)
    assert list_runs(runs).notes[-1].startswith("stopped after looking into 2 directories")


def test_the_table_shows_itself_in_a_notebook_as_pandas_and_as_a_page_linking_each_report(
    tmp_path, monkeypatch, capsys
):
    runs = tmp_path / "runs"
    fake_run(runs / "<b>bold</b> & co", lr=1e-3)
    fake_run(runs / "plain", lr=2e-3)
    (runs / "plain" / "report.html").write_text("<p>its report</p>")
    table = list_runs(runs)
    shown = table._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in shown and "<b>bold" not in shown
    pandas = pytest.importorskip("pandas")
    frame = table.to_pandas()
    assert isinstance(frame, pandas.DataFrame) and list(frame["lr"]) == [0.001, 0.002]
    (tmp_path / "pages").mkdir()
    assert main(["runs", str(runs), "--html", str(tmp_path / "pages" / "runs.html")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"Page: {tmp_path / 'pages' / 'runs.html'}"
    text = (tmp_path / "pages" / "runs.html").read_text()
    assert '<a href="../runs/plain/report.html">' in text  # relative: the page and the runs move together
    assert text.count("<a href=") == 1  # a run without a report is not linked
    assert "default-src 'none'" in text and "http://" not in text and "https://" not in text
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(FmnistError, match=r"^to_pandas\(\) needs pandas: pip install pandas$"):
        table.to_pandas()


def test_the_runs_command_imports_no_torch(tmp_path):
    fake_run(tmp_path / "runs" / "a")
    code = "import sys; from fmnist_ignite.cli.main import main; main(['runs', sys.argv[1]]); print('torch' in sys.modules)"  # noqa: E501
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "runs")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False"

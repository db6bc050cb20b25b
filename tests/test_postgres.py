"""A study in a real PostgreSQL server (Debian's postgresql, started here on 127.0.0.1 and stopped after):
two workers share its budget exactly, a SIGKILLed worker's trial is retried from its checkpoint, and the
database's trial rows are what the study table prints."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_config_file

optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")
psycopg = pytest.importorskip("psycopg", reason="the postgresql extra (psycopg) is not installed")

from postgres_server import postgres_server  # noqa: E402

SPACE = "lr: {low: 0.0005, high: 0.05, log: true}\noptimizer: [sgd]\n"  # accuracies that differ


@pytest.fixture(scope="module")
def postgres():
    """The URL of a database on a PostgreSQL server started for these tests; skipped with the reason where
    none can start."""
    try:
        with postgres_server() as url:
            yield url
    except RuntimeError as exc:
        pytest.skip(f"no PostgreSQL server: {exc}")


@pytest.fixture
def study(postgres, request):
    """A study name of its own on the shared server."""
    return re.sub(r"\W", "_", request.node.name)[:60]


def worker(tmp_path: Path, url: str, study: str, trials: int, *extra: str) -> subprocess.Popen:
    config = small_config_file(tmp_path, epochs=2)
    (tmp_path / "space.yaml").write_text(SPACE)
    return subprocess.Popen(
        [sys.executable, "-m", "fmnist_ignite", "tune", "--config", str(config), "--trials", str(trials)]
        + ["--space", str(tmp_path / "space.yaml"), "--output-dir", str(tmp_path / "study")]
        + ["--storage", url, "--study", study, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def rows(url: str, study: str) -> list[tuple[int, str, float | None]]:
    """The study's trials as the database holds them: number, state, value."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://") + "?connect_timeout=10"
    with psycopg.connect(dsn) as db:
        return db.execute(
            "SELECT t.number, t.state, v.value FROM trials t JOIN studies s USING (study_id) "
            "LEFT JOIN trial_values v USING (trial_id) WHERE s.study_name = %s ORDER BY t.number",
            (study,),
        ).fetchall()


def test_two_workers_share_the_budget_exactly_and_the_table_is_the_databases(tmp_path, postgres, study):
    workers = [worker(tmp_path, postgres, study, 5) for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    held = rows(postgres, study)
    study_trials = optuna.load_study(study_name=study, storage=postgres).get_trials()
    surplus = {t.number for t in study_trials if "surplus" in t.user_attrs}
    counted = [row for row in held if row[0] not in surplus]
    assert len(counted) == 5 and {state for _, state, _ in counted} <= {"COMPLETE", "PRUNED"}, held
    assert len({t.user_attrs["worker"] for t in study_trials if t.number not in surplus}) == 2  # both ran trials
    # a worker started after the study is done prints its table: a row per counted trial, as the database has it
    late = worker(tmp_path, postgres, study, 5)
    last = late.communicate(timeout=600)[0]
    assert late.returncode == 0 and "The study already has its 5 trials" in last, last
    cells = re.finditer(r"^(\d+) +(complete|pruned) +(\d\.\d{4}) \(", last, re.M)
    table = {int(m[1]): (m[2], m[3]) for m in cells}
    assert sorted(table) == [number for number, _, _ in counted], last
    for number, state, value in counted:
        shown_state, shown_accuracy = table[number]
        assert shown_state == state.lower()
        if state == "COMPLETE":
            assert shown_accuracy == f"{value:.4f}"
    assert len({value for _, _, value in counted}) > 1  # trials that differ: the values are not all one


def test_a_sigkilled_worker_s_trial_is_retried_from_its_checkpoint(tmp_path, postgres, study):
    first = worker(tmp_path, postgres, study, 2, "--heartbeat", "1", "--epochs", "12")
    checkpoint = tmp_path / "study" / "trial-0000" / "training_checkpoint_2.pt"
    while not checkpoint.exists() and first.poll() is None:  # the worker's own end bounds the wait
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert checkpoint.exists(), first.stdout.read()
    assert [state for _, state, _ in rows(postgres, study)] == ["RUNNING"]  # what the dead worker left
    time.sleep(3.5)  # the grace period: three heartbeats missed

    second = worker(tmp_path, postgres, study, 2, "--heartbeat", "1", "--epochs", "12")
    output = second.communicate(timeout=600)[0]
    assert second.returncode == 0, output
    assert "(continues trial-0000)" in output
    states = [state for _, state, _ in rows(postgres, study)]
    assert states[0] == "FAIL" and states.count("COMPLETE") == 2, states
    log = (tmp_path / "study" / "trial-0000" / "train.log").read_text()
    assert "Resuming from" in log and log.count("Training completed") == 1

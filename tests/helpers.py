"""What several test modules share (fixtures are in ``conftest.py``): the repository's root, and helpers
that start a script, pick a free port, stop a run at an iteration, and compare weights."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from ignite.engine import Engine, Events

ROOT = Path(__file__).resolve().parent.parent


def run_script(args: list[str], cwd: Path, data_dir: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with the data set at ``data_dir`` and one OpenMP thread, its output captured."""
    env = {**os.environ, "FMNIST_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def cli(
    *args: object, timeout: float = 300, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m fmnist_ignite ARGS`` (each argument as ``str``) with one OpenMP thread, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "fmnist_ignite", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env or {**os.environ, "OMP_NUM_THREADS": "1"},
    )


def wait_for(what: str, check: Callable[[], object], timeout: float = 300, every: float = 0.2) -> object:
    """``check()``'s first truthy value, or a failure naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def signal_at(iteration: int, signum: int = signal.SIGINT) -> Callable[[Engine], None]:
    """An extra handler that sends this process ``signum`` when the trainer completes ``iteration``."""

    def attach(trainer: Engine) -> None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=iteration), lambda e: os.kill(os.getpid(), signum))

    return attach


def final_weights(result) -> dict:
    """The weights of a run's last training checkpoint."""
    return torch.load(result.last_checkpoint, weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    """Two state dicts with the same keys and bitwise-equal tensors."""
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def scripted_evaluator(losses: list[float]) -> Engine:
    """An evaluator whose n-th run reports ``losses[n]`` (and accuracy 1 - loss) as its metrics."""
    evaluator = Engine(lambda engine, batch: None)
    scores = iter(losses)

    @evaluator.on(Events.COMPLETED)
    def set_metrics(engine: Engine) -> None:
        loss = next(scores)
        engine.state.metrics.update(loss=loss, accuracy=1 - loss)

    return evaluator


def load_study(study_dir: Path, name: str = "fmnist", storage: str | None = None):
    """The study ``fmnist-ignite tune`` keeps in ``study_dir`` (its journal by default), as Optuna loads it."""
    import optuna

    from fmnist_ignite.experiments.storage import open_storage, resolve_storage

    return optuna.load_study(study_name=name, storage=open_storage(resolve_storage(study_dir, storage), 30))


def runs_of_every_kind(root: Path, plots: bool = False) -> dict[str, Path]:
    """Small real runs under ``root/runs``, one of each kind a table of runs and a report page must show:
    finished, resumed (interrupted at iteration 13, then continued), stopped early, failed (a full disk at
    iteration 12), damaged (the finished run's files copied, its summary.json cut short) and tampered (the
    finished run's files copied, a symbolic link to /etc/passwd planted as its curves.png and its predictions
    file grown to 100 MB); by kind."""
    import errno
    import shutil

    from conftest import small_run_config

    from fmnist_ignite import train

    base = small_run_config(root).replace(plots=plots)
    kinds = ("finished", "resumed", "early", "failed", "damaged", "tampered")
    runs = {kind: root / "runs" / kind for kind in kinds}
    train(base.replace(output_dir=str(runs["finished"])))
    cut = base.replace(output_dir=str(runs["resumed"]), epochs=4)
    try:
        train(cut, extra_handlers=[signal_at(13)])
    except Exception as exc:  # noqa: BLE001 (TrainingInterrupted, as asked)
        assert "interrupted" in str(exc).lower() or "stopped" in str(exc).lower(), exc
    train(cut.replace(resume="auto"))
    early = base.replace(output_dir=str(runs["early"]), epochs=10, patience=1, monitor="accuracy", lr=0.05)
    assert train(early).stopped_early, "the synthetic data reaches 100% and stops improving"

    def disk_full_at_12(trainer: Engine) -> None:
        def fail(engine: Engine) -> None:
            raise OSError(errno.ENOSPC, "No space left on device", str(runs["failed"] / "metrics.csv"))

        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=12), fail)

    try:
        train(base.replace(output_dir=str(runs["failed"])), extra_handlers=[disk_full_at_12])
    except Exception:  # noqa: BLE001, S110 (the disk full said in one line, as asked)
        pass
    for kind in ("damaged", "tampered"):
        shutil.copytree(runs["finished"], runs[kind], ignore=shutil.ignore_patterns(".lock", "report.html"))
    summary = runs["damaged"] / "summary.json"
    summary.write_bytes(summary.read_bytes()[:200])
    (runs["tampered"] / "curves.png").unlink(missing_ok=True)
    (runs["tampered"] / "curves.png").symlink_to("/etc/passwd")
    with (runs["tampered"] / "test_predictions.npz").open("r+b") as big:
        big.truncate(100 << 20)  # sparse: 100 MB that take no room
    return runs

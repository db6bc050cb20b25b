"""What several test modules share (fixtures are in ``conftest.py``): the repository's root, and helpers
that start a script, pick a free port, stop a run at an iteration, and compare weights."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Engine, Events

ROOT = Path(__file__).resolve().parent.parent
QUIET = {"log": lambda line: None}  # train(config, **QUIET): no lines


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

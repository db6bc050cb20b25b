"""Real processes on the real data: killed with SIGKILL and resumed, stopped with SIGTERM, a NaN loss."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from helpers import ROOT, run_script, wait_for

# 10,000 training images (157 batches of 64): about a second an epoch, yet the real data and pipeline.
FAST = ["--val-size", "50000", "--seed", "3", "--log-interval", "50"]


def start_run(args, cwd, data_dir):
    command = [sys.executable, str(ROOT / "examples" / "run.py"), *FAST, *args]
    env = {**os.environ, "FMNIST_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_file(path: Path, proc) -> None:
    """Until ``path`` exists; the run ``proc`` must still be going meanwhile."""
    wait_for(str(path), lambda: path.exists() or proc.poll() is not None, every=0.05)
    assert path.exists(), proc.communicate()


def model_of(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model"]


def test_sigkill_then_resume_auto_equals_the_uninterrupted_run(real_data, tmp_path):
    args = ["--epochs", "3", "--patience", "1"]
    full = run_script([str(ROOT / "examples" / "run.py"), *FAST, *args, "--output-dir", "full"], tmp_path, real_data)
    assert full.returncode == 0, full.stderr

    proc = start_run([*args, "--output-dir", "cut"], tmp_path, real_data)
    wait_for_file(tmp_path / "cut" / "training_checkpoint_1.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    resumed = run_script(
        [str(ROOT / "examples" / "run.py"), *FAST, *args, "--output-dir", "cut", "--resume", "auto"],
        tmp_path,
        real_data,
    )
    assert resumed.returncode == 0, resumed.stderr
    lines = resumed.stdout.splitlines()
    if lines[0].startswith("Removed "):  # the kill cut a write short: its temporary file is gone now
        assert lines.pop(0).endswith("that interrupted writes left")
    assert lines[0].startswith("Resuming from ")
    assert not list((tmp_path / "cut").glob(".*.partial"))
    last = sorted((tmp_path / "full").glob("training_checkpoint_*.pt"))[-1].name
    a, b = model_of(tmp_path / "full" / last), model_of(tmp_path / "cut" / last)
    assert all(torch.equal(a[k], b[k]) for k in a)

    def test_line(stdout):
        return next(line for line in stdout.splitlines() if line.startswith("Test, "))

    assert test_line(full.stdout) == test_line(resumed.stdout)


def test_sigterm_saves_says_how_to_resume_and_exits_143(real_data, tmp_path):
    proc = start_run(["--epochs", "3", "--output-dir", "out"], tmp_path, real_data)
    wait_for_file(tmp_path / "out" / "training_checkpoint_1.pt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    lines = err.strip().splitlines()
    assert lines[0].startswith("interrupted by SIGTERM at epoch ") and "Traceback" not in err
    assert lines[1].startswith("To resume: python ") and lines[1].endswith("run.py --resume=auto --output-dir=out")
    assert list((tmp_path / "out").glob("interrupted_checkpoint_*.pt"))


def test_a_huge_learning_rate_stops_on_nan_with_a_clear_error(real_data, tmp_path):
    proc = run_script(
        [str(ROOT / "examples" / "run.py"), *FAST, "--lr", "1e6", "--output-dir", "out"],
        tmp_path,
        real_data,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: training stopped at epoch 1, iteration ") and "Traceback" not in proc.stderr
    assert "try a smaller --lr" in proc.stderr

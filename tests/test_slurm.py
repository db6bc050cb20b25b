"""On a real one-node SLURM cluster (tests/slurm/cluster.sh, started for this module): the job script
requeues itself on the time-limit warning and finishes bitwise equal to an uninterrupted run, a refused
requeue keeps the checkpoint, and `srun -n 2` trains data-parallel into one set of files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import small_config_file, small_run_config
from test_examples import ROOT

from fmnist_ignite import evaluate_checkpoint

CLUSTER = ROOT / "tests" / "slurm" / "cluster.sh"
JOB_SCRIPT = ROOT / "examples" / "slurm" / "train.sbatch"
TUNE_SCRIPT = ROOT / "examples" / "slurm" / "tune.sbatch"
# 10,000 training images: about a second an epoch on the real data, through the real pipeline.
FAST = ["--val-size", "50000", "--seed", "3", "--log-interval", "50", "--epochs", "3", "--no-plots"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The environment that reaches a SLURM cluster started for these tests; stopped afterwards."""
    directory = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(["bash", str(CLUSTER), "start", str(directory)], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.skip(started.stdout.strip() or started.stderr.strip())
    yield {**os.environ, "SLURM_CONF": str(directory / "slurm.conf")}
    subprocess.run(["bash", str(CLUSTER), "stop", str(directory)], check=True)


def slurm_command(env, *command) -> str:
    return subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=60).stdout


def job_field(env, job: str, name: str) -> str:
    return re.search(rf"\b{name}=(\S+)", slurm_command(env, "scontrol", "show", "job", job))[1]


def wait_until(condition, timeout=240, message="timed out"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def submit(env, cwd, *sbatch_options) -> str:
    return slurm_command(env, "sbatch", "--parsable", "-D", str(cwd), *sbatch_options, str(JOB_SCRIPT), *FAST).strip()


def job_env(slurm, real_data) -> dict:
    return {**slurm, "FMNIST_DATA_DIR": str(real_data), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}


def warn_of_time_limit_once_training(env, job: str, run_dir: Path) -> None:
    """Send USR1 to the job's shell and its Python, as SLURM's warning or `scancel --full` would."""
    wait_until(lambda: (run_dir / "training_checkpoint_1.pt").exists(), message=f"job {job} never trained an epoch")
    slurm_command(env, "scancel", "--signal=USR1", "--full", job)


def test_the_job_requeues_itself_on_the_warning_and_ends_bitwise_equal(slurm, real_data, tmp_path):
    env = job_env(slurm, real_data)
    job = submit(env, tmp_path)
    run_dir = tmp_path / f"runs/slurm-fmnist-{job}"
    warn_of_time_limit_once_training(env, job, run_dir)
    wait_until(lambda: job_field(env, job, "Restarts") == "1", message="the job did not requeue itself")
    # SLURM holds a requeued job back for about two minutes: start it at once, once it is back in the queue
    # and a second has passed (slurmd refuses a start in the same second as the revoked one).
    wait_until(lambda: job_field(env, job, "JobState") == "PENDING")
    time.sleep(2)
    slurm_command(env, "scontrol", "update", f"JobId={job}", "StartTime=now")
    wait_until(lambda: job_field(env, job, "JobState") in ("COMPLETED", "FAILED"))
    output = (tmp_path / f"slurm-fmnist-{job}.out").read_text()
    assert job_field(env, job, "JobState") == "COMPLETED", output
    assert job_field(env, job, "Restarts") == "1"

    lines = [line for line in output.splitlines() if line.startswith("fmnist-ignite: ")]
    assert [line.split(" at ")[0].split(", on ")[0] for line in lines] == [
        f"fmnist-ignite: job {job}, start 1",
        "fmnist-ignite: stopped by SIGUSR1",
        f"fmnist-ignite: job {job}, start 2",
        f"fmnist-ignite: job {job} finished",
    ]
    assert len(list(run_dir.glob("interrupted_checkpoint_*.pt"))) == 1  # one signal's worth, not two
    assert f"Resuming from {run_dir.relative_to(tmp_path)}/interrupted_checkpoint_" in output

    uninterrupted = subprocess.run(
        [sys.executable, "-m", "fmnist_ignite", "train", *FAST, "--output-dir", "whole"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    a = torch.load(tmp_path / "whole" / "training_checkpoint_3.pt", weights_only=True)["model"]
    b = torch.load(run_dir / "training_checkpoint_3.pt", weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_a_refused_requeue_keeps_the_checkpoint_and_says_how_to_continue(slurm, real_data, tmp_path):
    env = job_env(slurm, real_data)
    job = submit(env, tmp_path, "--no-requeue")
    run_dir = tmp_path / f"runs/slurm-fmnist-{job}"
    warn_of_time_limit_once_training(env, job, run_dir)
    wait_until(lambda: job_field(env, job, "JobState") not in ("RUNNING", "PENDING", "COMPLETING"))
    output = (tmp_path / f"slurm-fmnist-{job}.out").read_text()
    assert f"SLURM refused to requeue job {job}; the checkpoint is kept. " in output
    assert f"Continue with: RUN_DIR={run_dir.relative_to(tmp_path)} sbatch examples/slurm/train.sbatch " in output
    assert len(list(run_dir.glob("interrupted_checkpoint_*.pt"))) == 1


TRAIN_SCRIPT = "import json, sys; from fmnist_ignite import Config, train; train(Config(**json.loads(sys.argv[1])))"


def test_srun_with_two_tasks_trains_data_parallel_into_one_set_of_files(slurm, tmp_path):
    config = small_run_config(tmp_path).replace(epochs=2, lr=0.05)
    env = {**slurm, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["srun", "-n", "2", "-D", str(tmp_path), sys.executable, "-c", TRAIN_SCRIPT, json.dumps(config.__dict__)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Training completed") == 1  # one run of two processes, not two runs
    out = Path(config.output_dir)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["status"] == "completed"
    assert sorted(p.name for p in out.glob("*.pt")) == sorted(
        [Path(summary["checkpoints"]["best"]).name, "training_checkpoint_1.pt", "training_checkpoint_2.pt"]
    )
    alone = evaluate_checkpoint(summary["checkpoints"]["best"], config.data_dir, "cpu", verify=False)
    assert summary["test"]["accuracy"] == alone["accuracy"]
    assert summary["test"]["loss"] == pytest.approx(alone["loss"], rel=1e-5)


def test_the_job_script_outside_slurm_says_what_it_is_for_and_trains_in_the_foreground(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    proc = subprocess.run(
        ["bash", str(JOB_SCRIPT), "--lr", "-1"],
        cwd=tmp_path,
        env={**env, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "train.sbatch is a SLURM job script (sbatch examples/slurm/train.sbatch [flags]); "
        "outside SLURM it trains in the foreground",
        "error: learning rate must be > 0, got -1.0",
    ]


def test_a_two_task_array_on_one_study_completes_its_trials(slurm, tmp_path):
    optuna = pytest.importorskip("optuna", reason="the tune extra is not installed")
    config = small_config_file(tmp_path, epochs=4)
    (tmp_path / "space.yaml").write_text("lr: {low: 0.02, high: 0.2, log: true}\noptimizer: [sgd]\n")
    env = {**slurm, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    job = slurm_command(
        env,
        *("sbatch", "--parsable", "-D", str(tmp_path), "--array=0-1", "--cpus-per-task=1", str(TUNE_SCRIPT)),
        *("--config", str(config), "--trials", "6", "--space", "space.yaml"),
    ).strip()
    wait_until(lambda: not slurm_command(env, "squeue", "-h", "-j", job).strip(), message=f"array {job} never ended")
    outputs = [(tmp_path / f"slurm-fmnist-tune-{job}_{task}.out").read_text() for task in (0, 1)]
    for task, output in enumerate(outputs):
        assert f"fmnist-ignite: worker {job}_{task} finished" in output, output
    study = optuna.load_study(study_name="fmnist", storage=f"sqlite:///{tmp_path}/runs/tune-fmnist-tune/study.db")
    trials = [t for t in study.get_trials() if "surplus" not in t.user_attrs]
    assert len(trials) == 6 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both array tasks ran trials

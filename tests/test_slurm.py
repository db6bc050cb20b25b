"""On a real one-node SLURM cluster (tests/slurm/cluster.sh, started for this module): the job script
requeues itself on the time-limit warning and finishes bitwise equal to an uninterrupted run, a refused
requeue keeps the checkpoint, `srun -n 2` trains data-parallel into one set of files, the user's
--output-dir is where the job and the tuner array write, and a Python without the package ends the job
at once with one line."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import small_config_file, small_run_config
from helpers import ROOT, load_study

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


def wait_for_end(env, *jobs: str) -> None:
    """Until none of ``jobs`` (job ids; an array's id stands for all its tasks) is queued or running."""

    def ended() -> bool:
        return not slurm_command(env, "squeue", "-h", "-j", ",".join(jobs)).strip()

    wait_until(ended, message=f"jobs {', '.join(jobs)} never ended")


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
    continuing = f"RUN_DIR={run_dir.relative_to(tmp_path)} PYTHON={shlex.quote(sys.executable)} sbatch"
    assert f"Continue with: {continuing} examples/slurm/train.sbatch {shlex.join(FAST)}\n" in output
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
        "error: --lr -1.0: must be > 0",
    ]


def test_a_two_task_array_on_one_study_completes_its_trials(slurm, tmp_path):
    pytest.importorskip("optuna", reason="the tune extra is not installed")
    config = small_config_file(tmp_path, epochs=4)
    (tmp_path / "space.yaml").write_text("lr: {low: 0.02, high: 0.2, log: true}\noptimizer: [sgd]\n")
    env = {**slurm, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    job = slurm_command(
        env,
        *("sbatch", "--parsable", "-D", str(tmp_path), "--array=0-1", "--cpus-per-task=1", str(TUNE_SCRIPT)),
        *("--config", str(config), "--trials", "6", "--space", "space.yaml"),
    ).strip()
    wait_for_end(env, job)
    outputs = [(tmp_path / f"slurm-fmnist-tune-{job}_{task}.out").read_text() for task in (0, 1)]
    for task, output in enumerate(outputs):
        assert f"fmnist-ignite: worker {job}_{task} finished" in output, output
    study = load_study(tmp_path / "runs/tune-fmnist-tune")
    trials = [t for t in study.get_trials() if "surplus" not in t.user_attrs]
    assert len(trials) == 6 and {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both array tasks ran trials


def test_the_job_trains_in_the_output_dir_the_user_gives_in_any_form(slurm, tmp_path):
    config = small_config_file(tmp_path, epochs=2)
    env = {**slurm, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    forms = {  # how the user names the directory -> the directory
        ("--output-dir", "spaced dir"): "spaced dir",  # RUN_DIR below gives way to it
        ("--output-dir=joined",): "joined",
    }
    jobs = {}
    for flags, directory in forms.items():
        submit_env = {**env, "RUN_DIR": "from-env"} if directory == "spaced dir" else env
        command = ("sbatch", "--parsable", "-D", str(tmp_path), "--cpus-per-task=1", str(JOB_SCRIPT))
        jobs[directory] = slurm_command(submit_env, *command, "--config", str(config), *flags).strip()
    wait_for_end(env, *jobs.values())
    for directory, job in jobs.items():
        output = (tmp_path / f"slurm-fmnist-{job}.out").read_text()
        assert job_field(env, job, "JobState") == "COMPLETED", output
        assert output.startswith(f"fmnist-ignite: job {job}, start 1, on "), output
        assert output.splitlines()[0].endswith(f": {directory}")
        run_dir = tmp_path / directory
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert json.loads((run_dir / "config.json").read_text())["output_dir"] == directory
        assert {"training_checkpoint_1.pt", "training_checkpoint_2.pt"} <= {p.name for p in run_dir.glob("*.pt")}
    assert not (tmp_path / "runs").exists() and not (tmp_path / "from-env").exists()


def test_a_tuner_array_works_in_the_output_dir_the_user_gives(slurm, tmp_path):
    pytest.importorskip("optuna", reason="the tune extra is not installed")
    config = small_config_file(tmp_path, epochs=1)
    (tmp_path / "space.yaml").write_text("lr: {low: 0.02, high: 0.2, log: true}\noptimizer: [sgd]\n")
    env = {**slurm, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "STUDY_DIR": "from-env"}
    job = slurm_command(
        env,
        *("sbatch", "--parsable", "-D", str(tmp_path), "--array=0", "--cpus-per-task=1", str(TUNE_SCRIPT)),
        *("--config", str(config), "--trials", "1", "--space", "space.yaml", "--output-dir=my study"),
    ).strip()
    wait_for_end(env, job)
    output = (tmp_path / f"slurm-fmnist-tune-{job}_0.out").read_text()
    assert output.splitlines()[0].endswith(": my study"), output
    assert f"fmnist-ignite: worker {job}_0 finished" in output, output
    assert (tmp_path / "my study" / "study.journal").is_file()
    trial = json.loads((tmp_path / "my study" / "trial-0000" / "summary.json").read_text())
    assert trial["status"] == "completed"
    assert not (tmp_path / "runs").exists() and not (tmp_path / "from-env").exists()


def test_a_python_without_the_package_ends_the_job_at_once_with_one_line(slurm, tmp_path):
    bare = tmp_path / "bare"  # a Python of another environment: the standard library only
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    bare_python = bare / "bin" / "python"
    assert subprocess.run([bare_python, "-c", "import torch"], capture_output=True).returncode != 0
    env = {k: v for k, v in slurm.items() if k != "PYTHONPATH"}
    host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
    flags = ["--epochs", "1", "--output-dir", "never made"]
    train = "nothing was trained: set PYTHON to the Python of the environment that has fmnist-ignite installed"
    tune = "no trial ran: set PYTHON to the Python of the environment that has fmnist-ignite[tune] installed"
    bare = f"PYTHON={bare_python} ({bare_python}) cannot import fmnist_ignite, ignite, torch"
    cases = [  # PYTHON, the script, the line its job writes up to the command to submit instead
        (bare_python, JOB_SCRIPT, f"{bare}, so {train}"),
        ("/usr/bin/false", JOB_SCRIPT, f"PYTHON=/usr/bin/false (/usr/bin/false) failed (exit code 1), so {train}"),
        ("no-such-python", JOB_SCRIPT, f"PYTHON=no-such-python is not a command on {host}, so {train}"),
        (bare_python, TUNE_SCRIPT, f"{bare}, optuna, so {tune}"),
    ]
    jobs = []  # the job, the task, its output file and the flags given
    for python, script, _ in cases:
        sbatch = ("sbatch", "--parsable", "-D", str(tmp_path), "--cpus-per-task=1")
        if script == TUNE_SCRIPT:
            given = ["--trials", "1", *flags]
            job = slurm_command({**env, "PYTHON": str(python)}, *sbatch, "--array=0", script, *given).strip()
            jobs.append((job, f"{job}_0", f"slurm-fmnist-tune-{job}_0.out", given))
        else:
            job = slurm_command({**env, "PYTHON": str(python)}, *sbatch, script, *flags).strip()
            jobs.append((job, job, f"slurm-fmnist-{job}.out", flags))
    wait_for_end(env, *(job for job, *_ in jobs))
    end = "), or activate that environment first"
    for (_, task, output, given), (_, script, start) in zip(jobs, cases, strict=False):
        lines = (tmp_path / output).read_text().splitlines()
        assert len(lines) == 1, lines
        start = f"fmnist-ignite: {start} ("
        assert lines[0].startswith(start) and lines[0].endswith(end), lines[0]
        instead = ["PYTHON=/path/to/.venv/bin/python", "sbatch", f"examples/slurm/{script.name}", *given]
        assert shlex.split(lines[0][len(start) : -len(end)]) == instead
        assert (job_field(env, task, "JobState"), job_field(env, task, "ExitCode")) == ("FAILED", "2:0")
    assert not (tmp_path / "never made").exists() and not (tmp_path / "runs").exists()


def test_the_readmes_two_task_command_fits_the_node_and_trains_data_parallel(slurm, tmp_path):
    """The README's two-task command (its sbatch options and flags, with small data and one epoch added)
    runs on the test cluster's node through the job script's srun; without its --cpus-per-task=1, two
    tasks of the script's 2 CPUs never fit a node of fewer than 4 CPUs (this machine's has 2)."""
    readme = re.sub(r" *\\\n *", " ", (ROOT / "docs" / "slurm.md").read_text())  # a continued line joined
    pattern = r"^PYTHON=\.venv/bin/python sbatch (--ntasks=2 .*?) examples/slurm/train\.sbatch (.*)$"
    command = re.search(pattern, readme, re.M)
    assert command, "the README shows no two-task sbatch command"
    options, flags = command[1].split(), [*command[2].split(), "--config", str(small_config_file(tmp_path))]
    env = {**slurm, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    sbatch = ("sbatch", "--parsable", "-D", str(tmp_path))
    if int(slurm_command(env, "sinfo", "-h", "-N", "-o", "%c").split()[0]) < 4:
        unfit = slurm_command(env, *sbatch, "--ntasks=2", str(JOB_SCRIPT), *flags).strip()
        wait_until(lambda: job_field(env, unfit, "Reason") == "PartitionConfig", timeout=30)
        assert job_field(env, unfit, "JobState") == "PENDING"
        slurm_command(env, "scancel", unfit)
    job = slurm_command(env, *sbatch, *options, str(JOB_SCRIPT), *flags, "--epochs", "1", "--output-dir", "two").strip()
    wait_for_end(env, job)
    output = (tmp_path / f"slurm-fmnist-{job}.out").read_text()
    assert job_field(env, job, "JobState") == "COMPLETED", output
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["status"] == "completed"
    assert output.count("Training completed") == 1  # one run of two processes, not two runs

"""What a run touches outside its directory on the command line: its terminal (closed, a pipe that stops
reading, a full stdout, an encoding without the characters printed), the commands it prints, and the home
directory a settings file names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import small_config_file
from helpers import assert_same_weights, final_weights, signal_at

from fmnist_ignite import TrainingInterrupted, train
from fmnist_ignite.config.files import read_config_file
from fmnist_ignite.errors import shell_command
from fmnist_ignite.ui.console import SafeStream

BIN = str(Path(sys.executable).parent)  # fmnist-ignite, as the environment installed it


def command_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "OMP_NUM_THREADS": "1", **extra}


def status_of(run: Path) -> str:
    return json.loads((run / "summary.json").read_text())["status"]


def test_sighup_saves_a_checkpoint_says_so_and_resumes_bitwise(small_config, tmp_path):
    config = small_config.replace(dropout=0.2)
    full = train(config.replace(output_dir=str(tmp_path / "full")))
    cut = config.replace(output_dir=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted) as info:  # the terminal of a login node closed
        train(cut, extra_handlers=[signal_at(4, signal.SIGHUP)])
    assert info.value.exit_code == 129 and "interrupted by SIGHUP at epoch 1, iteration 4" in str(info.value)
    assert info.value.checkpoint.name == "interrupted_checkpoint_4.pt" and status_of(tmp_path / "cut") == "interrupted"
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # put back
    resumed = train(cut.replace(resume="auto"))
    assert_same_weights(final_weights(resumed), final_weights(full))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["head -3", "/dev/full", "ascii"])
def test_what_stdout_cannot_take_never_fails_the_run(tmp_path, case):
    config = small_config_file(tmp_path, log_interval=1)
    run = tmp_path / ("runs/é-ü" if case == "ascii" else "run")
    command = ["fmnist-ignite", "train", "--config", str(config), f"--output-dir={run}"]
    env = command_env(PYTHONIOENCODING="ascii" if case == "ascii" else "utf-8")
    if case == "head -3":  # the reader goes away after three lines
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 0 and all(lines)
    else:
        with open("/dev/full" if case == "/dev/full" else tmp_path / "out.txt", "w") as out:
            done = subprocess.run(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.PIPE, timeout=300)
        err = done.stderr.decode()
        assert done.returncode == 0, err
    assert status_of(run) == "completed"
    assert "Traceback" not in err and "could not write" not in err and "free some space" not in err
    if case == "/dev/full":  # said once, naming stdout
        assert err.count("warning: cannot write to standard output (No space left on device); the run goes on") == 1
    elif case == "ascii":
        escaped = str(run).encode("ascii", "backslashreplace").decode()  # runs/\xe9-\xfc
        assert f"Checkpoints in {escaped}" in (tmp_path / "out.txt").read_text()
    else:
        assert err == ""


@pytest.mark.slow
def test_the_printed_resume_command_runs_as_printed_for_an_output_dir_starting_with_a_dash(tmp_path):
    config = small_config_file(tmp_path, epochs=20, log_interval=1)
    env = command_env(PYTHONUNBUFFERED="1")
    command = ["fmnist-ignite", "train", "--config", str(config), "--output-dir=-lead"]
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("loss:"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    printed = err.split("To resume: ", 1)[1].strip()
    assert printed == "fmnist-ignite train --resume=auto --output-dir=-lead"
    again = subprocess.run(["bash", "-c", printed], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "Resuming from" in again.stdout and status_of(tmp_path / "-lead") == "completed"


def test_printed_commands_quote_each_word_and_never_start_an_operand_with_a_dash():
    assert shell_command("fmnist-ignite evaluate", "-x/best model.pt") == "fmnist-ignite evaluate './-x/best model.pt'"
    assert shell_command("fmnist-ignite train", output_dir="a b", resume="auto") == (
        "fmnist-ignite train '--output-dir=a b' --resume=auto"
    )
    assert shell_command("python examples/run.py", output_dir="$(rm -rf ~)") == (
        "python examples/run.py '--output-dir=$(rm -rf ~)'"
    )


def test_a_tilde_in_a_settings_file_is_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = small_config_file(tmp_path, output_dir="~/runs/x", resume="~/runs/x/interrupted_checkpoint_4.pt")
    settings = read_config_file(path)
    assert settings["output_dir"] == str(tmp_path / "home" / "runs" / "x")
    assert settings["resume"] == str(tmp_path / "home" / "runs" / "x" / "interrupted_checkpoint_4.pt")
    assert settings["data_dir"].startswith(str(tmp_path))  # the rest as written


class Failing:
    """A stream whose writes fail as a closed pipe or a full device's do."""

    def __init__(self, error: OSError) -> None:
        self.error, self.encoding = error, "utf-8"

    def write(self, text: str) -> int:
        raise self.error

    def flush(self) -> None:
        raise self.error


def test_a_safe_stream_says_a_failed_write_once_and_a_closed_pipe_never(capsys):
    full = SafeStream(Failing(OSError(28, "No space left on device")), "standard output")
    for _ in range(3):
        assert full.write("line\n") == 5
        full.flush()
    assert capsys.readouterr().err.count("cannot write to standard output (No space left on device)") == 1
    closed = SafeStream(Failing(BrokenPipeError(32, "Broken pipe")), "standard output")
    closed.write("line\n")
    assert capsys.readouterr().err == ""

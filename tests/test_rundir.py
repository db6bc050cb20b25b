"""Run directories you can trust: one run at a time, a resume continues the same run, durable files."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import small_run_config, without_times
from helpers import ROOT, assert_same_weights, final_weights, signal_at

import fmnist_ignite.run.training as finish_module
import fmnist_ignite.run.training as training_module
from fmnist_ignite import (
    DurableDiskSaver,
    FmnistError,
    TrainingInterrupted,
    claim_run_directory,
    recipe,
    train,
    write_durably,
)
from fmnist_ignite.cli.main import train_main as main


def contents(directory: Path) -> dict:
    return {path.name: path.read_bytes() for path in directory.iterdir()}


# ------------------------------------------------------------------------------------------ one run at a time


def test_a_second_claim_on_a_claimed_directory_is_refused_naming_the_holder(small_config):
    first = claim_run_directory(small_config)
    try:
        with pytest.raises(FmnistError, match=rf"out is in use by another run \(pid {os.getpid()}\)"):
            claim_run_directory(small_config.replace(resume="auto"))
    finally:
        first.release()
    claim_run_directory(small_config.replace(resume="auto")).release()  # free again once released


@pytest.mark.slow  # a subprocess
def test_a_second_process_is_refused_while_the_first_runs_and_allowed_once_it_is_killed(tmp_path):
    config = small_run_config(tmp_path)
    out = Path(config.output_dir)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    long_run = json.dumps({**config.__dict__, "epochs": 100_000, "log_interval": 1000})
    first = subprocess.Popen(  # the synthetic data needs verify_data=False, which only the library sets
        [sys.executable, "-c", f"import json; from fmnist_ignite import *; train(Config(**json.loads({long_run!r})))"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "training_checkpoint_1.pt").exists():  # claimed, set up and training
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        second = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples" / "run.py"),
                "--data-dir",
                config.data_dir,
                "--output-dir",
                str(out),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert second.stderr == (
            f"error: {out} is in use by another run (pid {first.pid}): "
            "wait for it to end, or choose another --output-dir\n"
        )
        assert first.poll() is None  # the first run goes on, untouched
        saved = json.loads((out / "config.json").read_text())
        assert saved["epochs"] == 100_000 and saved["verify_data"] is False  # the first run's, not the second's
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL
    for path in out.glob("training_checkpoint_*.pt"):  # every checkpoint it left is whole
        assert torch.load(path, weights_only=True)["trainer"]["iteration"] >= 10
    # The OS released the killed run's lock: a resume into the directory may claim it.
    run = claim_run_directory(config.replace(resume="auto"))
    run.release()
    assert run.resume_from is not None and run.resume_from.name.startswith("training_checkpoint_")


# ------------------------------------------------------------------------------ a resume continues the same run


@pytest.fixture
def fast_config(small_config):
    """The `fast` recipe (AdamW, one-cycle, dropout, label smoothing) on the small synthetic data."""
    small = {
        k: getattr(small_config, k) for k in ("data_dir", "output_dir", "verify_data", "val_size", "eval_batch_size")
    }
    return recipe("fast", **small, batch_size=50, epochs=3, progress=False, plots=False, device="cpu")


def test_a_resume_without_flags_continues_the_saved_run_bitwise(fast_config, tmp_path, capsys):
    full = train(fast_config.replace(output_dir=str(tmp_path / "full")))
    cut = fast_config.replace(output_dir=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted):
        train(cut, extra_handlers=[signal_at(13)])  # mid-epoch 2
    capsys.readouterr()  # the lines of the runs above
    assert main(["--resume", "auto", "--output-dir", cut.output_dir]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Resuming from {tmp_path / 'cut' / 'interrupted_checkpoint_13.pt'}\n")
    resumed = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert resumed["config"]["optimizer"] == "adamw" and resumed["config"]["scheduler"] == "onecycle"
    last = Path(resumed["checkpoints"]["last"])
    assert_same_weights(torch.load(last, weights_only=True)["model"], final_weights(full))
    assert without_times(resumed["history"]) == without_times(full.history)


@pytest.mark.parametrize(
    "flags, difference",
    [(["--batch-size", "128"], "batch_size: 50 -> 128"), (["--lr", "0.1", "--seed", "4"], "lr: 0.002 -> 0.1")],
)
def test_a_resume_that_changes_the_result_is_refused_listing_each_difference(fast_config, capsys, flags, difference):
    with pytest.raises(TrainingInterrupted):
        train(fast_config, extra_handlers=[signal_at(13)])
    out = Path(fast_config.output_dir)
    before = contents(out)
    assert main(["--resume", "auto", "--output-dir", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {out / 'interrupted_checkpoint_13.pt'} is from a run")
    assert difference in err and ("seed: 0 -> 4" in err) == ("--seed" in flags)
    assert contents(out) == before  # nothing written


def test_flags_that_do_not_change_the_result_may_differ_on_resume(small_config, capsys):
    train(small_config.replace(epochs=1))
    argv = ["--resume", "auto", "--output-dir", small_config.output_dir, "--epochs", "2", "--threads", "1"]
    assert main([*argv, "--log-interval", "1000", "--no-plots"]) == 0
    assert json.loads((Path(small_config.output_dir) / "config.json").read_text())["epochs"] == 2


def test_the_saved_configuration_is_in_config_json_and_in_every_checkpoint(small_config):
    result = train(small_config.replace(epochs=1))
    saved = json.loads((result.output_dir / "config.json").read_text())
    assert saved == {**small_config.replace(epochs=1).__dict__, "resume": None}
    assert torch.load(result.last_checkpoint, weights_only=True)["config"] == saved


# ------------------------------------------------------------------------------------ damaged checkpoints


def test_resume_auto_skips_a_damaged_newest_checkpoint_and_keeps_it(small_config, tmp_path, said):
    full = train(small_config.replace(epochs=2, output_dir=str(tmp_path / "full")))
    cut = small_config.replace(epochs=2)
    first = train(cut)
    newest = first.last_checkpoint
    damaged = newest.read_bytes()[:1000]
    newest.write_bytes(damaged)
    said.clear()
    resumed = train(cut.replace(resume="auto"))
    assert said()[0].startswith(f"Skipped {newest}: truncated or corrupt checkpoint")
    assert said()[0].endswith(f"; kept as {newest.name}.damaged")
    assert said()[1] == f"Resuming from {newest.parent / 'training_checkpoint_1.pt'}"
    assert newest.with_name(newest.name + ".damaged").read_bytes() == damaged  # the evidence is kept
    assert_same_weights(final_weights(resumed), final_weights(full))


def test_resume_auto_with_every_checkpoint_damaged_is_one_error(small_config):
    result = train(small_config.replace(epochs=2))
    for path in result.output_dir.glob("training_checkpoint_*.pt"):
        path.write_bytes(b"garbage")
    before = contents(result.output_dir)
    with pytest.raises(FmnistError, match=f"no intact checkpoint to resume from in {result.output_dir}: "):
        train(small_config.replace(resume="auto"))
    assert contents(result.output_dir) == before


def test_resume_auto_where_a_kill_left_only_a_best_model_starts_again_and_keeps_it(small_config, capsys):
    """A SIGKILL after the epoch's best model was written and before its training checkpoint: the directory must
    not be refused for good (a SLURM job would fail on every requeue)."""
    result = train(small_config.replace(epochs=1))
    for path in result.output_dir.glob("training_checkpoint_*.pt"):
        path.unlink()
    summary = json.loads((result.output_dir / "summary.json").read_text())  # as the kill left it: still running
    (result.output_dir / "summary.json").write_text(json.dumps({**summary, "status": "running", "epochs_done": 0}))
    (best,) = result.output_dir.glob("best_model_*.pt")
    kept = best.read_bytes()
    capsys.readouterr()  # the first run's lines
    assert main(["--resume", "auto", "--output-dir", str(result.output_dir), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"No training checkpoint in {result.output_dir}: its run was stopped")
    assert (result.output_dir / f"{best.name}.orphaned").read_bytes() == kept
    assert sorted(p.name for p in result.output_dir.glob("training_checkpoint_*.pt")) == ["training_checkpoint_1.pt"]


def test_sigterm_after_training_says_where_the_weights_are_and_marks_the_summary(small_config, monkeypatch, said):
    scored = finish_module.per_class_accuracy

    def sigterm_while_scoring(confusion):
        os.kill(os.getpid(), signal.SIGTERM)
        return scored(confusion)

    monkeypatch.setattr(finish_module, "per_class_accuracy", sigterm_while_scoring)
    with pytest.raises(TrainingInterrupted) as info:
        train(small_config.replace(epochs=1))
    assert "Training completed" in said() and info.value.exit_code == 143 and info.value.checkpoint is None
    out = Path(small_config.output_dir)
    best = next(out.glob("best_model_*.pt"))
    said_first = f"interrupted by SIGTERM after training, while scoring the test set: the trained weights are in {best}"
    assert str(info.value) == f"{said_first}; score them with: evaluate_checkpoint('{best}')"
    assert info.value.on_command_line() == f"{said_first}; score them with: fmnist-ignite evaluate {best}"
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers are put back
    claim_run_directory(small_config.replace(resume="auto")).release()  # and the directory released


def test_ctrl_c_while_loading_the_data_is_one_line_and_exit_130(small_config, monkeypatch):
    load = training_module.get_data_loaders

    def ctrl_c_while_loading(*args):
        os.kill(os.getpid(), signal.SIGINT)
        return load(*args)

    monkeypatch.setattr(training_module, "get_data_loaders", ctrl_c_while_loading)
    with pytest.raises(
        TrainingInterrupted, match="^interrupted by SIGINT before training started; nothing was trained$"
    ):
        train(small_config)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    claim_run_directory(small_config).release()  # the directory was released, and holds no checkpoint


# ------------------------------------------------------------------------------------------- durable files


@pytest.fixture
def fsyncs(monkeypatch):
    """Every os.fsync call as (is a directory, path of the descriptor)."""
    calls, real = [], os.fsync

    def recording_fsync(fd):
        calls.append((stat.S_ISDIR(os.fstat(fd).st_mode), os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return calls


def test_write_durably_fsyncs_the_file_and_its_directory(tmp_path, fsyncs):
    write_durably(tmp_path / "summary.json", "{}\n")
    assert (tmp_path / "summary.json").read_text() == "{}\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == 0o666 & ~umask  # not the temporary's 0600
    (is_dir, first), (last_is_dir, last) = fsyncs
    assert not is_dir and Path(first).parent == tmp_path and Path(first).name.startswith(".summary.json.")
    assert last_is_dir and last == str(tmp_path)


def test_the_disk_saver_fsyncs_the_checkpoint_and_its_directory(tmp_path, fsyncs):
    DurableDiskSaver(tmp_path)({"weights": torch.ones(3)}, "model.pt")
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weights"], torch.ones(3))
    assert [is_dir for is_dir, _ in fsyncs] == [False, True] and fsyncs[1][1] == str(tmp_path)


def test_a_run_fsyncs_every_file_it_keeps(small_config, fsyncs):
    train(small_config.replace(epochs=1))
    names = {Path(path).name for is_dir, path in fsyncs if not is_dir}
    for prefix in (".config.json.", ".summary.json.", ".metrics.csv.", ".training_checkpoint_1.pt.", ".best_model_1_"):
        assert any(name.startswith(prefix) and name.endswith(".partial") for name in names), prefix
    assert sum(is_dir for is_dir, _ in fsyncs) == sum(not is_dir for is_dir, _ in fsyncs)


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    (tmp_path / "summary.json").write_text("old\n")
    DurableDiskSaver(tmp_path)({"weights": torch.zeros(2)}, "model.pt")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_durably(tmp_path / "summary.json", "new\n")
    with pytest.raises(OSError):
        DurableDiskSaver(tmp_path)({"weights": torch.ones(2)}, "model.pt")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.pt", "summary.json"]
    assert (tmp_path / "summary.json").read_text() == "old\n"
    assert torch.equal(torch.load(tmp_path / "model.pt", weights_only=True)["weights"], torch.zeros(2))

"""The second half of issue 25's table: kept predictions, studies, full and read-only disks, memory, ranges, a
stopped worker, file names and flags, each a clear line and a non-zero exit, never a traceback or a loss."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import small_config_file, small_run_config
from helpers import cli, free_port, load_study

from fmnist_ignite import FmnistError, TuneSettings, train
from fmnist_ignite.cli.main import main

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    a = train(small_run_config(root).replace(epochs=1, output_dir=str(root / "a"))).output_dir
    b = train(small_run_config(root).replace(epochs=1, lr=0.01, output_dir=str(root / "b"))).output_dir
    return a, b


def npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


SHA = np.array("ab" * 32)


@pytest.mark.parametrize(
    "make, expected",
    [
        (
            lambda d: npz(
                d / "p.npz", predicted=np.zeros(0, np.uint8), labels=np.zeros(0, np.uint8), test_set_sha256=SHA
            ),
            "(no images)",
        ),
        (
            lambda d: npz(
                d / "p.npz", predicted=np.zeros(5, np.uint8), labels=np.zeros((5, 1), np.uint8), test_set_sha256=SHA
            ),
            "labels: uint8 of shape (5, 1)",
        ),
        (
            lambda d: npz(
                d / "p.npz", predicted=np.array(["cat"] * 5), labels=np.zeros(5, np.uint8), test_set_sha256=SHA
            ),
            "predicted: <U3 of shape (5,)",
        ),
        (
            lambda d: npz(
                d / "p.npz", predicted=np.zeros((5, 2), np.uint8), labels=np.zeros(5, np.uint8), test_set_sha256=SHA
            ),
            "predicted: uint8 of shape (5, 2)",
        ),
        (
            lambda d: npz(
                d / "p.npz", predicted=np.full(5, 12, np.uint8), labels=np.zeros(5, np.uint8), test_set_sha256=SHA
            ),
            "a class outside 0-9",
        ),
        (
            lambda d: npz(
                d / "p.npz", predicted=np.zeros(5, object), labels=np.zeros(5, np.uint8), test_set_sha256=SHA
            ),
            "pickled objects are never loaded",
        ),
        (lambda d: (d / "p.npz").write_bytes(b"not a zip") and d / "p.npz", "(not a zip archive)"),
    ],
    ids=["empty", "labels-n-by-1", "string-predictions", "2d-predictions", "class-12", "objects", "not-a-zip"],
)
def test_compare_refuses_a_damaged_predictions_file_in_one_line(two_runs, tmp_path, make, expected):
    bad = make(tmp_path)
    line = one_line(cli("compare", two_runs[0], bad))
    assert line.startswith(f"error: {bad}: ") and expected in line, line


def test_compare_refuses_a_zip_bomb_by_its_declared_size_without_inflating_it(two_runs, tmp_path):
    bomb = tmp_path / "bomb.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (400_000_000,)})
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:  # 400 MB of zeros in 400 kB
        with archive.open("predicted.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            for _ in range(400):
                member.write(bytes(1_000_000))
        for name, array in (("labels", np.zeros(10, np.uint8)), ("test_set_sha256", SHA)):
            small = io.BytesIO()
            np.save(small, array)
            archive.writestr(f"{name}.npy", small.getvalue())
    assert bomb.stat().st_size < 2_000_000
    code = (
        "import sys, resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"  # well below what inflating it would take
        "from fmnist_ignite.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "compare", str(two_runs[0]), str(bomb)], capture_output=True, text=True, env=ENV
    )
    line = one_line(proc)
    assert "(it would inflate to 400,000," in line and "bytes; at most 67,108,864)" in line, line


def test_compare_into_a_closed_pipe_ends_quietly(two_runs):
    proc = subprocess.run(
        f"{sys.executable} -m fmnist_ignite compare {two_runs[0]} {two_runs[1]} | head -c 10",
        shell=True,
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert proc.stdout == "Compared o" and proc.stderr == ""


def test_compare_of_a_run_without_predictions_or_checkpoints_advises_what_can_work(two_runs, tmp_path):
    empty = tmp_path / "empty-run"
    empty.mkdir()
    line = one_line(cli("compare", two_runs[0], empty))
    assert line.endswith("it has no checkpoint to score again from: train it again")


# --------------------------------------------------------------------------------------------------- studies


def test_keep_trials_never_removes_a_directory_a_study_row_names_outside_the_study(small_config, tmp_path):
    optuna = pytest.importorskip("optuna")
    from fmnist_ignite.experiments.storage import resolve_storage
    from fmnist_ignite.experiments.study import open_study
    from fmnist_ignite.experiments.tuning import tune

    study_dir, outside = tmp_path / "study", tmp_path / "precious"
    outside.mkdir()
    (outside / "thesis.tex").write_text("years of work")
    own = study_dir / "trial-0001"
    own.mkdir(parents=True)
    (own / "train.log").write_text("trial 1's")
    storage = f"sqlite:///{study_dir / 'study.db'}"
    study = open_study(resolve_storage(study_dir, storage), "fmnist", heartbeat=30)
    space = {"lr": {"low": 1e-4, "high": 1e-1, "log": True}}
    for value in (0.9, 0.5):  # rows a shared or copied database may hold
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.COMPLETE,
                value=value,
                params={"lr": 0.01},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)},
                user_attrs={"output_dir": str(outside), "config": {"lr": 0.01}, "epochs": 1},
            )
        )
    config = small_config.replace(output_dir=str(study_dir))
    tune(config, TuneSettings(2, storage=storage, keep_trials="best"), space)
    assert (outside / "thesis.tex").read_text() == "years of work"
    assert not own.exists()  # the study's own trial-0001, named from the trial's number, is what goes


def test_a_study_database_locked_beyond_its_timeout_is_one_line_and_the_trial_goes_back(
    small_config, tmp_path, monkeypatch
):
    pytest.importorskip("optuna")
    import sqlite3

    from ignite.engine import Events

    from fmnist_ignite.experiments import storage as storage_module
    from fmnist_ignite.experiments import tuning

    monkeypatch.setattr(storage_module, "SQLITE_TIMEOUT_S", 1)
    study_dir = tmp_path / "study"
    holder: list[sqlite3.Connection] = []
    real_training = tuning.Training

    class LockingTraining(real_training):  # another process takes the database in the trial's first epoch
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)

            @self.trainer.on(Events.ITERATION_COMPLETED(once=2))
            def lock(engine):
                if not holder:
                    holder.append(sqlite3.connect(study_dir / "study.db", isolation_level=None))
                    holder[0].execute("BEGIN EXCLUSIVE")

    monkeypatch.setattr(tuning, "Training", LockingTraining)
    config = small_config.replace(epochs=2, output_dir=str(study_dir))
    space = {"lr": {"low": 1e-3, "high": 1e-2}}
    with pytest.raises(FmnistError, match=r"^this worker stopped: .*database is locked.*; trial 0 goes back to the "):
        sqlite = TuneSettings(1, storage=f"sqlite:///{study_dir / 'study.db'}")
        tuning.tune(config, sqlite, space)
    holder[0].close()
    monkeypatch.setattr(tuning, "Training", real_training)
    result = tuning.tune(config, TuneSettings(1, heartbeat=1), space)
    states = [t.state.name for t in result.study.get_trials()]
    assert states.count("COMPLETE") == 1, states


# ------------------------------------------------------------------------------------- full and read-only disks


@pytest.fixture
def mounted(tmp_path):
    """A tmpfs mounted with the given options (root only; else the test is skipped)."""
    mounts = []

    def mount(options: str) -> Path:
        point = tmp_path / f"disk{len(mounts)}"
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or 'not root'}")
        mounts.append(point)
        return point

    yield mount
    for point in reversed(mounts):
        if subprocess.run(["umount", str(point)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(point)], check=False)  # still busy: detached now, freed when idle


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--seeds", "2"],
        ["tune", "--trials", "1"],
        ["lr-find", "--iterations", "5"],
    ],
    ids=["seeds", "tune", "lr-find"],
)
def test_a_read_only_file_system_is_one_line(tmp_path, mounted, command):
    read_only = mounted("ro,size=1m")
    config = small_config_file(tmp_path, epochs=1)
    line = one_line(cli(*command, "--config", config, "--output-dir", read_only / "out"))
    assert line == f"error: {read_only / 'out'}: Read-only file system", line


def test_no_inode_left_for_config_json_is_one_line_naming_it(tmp_path, mounted):
    disk = mounted("size=4m,nr_inodes=3")  # the root, the run directory and its lock: nothing more
    config = small_config_file(tmp_path, epochs=1)
    line = one_line(cli("train", "--config", config, "--output-dir", disk / "run"))
    assert line == f"error: {disk / 'run' / 'config.json'}: No space left on device", line


def test_a_full_disk_during_tune_is_one_line_and_the_trial_goes_back_to_the_queue(tmp_path, mounted):
    pytest.importorskip("optuna")
    disk = mounted("size=3m")  # the study's database fits; a trial's first checkpoint (4 MB) does not
    config = small_config_file(tmp_path, epochs=1)
    study = disk / "study"
    proc = cli(
        "tune",
        "--trials",
        "1",
        "--config",
        config,
        "--output-dir",
        study,
        "--lr",
        "0.01",
        "--keep-trials",
        "none",
        "--space",
        small_space(tmp_path),
    )
    line = one_line(proc)
    assert line.startswith("error: this worker stopped: ") and "No space left on device" in line
    assert "trial 0 goes back to the queue" in line
    states = [t.state.name for t in load_study(study).get_trials()]
    assert states[-1] == "WAITING"  # queued again, for the next worker


def small_space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text("dropout: {low: 0.0, high: 0.2}\n")
    return path


# ---------------------------------------------------------------------------------------- memory and ranges


def test_a_batch_too_large_for_memory_is_one_line_naming_the_setting(real_data, tmp_path):
    config = small_config_file(tmp_path, epochs=1, data_dir=str(real_data), verify_data=True, model="cnn")
    proc = subprocess.run(
        [
            "prlimit",
            "--as=5000000000",
            sys.executable,
            "-m",
            "fmnist_ignite",
            "train",
            "--config",
            str(config),
            "--batch-size",
            "55000",
            "--val-size",
            "5000",
            "--output-dir",
            str(tmp_path / "out"),
            "--no-plots",
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    line = one_line(proc)
    assert line.startswith("error: out of memory on cpu") and "lower --batch-size (55000)" in line, line


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--seed", "-1"], "--seed -1: must be in [0, 4294967295]"),
        (["--seed", "4294967296"], "--seed 4294967296: must be in [0, 4294967295]"),
        (["--peer-timeout", "100000000000000"], "--peer-timeout 100000000000000: must be in [1, 604800] seconds"),
        (["--lr", "inf"], "--lr inf: must be a finite number"),
        (["--master-port", "70000"], "--master-port 70000: must be in [1, 65535]"),
        (["--seeds", "1000000000"], "a count of seeds must be in [1, 1000]"),
    ],
)
def test_a_value_out_of_range_is_one_line_naming_the_range(flags, expected, capsys):
    assert main(["train", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_the_largest_seed_trains_with_augmentation(small_config):
    result = train(small_config.replace(epochs=1, seed=2**32 - 1, hflip=True, shift=2))
    assert result.epochs_run == 1


# -------------------------------------------------------------------------------------------- a stopped worker


STOPPED_SCRIPT = """
import os, signal, sys
import ignite.distributed as idist
from ignite.engine import Events
from fmnist_ignite import Config, train
from fmnist_ignite.cli.main import guarded

def stop_rank_1(trainer):
    @trainer.on(Events.ITERATION_COMPLETED(once=30))
    def stop(engine):
        if idist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGSTOP)

if __name__ == "__main__":
    sys.exit(guarded(lambda: train(Config(**{config!r}), extra_handlers=[stop_rank_1]) and 0))
"""


def test_a_stopped_worker_ends_the_run_within_about_the_peer_timeout_in_one_line(tmp_path):
    config = small_run_config(tmp_path).replace(
        nproc_per_node=2, threads=1, epochs=3, batch_size=20, master_port=free_port(), peer_timeout=15
    )
    script = tmp_path / "stop.py"
    script.write_text(STOPPED_SCRIPT.format(config=config.__dict__))
    # Without the watchdog the launcher would wait for the stopped worker for ever: the timeout fails the test.
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=400, env=ENV)
    line = one_line(proc)
    assert line.startswith(
        "error: training process 1 stopped answering (stopped or hung: the others gave up on it "
        "after --peer-timeout 15 s) and was ended; the checkpoints in "
    ), line
    assert "(newest: training_checkpoint_1.pt)" in line


# ----------------------------------------------------------------------------------------------- names and flags


def test_predict_quotes_a_file_name_that_would_forge_a_line_and_says_a_directory_is_one(two_runs, tmp_path, capsys):
    from PIL import Image

    weights = next(two_runs[0].glob("best_model_*.pt"))
    forged = tmp_path / "shoe.png\nsecret.png: Bag (100.0%)"
    Image.new("L", (28, 28)).save(forged, format="PNG")
    assert main(["predict", str(weights), str(forged)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith(json.dumps(str(forged)) + ": ")
    assert main(["predict", "--json", str(weights), str(forged)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["image"] == str(forged) and 0 <= record["probability"] <= 1
    assert main(["predict", str(weights), str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err == f"error: {tmp_path}: a directory; give the image files in it "
        f"(for example {tmp_path}/*.png)\n"
    )


@pytest.mark.parametrize(
    "argv, first",
    [
        (["train", "--recipe", "fsat"], "fmnist-ignite train: error: argument --recipe: invalid choice: 'fsat'"),
        (
            ["train", "--epoch", "1"],
            "fmnist-ignite train: error: unrecognized arguments: --epoch 1 (did you mean --epochs?)",
        ),
        (["evaluate"], "fmnist-ignite evaluate: error: the following arguments are required: RUN_OR_CHECKPOINT"),
    ],
)
def test_a_bad_flag_is_the_error_line_first_then_a_pointer_to_help(argv, first, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and len(err) == 2, err
    assert err[0].startswith(first) and err[1] == f"See: {first.split(':')[0]} --help"
    if "fsat" in argv:
        assert err[0].endswith("(did you mean fast?)")


def test_a_script_on_standard_input_that_spawns_is_told_why_in_one_line(tmp_path):
    config = small_run_config(tmp_path).replace(nproc_per_node=2, threads=1, epochs=1, master_port=free_port())
    script = f"from fmnist_ignite import Config, train\ntrain(Config(**{config.__dict__!r}))\n"
    proc = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 1 and proc.stderr.count("Traceback") == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "fmnist_ignite.errors.FmnistError: the main module is read from standard input, which spawned processes "
        "cannot import: save the script to a file and run python script.py (or launch it with torchrun)"
    )
    assert not Path(config.output_dir).exists() or not list(Path(config.output_dir).glob("*.pt"))


def test_a_second_signal_arriving_inside_the_first_one_s_handler_does_not_deadlock():
    """Seen on the SLURM cluster: the warning and a second signal, the second while the first's handler held its
    lock; the job hung for good. The handler must be re-entrant."""
    import signal
    import threading

    from fmnist_ignite.run.signals import StopRequests

    requests = StopRequests()

    def nested() -> None:
        with requests._lock:  # the first signal's handler, interrupted here by the second
            requests.on_signal(signal.SIGUSR1, None)

    thread = threading.Thread(target=nested, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and requests.signals == [signal.SIGUSR1]


# ------------------------------------------------------------------------------ a review's findings, pinned


@pytest.mark.parametrize("argv", [["train", ""], ["train", "--epochs", "2", "  "]])
def test_an_empty_argument_is_the_error_line_not_a_traceback(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.splitlines()
    assert info.value.code == 2 and err[0].startswith("fmnist-ignite train: error: unrecognized arguments")


def test_did_you_mean_draws_on_the_flag_s_own_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--model", "cpu"])
    assert "did you mean" not in capsys.readouterr().err  # cpu is --device's, not a model to suggest


def deflated_npz(path: Path, mutate) -> Path:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, predicted=np.zeros(5, np.uint8), labels=np.zeros(5, np.uint8), test_set_sha256=SHA)
    path.write_bytes(mutate(bytearray(buffer.getvalue())))
    return path


def _corrupt_deflate(data: bytearray) -> bytes:
    start = data.index(b"predicted.npy") + len("predicted.npy")
    data[start + 20 : start + 40] = bytes(range(20))
    return bytes(data)


def _encrypted(data: bytearray) -> bytes:
    data[6] |= 0x1  # the local header's flag: encrypted
    central = data.rindex(b"PK\x01\x02")
    data[central + 8] |= 0x1
    return bytes(data)


@pytest.mark.parametrize("mutate", [_corrupt_deflate, _encrypted], ids=["corrupt-deflate", "encrypted"])
def test_compare_refuses_a_zip_damaged_inside_in_one_line(two_runs, tmp_path, mutate):
    bad = deflated_npz(tmp_path / "p.npz", mutate)
    assert one_line(cli("compare", two_runs[0], bad)).startswith(f"error: {bad}: ")


def test_compare_refuses_an_array_header_of_an_impossible_shape(two_runs, tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**20,)})
    bad = tmp_path / "p.npz"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("predicted.npy", header.getvalue())
        for name, array in (("labels", np.zeros(5, np.uint8)), ("test_set_sha256", SHA)):
            small = io.BytesIO()
            np.save(small, array)
            archive.writestr(f"{name}.npy", small.getvalue())
    assert "an array header says shape" in one_line(cli("compare", two_runs[0], bad))


def test_a_short_peer_timeout_never_ends_a_run_that_goes_well(tmp_path):
    """The watchdog acts on a failure only: rank 0 plots and writes the summary while the others wait."""
    config = small_run_config(tmp_path).replace(
        nproc_per_node=2, threads=1, epochs=2, master_port=free_port(), peer_timeout=1, plots=True
    )
    result = train(config)
    assert result.epochs_run == 2 and json.loads((result.output_dir / "summary.json").read_text())["processes"] == 2


def test_a_resume_into_a_directory_of_another_run_is_refused_and_changes_nothing(small_config, tmp_path):
    a = train(small_config.replace(epochs=1, output_dir=str(tmp_path / "a")))
    b = train(small_config.replace(epochs=2, output_dir=str(tmp_path / "b")))
    before = {p.name: p.read_bytes() for p in b.output_dir.iterdir() if p.is_file()}
    with pytest.raises(FmnistError, match="already holds checkpoints of another run"):
        train(small_config.replace(epochs=2, resume=str(a.last_checkpoint), output_dir=str(b.output_dir)))
    assert {p.name: p.read_bytes() for p in b.output_dir.iterdir() if p.is_file() and p.name != ".lock"} == {
        k: v for k, v in before.items() if k != ".lock"
    }


def test_a_finished_run_whose_training_checkpoints_were_deleted_is_not_trained_over(small_config):
    result = train(small_config.replace(epochs=2))
    for path in result.output_dir.glob("training_checkpoint_*.pt"):
        path.unlink()
    summary = (result.output_dir / "summary.json").read_bytes()
    with pytest.raises(FmnistError, match="holds a finished run of 2 epochs whose training checkpoints are gone"):
        train(small_config.replace(epochs=2, resume="auto"))
    assert (result.output_dir / "summary.json").read_bytes() == summary and result.best_checkpoint.exists()


def test_a_trial_whose_settings_always_fail_is_marked_failed_and_the_study_goes_on(small_config, tmp_path):
    pytest.importorskip("optuna")
    from fmnist_ignite.experiments.tuning import tune

    config = small_config.replace(epochs=1, loader="dataloader")  # with hflip: refused, every time
    config = config.replace(output_dir=str(tmp_path / "study"))
    result = tune(config, 2, space={"hflip": [True]})
    trials = result.study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]
    assert all("hflip=True: needs loader tensor" in t.user_attrs["failed"] for t in trials)

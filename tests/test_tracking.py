"""--tracker mlflow|wandb through Ignite's MLflowLogger and WandBLogger, offline: every epoch logged once,
also across a resume (the same tracked run continued), the test accuracy with its interval, the best
checkpoint as an artifact; read back with MlflowClient and from W&B's offline run files. A server that cannot
be reached is one line within a bound, and runs started at once share one store."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import small_config_file
from helpers import free_port, run_script, signal_at

from fmnist_ignite.errors import FmnistError, TrainingInterrupted
from fmnist_ignite.run.launch import train


@pytest.fixture
def tracked(small_config, tmp_path, monkeypatch):
    """A 3-epoch run's config, with neither tracker's environment set (offline, local stores)."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "WANDB_MODE", "WANDB_PROJECT", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))  # W&B's own files (its cache) stay in the test's directory
    return small_config.replace(epochs=3, output_dir=str(tmp_path / "runs" / "run-1"), plots=False)


def interrupted_then_resumed(config):
    """The run stopped by SIGINT in its second epoch (batch 3 of 10), then resumed to its end."""
    with pytest.raises(TrainingInterrupted) as info:
        train(config, extra_handlers=[signal_at(13)])
    return train(config.replace(resume=str(info.value.checkpoint)))


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
def test_mlflow_has_every_epoch_once_across_a_resume_and_the_test_accuracy(tracked):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    config = tracked.replace(tracker="mlflow")
    result = interrupted_then_resumed(config)
    store = Path(config.output_dir).parent / "mlflow.db"
    assert store.is_file()  # the local store in the run directory's parent
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{store}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "fmnist-ignite"]
    (run,) = client.search_runs([experiment.experiment_id])  # one tracked run: the resume continued it
    ids = json.loads((Path(config.output_dir) / "tracking.json").read_text())
    assert ids == {"mlflow": run.info.run_id} and run.info.status == "FINISHED"
    for key, column in (("val_accuracy", "val_accuracy"), ("train_loss", "train_loss"), ("lr", "lr")):
        logged = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in logged] == [1, 2, 3], key  # each epoch once
        assert [m.value for m in logged] == pytest.approx([row[column] for row in result.history])
    assert run.data.params["lr"] == str(config.lr) and run.data.params["epochs"] == "3"
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert run.data.metrics["test_accuracy_ci_low"] < run.data.metrics["test_accuracy"]
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert result.best_checkpoint.name in artifacts
    kept = store.parent / "mlartifacts" / run.info.run_id / "artifacts" / result.best_checkpoint.name
    assert kept.read_bytes() == result.best_checkpoint.read_bytes()  # beside the store, not in the cwd


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
def test_two_tracked_runs_in_two_directories_of_one_process_use_their_own_stores(tracked, tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    import os

    for parent in ("first", "second"):
        train(tracked.replace(tracker="mlflow", epochs=1, output_dir=str(tmp_path / parent / "run")))
        assert (tmp_path / parent / "mlflow.db").is_file(), parent
    assert "MLFLOW_TRACKING_URI" not in os.environ  # not left behind for the next run


def wandb_records(path: Path):
    """The records of a W&B ``.wandb`` file: its header, then LevelDB-log records in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending, block = 7, b"", 32768
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # a block's tail too short for a header is padding
            position += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
def test_wandb_offline_has_every_epoch_once_across_a_resume(tracked):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    config = tracked.replace(tracker="wandb")
    result = interrupted_then_resumed(config)
    run_id = json.loads((Path(config.output_dir) / "tracking.json").read_text())["wandb"]
    offline = sorted((Path(config.output_dir) / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 2  # the first start and the resume, one run id: `wandb sync` joins them
    steps: list[int] = []
    accuracy: list[float] = []
    for directory in offline:
        for record in wandb_records(directory / f"run-{run_id}.wandb"):
            if record.WhichOneof("record_type") == "history":
                items = {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item
                }
                if "val_accuracy" in items:
                    steps.append(items["_step"])
                    accuracy.append(items["val_accuracy"])
    assert steps == [1, 2, 3]
    assert accuracy == pytest.approx([row["val_accuracy"] for row in result.history])


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
def test_both_trackers_at_once(tracked, said):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    train(tracked.replace(tracker="mlflow,wandb", epochs=1))
    tracking = [line for line in said() if line.startswith("Tracking: ")]
    assert len(tracking) == 2 and "mlflow run " in tracking[0] and "(offline; wandb sync uploads it)" in tracking[1]
    assert set(json.loads((Path(tracked.output_dir) / "tracking.json").read_text())) == {"mlflow", "wandb"}


def test_a_missing_tracker_package_is_one_line_naming_its_extra(tracked, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(
        FmnistError, match=r"^tracker='wandb' needs the wandb package: pip install 'fmnist-ignite\[wandb\]'$"
    ):
        train(tracked.replace(tracker="wandb"))
    assert not Path(tracked.output_dir).exists()  # refused before anything was written


@pytest.mark.parametrize("given", ["tensorboard", "mlflow,mlflow", "mlflow;wandb"])
def test_an_unknown_tracker_is_refused_in_one_line(tracked, given):
    with pytest.raises(FmnistError, match=r"^tracker=.*: one or both of mlflow, wandb") as info:
        tracked.replace(tracker=given).validate()
    assert info.value.on_command_line().startswith(f"--tracker {given}: one or both of mlflow, wandb")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"mlflow": "../../elsewhere"}', "mlflow is not a mlflow run id"),
        ('{"mlflow": 7}', "mlflow"),
        ("[1, 2]", "the file"),
    ],
)
def test_a_tampered_tracking_file_is_one_line(tracked, content, message):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    config = tracked.replace(tracker="mlflow", epochs=1)
    train(config)
    (Path(config.output_dir) / "tracking.json").write_text(content)
    with pytest.raises(FmnistError, match=message):
        train(config.replace(resume="auto", epochs=2))


def test_a_tracker_that_cannot_start_is_one_line(tracked, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://nowhere")
    with pytest.raises(FmnistError, match=r"^tracker='mlflow': could not start its run \(\w+: "):
        train(tracked.replace(tracker="mlflow", epochs=1))


def test_an_epoch_checkpointed_but_not_yet_tracked_when_killed_is_tracked_on_resume(tracked, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    from fmnist_ignite.handlers.mlflow_tracker import MlflowTracker

    config = tracked.replace(tracker="mlflow", epochs=2)
    real = MlflowTracker.log_metrics

    def killed_before_epoch_2(self, metrics, step):  # as a kill -9 between the checkpoint and the log
        if step != 2:
            real(self, metrics, step)

    monkeypatch.setattr(MlflowTracker, "log_metrics", killed_before_epoch_2)
    first = train(config)
    monkeypatch.setattr(MlflowTracker, "log_metrics", real)
    resumed = train(config.replace(resume="auto", epochs=3))
    store = Path(config.output_dir).parent / "mlflow.db"
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{store}")
    run_id = json.loads((Path(config.output_dir) / "tracking.json").read_text())["mlflow"]
    logged = client.get_metric_history(run_id, "val_accuracy")
    assert sorted(m.step for m in logged) == [1, 2, 3]  # epoch 2 back-filled once, from the restored history
    by_step = {m.step: m.value for m in logged}
    assert by_step[2] == pytest.approx(first.history[1]["val_accuracy"])
    assert by_step[3] == pytest.approx(resumed.history[2]["val_accuracy"])


def test_a_failing_tracker_leaves_no_half_started_run_of_the_other_open(tracked, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    from fmnist_ignite.handlers.wandb_tracker import WandbTracker

    def no_server(output_dir, run_id, params):
        raise ConnectionRefusedError("no W&B here")

    monkeypatch.setattr(WandbTracker, "start", staticmethod(no_server))
    with pytest.raises(FmnistError, match=r"^tracker='wandb': could not start its run"):
        train(tracked.replace(tracker="mlflow,wandb", epochs=1))
    assert mlflow.active_run() is None
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{Path(tracked.output_dir).parent / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("fmnist-ignite").experiment_id])
    assert run.info.status == "KILLED"


def test_client_defaults_give_way_to_the_users_and_leave_nothing_behind(monkeypatch):
    from fmnist_ignite.handlers.mlflow_tracker import sqlite_file
    from fmnist_ignite.handlers.tracker import environment_defaults, shown_uri

    monkeypatch.setenv("MINE", "user")
    monkeypatch.delenv("OURS", raising=False)
    with environment_defaults({"MINE": "ours", "OURS": "ours"}):
        assert os.environ["MINE"] == "user" and os.environ["OURS"] == "ours"
    assert os.environ["MINE"] == "user" and "OURS" not in os.environ
    assert shown_uri("https://me:secret@host:5000/x") == "https://me:***@host:5000/x"
    assert shown_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert sqlite_file("sqlite:////runs/mlflow.db") == Path("/runs/mlflow.db")
    assert sqlite_file("sqlite:///:memory:") is None and sqlite_file("http://host") is None


@pytest.fixture
def silent_server():
    """A port on 127.0.0.1 that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


@pytest.fixture
def no_client_settings(monkeypatch):
    """None of MLflow's HTTP client settings in the environment: ours apply."""
    for name in ("TIMEOUT", "MAX_RETRIES", "BACKOFF_FACTOR"):
        monkeypatch.delenv(f"MLFLOW_HTTP_REQUEST_{name}", raising=False)


def train_in_a_process(tmp_path: Path, tracker: str, timeout: float, epochs: int = 1) -> subprocess.CompletedProcess:
    """``fmnist-ignite train --tracker TRACKER`` on synthetic data in a process of its own, into ``tmp_path/out``."""
    config = small_config_file(tmp_path, epochs=epochs)
    args = ["-m", "fmnist_ignite", "train", "--config", str(config), "--tracker", tracker, "--output-dir", "out"]
    return run_script([*args, "--no-progress", "--no-plots"], tmp_path, tmp_path / "data", timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("server", "why", "bound"),
    [
        ("closed", "connection refused", (0, 6)),
        ("silent", "no answer within 10 s a request", (28, 40)),
        ("unresolvable", "its host name does not resolve", (0, 6)),
    ],
)
def test_an_mlflow_server_that_cannot_be_reached_is_one_line_before_any_epoch(
    tracked, tmp_path, monkeypatch, no_client_settings, silent_server, server, why, bound
):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    uri = {
        "closed": f"http://127.0.0.1:{free_port()}",
        "silent": f"http://127.0.0.1:{silent_server}",
        "unresolvable": "http://no-such-host.invalid:5000",
    }[server]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    proc = train_in_a_process(tmp_path, "mlflow", timeout=120)  # MLflow's own client: minutes, or for ever
    assert proc.returncode == 2, proc.stderr
    said = re.fullmatch(
        rf"error: --tracker mlflow: no MLflow tracking server answers at {re.escape(uri)} \(MLFLOW_TRACKING_URI\): "
        rf"{why}; gave up after (\d+) s\n",
        proc.stderr,
    )
    assert said, proc.stderr
    assert bound[0] <= int(said.group(1)) <= bound[1]
    assert "Epoch 1" not in proc.stdout and not list((tmp_path / "out").glob("*checkpoint*"))


def test_a_users_own_mlflow_client_settings_win(tracked, monkeypatch, silent_server):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent_server}")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    started = time.monotonic()
    with pytest.raises(
        FmnistError, match=r"^tracker='mlflow': no MLflow tracking server answers .*: no answer within 1 s"
    ):
        train(tracked.replace(tracker="mlflow", epochs=1))
    assert time.monotonic() - started < 8  # one try of 1 s, not ours (3 of 10 s)
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "1" and "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR" not in os.environ


@pytest.mark.slow
def test_runs_started_at_once_in_one_new_parent_share_one_store_quietly(tracked, tmp_path):
    mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    config = small_config_file(tmp_path, epochs=1)
    env = {**os.environ, "FMNIST_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    parent = tmp_path / "array"  # new: the first runs to start create its store
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "fmnist_ignite", "train", "--config", str(config), "--tracker", "mlflow"]
            + ["--output-dir", str(parent / name), "--no-progress", "--no-plots"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in "abc"
    ]  # as a SLURM array's tasks: one moment, three processes
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], [err for _, err in outputs]
    for out, err in outputs:
        assert err == "" and "INFO" not in out and "alembic" not in out.lower()  # no MLflow or alembic lines
        assert out.startswith("Tracking: mlflow run ") and f"in sqlite:///{parent / 'mlflow.db'}\n" in out
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{parent / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("fmnist-ignite").experiment_id])
    assert sorted(run.info.run_name for run in found) == ["a", "b", "c"]
    assert {run.info.status for run in found} == {"FINISHED"}


@pytest.mark.slow
@pytest.mark.parametrize(("given", "bound"), [(None, (28, 34)), ("5", (3, 8))])
def test_wandb_online_without_its_server_is_one_line_of_ours(tracked, tmp_path, monkeypatch, given, bound):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    url = f"http://127.0.0.1:{free_port()}"  # a closed port: as no network, without waiting on one
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", url)
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb-home"))
    if given is None:
        monkeypatch.delenv("WANDB_INIT_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("WANDB_INIT_TIMEOUT", given)  # the user's own wins
    proc = train_in_a_process(tmp_path, "wandb", timeout=90)  # W&B's own: 90 s, then its line and ours
    assert proc.returncode == 2, proc.stderr
    said = re.fullmatch(
        rf"error: --tracker wandb: W&B could not start its online run at {re.escape(url)} \(\w+: [^\n]*; "
        r"gave up after (\d+) s\); WANDB_MODE=offline keeps the run on disk for wandb sync\n",
        proc.stderr,
    )
    assert said, proc.stderr
    assert bound[0] <= int(said.group(1)) <= bound[1]
    assert "wandb:" not in proc.stdout and "Epoch 1" not in proc.stdout

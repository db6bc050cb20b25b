"""Every way in: one process or several (spawned, torchrun, two launches of --nnodes 2), a dead or missing
peer, stop signals to the launcher, and a run in a thread stopped from another."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import ignite.distributed as idist
import pytest
import torch
from conftest import small_config_file, small_run_config
from helpers import assert_same_weights, final_weights, free_port
from ignite.engine import Events

from fmnist_ignite import Net, Training, TrainingInterrupted, train

TESTS = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}


class MarkedNet(Net):
    """A model of the user's own (module level, so spawned processes can import it)."""


def mark_each_process(directory: Path, trainer) -> None:
    """An extra handler (given with functools.partial) that leaves one marker file per process once its
    first epoch ends."""
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED(once=1), lambda engine: (directory / f"rank{idist.get_rank()}").touch()
    )


def test_extra_handlers_and_a_model_of_your_own_reach_every_process(small_config, tmp_path):
    model = MarkedNet()
    config = small_config.replace(nproc_per_node=2, threads=1, epochs=2, master_port=free_port(), peer_timeout=60)
    result = train(config, extra_handlers=[functools.partial(mark_each_process, tmp_path)], model=model)
    assert sorted(p.name for p in tmp_path.glob("rank*")) == ["rank0", "rank1"]
    assert result.model is model  # the caller's module, holding rank 0's scored weights
    best = torch.load(result.best_checkpoint, weights_only=True)
    assert_same_weights(model.state_dict(), best)
    assert result.confusion is not None and int(result.confusion.sum()) == 200  # every test image, once
    assert result.per_class_accuracy and result.test_metrics["accuracy"] == pytest.approx(
        float(result.confusion.diagonal().sum()) / 200
    )


KILL_SCRIPT = """
import os, signal, sys
import ignite.distributed as idist
from ignite.engine import Events
from fmnist_ignite import Config, TrainingInterrupted, train
from fmnist_ignite.cli.main import guarded

def kill_rank_1(trainer):
    @trainer.on(Events.ITERATION_COMPLETED(once={iteration}))
    def die(engine):
        if idist.get_rank() == 1:
            os.kill(os.getpid(), signal.SIGKILL)

def signal_launcher(trainer):
    @trainer.on(Events.ITERATION_COMPLETED(once={iteration}))
    def stop(engine):
        if idist.get_rank() == 0:
            os.kill(os.getppid(), signal.SIGTERM)

def main():
    try:
        train(Config(**{config!r}), extra_handlers=[{handler}])
    except TrainingInterrupted as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    return 0

if __name__ == "__main__":
    sys.exit(guarded(main))
"""


def run_kill_script(tmp_path, config, handler: str, iteration: int) -> subprocess.CompletedProcess:
    """KILL_SCRIPT: a spawned run whose ``handler`` acts at ``iteration`` (a worker killed, the launcher signalled)."""
    script = tmp_path / "launch.py"
    script.write_text(KILL_SCRIPT.format(config=config.__dict__, handler=handler, iteration=iteration))
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, env=ENV, cwd=tmp_path
    )


def resume(config) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fmnist_ignite", "train", "--resume", "auto", "--output-dir", config.output_dir]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=ENV)


@pytest.fixture
def spawned_config(tmp_path):
    return small_run_config(tmp_path).replace(
        nproc_per_node=2, threads=1, epochs=3, batch_size=20, dropout=0.2, master_port=free_port(), peer_timeout=60
    )  # 25 iterations an epoch


def test_a_worker_killed_mid_epoch_is_one_line_and_the_run_resumes(spawned_config, tmp_path):
    proc = run_kill_script(tmp_path, spawned_config, "kill_rank_1", iteration=30)  # bounded by its timeout
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: training process 1 was killed by SIGKILL; the checkpoints in {spawned_config.output_dir} are intact "
        "(newest: training_checkpoint_1.pt); continue with --resume auto"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr and "GLHF" not in proc.stdout + proc.stderr
    summary = json.loads(Path(spawned_config.output_dir, "summary.json").read_text())
    assert summary["status"].startswith("failed: training process 1 was killed by SIGKILL")

    resumed = resume(spawned_config)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(Path(spawned_config.output_dir, "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_done"] == 3


def test_sigterm_to_the_launcher_stops_every_worker_once_and_the_resume_is_bitwise_exact(spawned_config, tmp_path):
    full = spawned_config.replace(output_dir=str(tmp_path / "full"), master_port=free_port())
    train(full)

    proc = run_kill_script(tmp_path, spawned_config, "signal_launcher", iteration=30)
    assert proc.returncode == 143, proc.stderr
    out = Path(spawned_config.output_dir)
    # The processes agree every 20 iterations: they stop together at the next check, mid-epoch 2.
    assert [p.name for p in out.glob("interrupted_checkpoint_*.pt")] == ["interrupted_checkpoint_40.pt"]
    assert proc.stderr.count("interrupted by SIGTERM at epoch 2, iteration 40") == 1 and "Traceback" not in proc.stderr

    resumed = resume(spawned_config)
    assert resumed.returncode == 0, resumed.stderr
    last = lambda directory: torch.load(sorted(directory.glob("training_checkpoint_3.pt"))[0], weights_only=True)  # noqa: E731
    assert_same_weights(last(out)["model"], last(tmp_path / "full")["model"])


def test_torchrun_without_an_output_dir_gives_one_run(tmp_path):
    config_file = small_config_file(tmp_path, plots=False)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(free_port()),
    ]
    run_py = str(TESTS.parent / "examples" / "run.py")
    proc = subprocess.run(
        [*command, run_py, "--config", str(config_file)],
        capture_output=True,
        text=True,
        timeout=180,
        env=ENV,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Training completed") == 1 and "Traceback" not in proc.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["processes"] == 2


def launch_node(tmp_path, node_rank: int, port: int, timeout: int, output: str = "out") -> subprocess.Popen:
    """``fmnist-ignite train --nnodes 2 --node-rank N`` (its private files under ``tmp_path``)."""
    config_file = small_config_file(tmp_path, peer_timeout=timeout, plots=False)
    command = [sys.executable, "-m", "fmnist_ignite", "train", "--config", str(config_file), "--nnodes", "2"]
    command += ["--node-rank", str(node_rank), "--master-port", str(port), "--output-dir", str(tmp_path / output)]
    env = {**ENV, "TMPDIR": str(tmp_path)}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_two_launches_of_a_two_node_run_on_one_machine_make_one_set_of_files(tmp_path):
    port = free_port()
    nodes = [launch_node(tmp_path, rank, port, timeout=60) for rank in (0, 1)]
    outputs = [node.communicate(timeout=180) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert outputs[0][0].count("Training completed") == 1 and "Training completed" not in outputs[1][0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["status"] == "completed"


def test_a_peer_that_never_comes_ends_the_wait_after_the_timeout_in_one_line(tmp_path):
    node = launch_node(tmp_path, 0, free_port(), timeout=3)
    stdout, stderr = node.communicate(timeout=300)  # a wait without its bound would never end
    assert node.returncode == 2
    assert len(stderr.strip().splitlines()) == 1 and "could not join the others within 3 s" in stderr
    assert "are all 2 machines started" in stderr


def test_ctrl_c_while_waiting_for_a_peer_ends_the_wait_at_once(tmp_path):
    node = launch_node(tmp_path, 0, free_port(), timeout=300)
    while not list(tmp_path.glob("fmnist-ignite-*")) and node.poll() is None:  # until it spawned its worker
        time.sleep(0.2)
    time.sleep(3)  # the worker is spawned, and waits for its peer
    node.send_signal(signal.SIGINT)
    _, stderr = node.communicate(timeout=150)  # far less than the 300 s it would wait for its peer
    assert node.returncode == 130
    assert stderr.strip().splitlines() == [
        "interrupted by SIGINT while the processes were starting; nothing was trained"
    ]


def test_a_run_in_a_thread_is_stopped_by_stop_and_resumes_bitwise(small_config, tmp_path):
    config = small_config.replace(epochs=3, dropout=0.2)
    full = train(config.replace(output_dir=str(tmp_path / "full")))

    reached, go_on, outcome = threading.Event(), threading.Event(), {}
    training = Training(config)

    @training.trainer.on(Events.ITERATION_COMPLETED(once=13))
    def wait_for_stop(engine):
        reached.set()
        go_on.wait(30)

    def run():
        try:
            training.run()
        except TrainingInterrupted as exc:
            outcome["error"] = exc

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=run)
    thread.start()
    assert reached.wait(60)
    training.stop()  # from the main thread, mid-epoch 2
    go_on.set()
    thread.join(60)
    assert signal.getsignal(signal.SIGINT) is before  # a run off the main thread leaves the handlers alone
    error = outcome["error"]
    assert error.exit_code == 143 and error.checkpoint.name == "interrupted_checkpoint_13.pt"
    assert str(error).startswith("stopped by Training.stop() at epoch 2, iteration 13")

    resumed = train(config.replace(resume="auto"))
    assert_same_weights(final_weights(resumed), final_weights(full))


def test_a_sigint_handler_installed_before_train_is_there_after_it_and_still_called(small_config):
    called = []

    def handler(signum, frame):
        called.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:

        def interrupt(trainer):
            trainer.add_event_handler(Events.ITERATION_COMPLETED(once=4), lambda e: os.kill(os.getpid(), signal.SIGINT))

        with pytest.raises(TrainingInterrupted):
            train(small_config, extra_handlers=[interrupt])
        assert signal.getsignal(signal.SIGINT) is handler and called == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_model_defined_inside_a_function_is_one_line_saying_where_to_define_it(small_config):
    from fmnist_ignite import FmnistError

    class LocalNet(Net):  # spawned processes cannot import this class
        pass

    config = small_config.replace(nproc_per_node=2, threads=1, epochs=1, master_port=free_port(), peer_timeout=30)
    with pytest.raises(FmnistError, match="define your model class and handlers at module level"):
        train(config, model=LocalNet())
    assert not list(Path(config.output_dir).glob("*.pt"))

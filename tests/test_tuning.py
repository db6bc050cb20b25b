"""The Optuna tuner, on small synthetic data: real trials, real workers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import small_config_file
from helpers import load_study

from fmnist_ignite.cli.main import main
from fmnist_ignite.config.commands import TuneSettings
from fmnist_ignite.config.files import read_config_file
from fmnist_ignite.config.settings import Config, settings
from fmnist_ignite.errors import FmnistError

optuna = pytest.importorskip("optuna", reason="the tune extra is not installed (pip install 'fmnist-ignite[tune]')")
from optuna.trial import TrialState  # noqa: E402

from fmnist_ignite.experiments.search_space import DEFAULT_SPACE, check_search_space  # noqa: E402
from fmnist_ignite.experiments.storage import resolve_storage  # noqa: E402
from fmnist_ignite.experiments.study import open_study, trial_directory  # noqa: E402
from fmnist_ignite.experiments.tuning import selected_accuracy, tune  # noqa: E402

SGD_SPACE = {"lr": [0.05, 0.1], "optimizer": ["sgd"]}  # trials that learn the synthetic data in an epoch or two


def load(study_dir: Path, name: str = "fmnist"):
    return load_study(study_dir, name)


def worker(config: Path, study_dir: Path, trials: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fmnist_ignite", "tune", "--config", str(config), "--trials", str(trials)]
        + ["--output-dir", str(study_dir), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


# ---------------------------------------------------------------------------------------- search space


def test_the_default_space_covers_what_the_issue_asks_and_is_valid():
    assert {"lr", "optimizer", "weight_decay", "dropout", "label_smoothing", "batch_size"} <= set(DEFAULT_SPACE)
    assert DEFAULT_SPACE["lr"]["log"] is True
    check_search_space(DEFAULT_SPACE)  # accepted as it is (each range's ends pass Config)
    tunable = {name for name, setting in settings().items() if setting.tunable}
    assert set(DEFAULT_SPACE) <= tunable and "output_dir" not in tunable


@pytest.mark.parametrize(
    "space, message",
    [
        ({"lrr": [0.1]}, "'lrr' is not a setting"),
        ({"lr": {"low": 0.1, "high": 0.01}}, "low must be a number below high"),
        ({"lr": {"low": 0.0, "high": 0.1, "log": True}}, "log scale needs low > 0"),
        ({"optimizer": ["sgd", "rmsprop"]}, "'rmsprop' is refused: optimizer='rmsprop': choose one of sgd"),
        ({"dropout": 0.2}, "expected a list of choices"),
        ({"output_dir": ["a", "b"]}, "not a setting a trial can vary"),
        ({"lr": {"low": 0.01, "high": 0.1, "log": True, "step": 0.01}}, "a step or a log scale, not both"),
    ],
)
def test_a_bad_search_space_is_one_line_naming_the_entry(space, message):
    with pytest.raises(FmnistError, match=message):
        check_search_space(space, "space.yaml")


def test_a_bad_space_file_from_the_command_line_is_one_line_and_exit_2(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.1\n")
    code = main(["tune", "--config", str(small_config_file(tmp_path)), "--trials", "1", "--space", str(space)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"error: {space}: not valid yaml") and len(err.splitlines()) == 1


def test_every_setting_fixed_leaves_nothing_to_search(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.1, 0.2]\n")
    config = small_config_file(tmp_path)
    code = main(["tune", "--config", str(config), "--trials", "1", "--space", str(space), "--lr", "0.1"])
    assert code == 2 and "nothing to search" in capsys.readouterr().err


def test_a_trial_scores_the_validation_accuracy_of_the_epoch_its_run_keeps():
    history = [
        {"val_loss": 0.5, "val_accuracy": 0.80},
        {"val_loss": 0.4, "val_accuracy": 0.82},
        {"val_loss": 0.45, "val_accuracy": 0.84},
    ]
    assert selected_accuracy(history, "loss") == 0.82
    assert selected_accuracy(history, "accuracy") == 0.84


# ------------------------------------------------------------------------------------------------ tune


def test_tune_trains_on_train_and_validation_only_and_writes_its_results(small_config, tmp_path, splits_loaded, capsys):
    study_dir = tmp_path / "study"
    result = tune(small_config.replace(output_dir=str(study_dir), epochs=2), 3, space=SGD_SPACE)
    out = capsys.readouterr().out

    assert splits_loaded == [["train", "validation"]] * 3  # the test split is never made into a loader
    trials = result.study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        summary = json.loads((study_dir / f"trial-{trial.number:04d}" / "summary.json").read_text())
        assert summary["test"] is None and summary["status"] == "completed"
        assert trial.value == selected_accuracy(summary["history"], "loss")
    best = result.study.best_trial
    assert result.best_config == study_dir / "best.yaml"
    replayed = read_config_file(result.best_config)
    assert replayed["lr"] == best.params["lr"] and replayed["optimizer"] == "sgd" and "output_dir" not in replayed
    assert Config(**replayed).validate().epochs == 2
    assert f"Train it: fmnist-ignite train --config={study_dir / 'best.yaml'}" in out
    # each trial's run lines go to its train.log; the worker's lines ("Trial N: ...") to standard output
    assert "Trial 0: " in out and "Epoch 1" not in out and "Training completed" not in out
    assert "Epoch 1" in (study_dir / "trial-0000" / "train.log").read_text()
    assert out.index(f"\n{best.number}  ") < min(out.index(f"\n{t.number}  ") for t in trials if t != best)
    assert {p.name for p in study_dir.glob("*.png")} >= {"history.png", "intermediate_values.png"}


def test_keep_trials_none_removes_each_finished_trial_directory(small_config, tmp_path, capsys):
    study_dir = tmp_path / "study"
    tune(small_config.replace(output_dir=str(study_dir), epochs=1), TuneSettings(2, keep_trials="none"), SGD_SPACE)
    assert not list(study_dir.glob("trial-*"))
    assert "trial directories kept: none" in capsys.readouterr().out


def test_a_hopeless_trial_is_pruned_after_its_first_epoch(small_config, tmp_path):
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    study = open_study(resolve_storage(study_dir, None), "fmnist", heartbeat=30, pruner=pruner)
    for lr in (0.1, 0.1, 1e-6):  # the third barely moves: far below the median after one epoch
        study.enqueue_trial({"lr": lr, "optimizer": "sgd"})
    space = {"lr": {"low": 1e-6, "high": 0.1, "log": True}, "optimizer": ["sgd"]}
    result = tune(small_config.replace(output_dir=str(study_dir), epochs=4), 3, space=space, pruner=pruner)
    states = [t.state for t in result.study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.PRUNED]
    pruned = result.study.get_trials()[2]
    assert list(pruned.intermediate_values) == [1]
    metrics = (study_dir / "trial-0002" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 2  # header and epoch 1: the run stopped there, with its checkpoint
    assert (study_dir / "trial-0002" / "training_checkpoint_1.pt").is_file()


def test_two_workers_share_one_study_and_its_budget_running_no_trial_twice(tmp_path):
    config = small_config_file(tmp_path, epochs=4)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"lr": {"low": 0.02, "high": 0.2, "log": True}, "optimizer": ["sgd"]}))
    study_dir = tmp_path / "study"
    workers = [worker(config, study_dir, 6, "--space", str(space)) for _ in range(2)]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    trials = [t for t in load(study_dir).get_trials() if "surplus" not in t.user_attrs]
    assert len(trials) == 6 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}, outputs
    assert len({t.user_attrs["output_dir"] for t in trials}) == 6  # each trial its own run
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    for t in trials:  # and each trial directory holds one run: one start, one end
        log = (study_dir / f"trial-{t.number:04d}" / "train.log").read_text()
        assert log.count("Precision:") == 1 and log.count("Training completed") == 1


def test_a_worker_killed_mid_trial_leaves_a_trial_that_another_worker_continues(tmp_path, capsys):
    config = small_config_file(tmp_path, epochs=12)
    study_dir = tmp_path / "study"
    space = space_file(tmp_path)
    first = worker(
        config, study_dir, 2, "--heartbeat", "1", "--lr", "0.05", "--optimizer", "sgd", "--space", str(space)
    )
    checkpoint = study_dir / "trial-0000" / "training_checkpoint_2.pt"
    while not checkpoint.exists() and first.poll() is None:  # the worker's own end bounds the wait
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert checkpoint.exists(), first.stdout.read()
    time.sleep(3.5)  # the grace period: three heartbeats missed

    base = Config(**read_config_file(config)).replace(epochs=12, lr=0.05, optimizer="sgd")
    base = base.replace(output_dir=str(study_dir))
    result = tune(base, TuneSettings(2, heartbeat=1), space={"momentum": [0.9]}, fixed=("lr", "optimizer"))
    trials = result.study.get_trials()
    assert trials[0].state == TrialState.FAIL  # the heartbeat stopped: failed by the second worker
    retry = next(t for t in trials if trial_directory(study_dir, t).name == "trial-0000" and t.number != 0)
    assert retry.state == TrialState.COMPLETE
    log = (study_dir / "trial-0000" / "train.log").read_text()
    assert "Resuming from" in log and log.count("Training completed") == 1
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    assert "(continues trial-0000)" in capsys.readouterr().out


def test_ctrl_c_stops_a_worker_cleanly_and_queues_its_trial_to_continue(tmp_path):
    config = small_config_file(tmp_path, epochs=12)
    study_dir = tmp_path / "study"
    first = worker(config, study_dir, 1, "--lr", "0.05", "--optimizer", "sgd", "--space", str(space_file(tmp_path)))
    checkpoint = study_dir / "trial-0000" / "training_checkpoint_1.pt"
    while not checkpoint.exists() and first.poll() is None:  # the worker's own end bounds the wait
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    output = first.communicate(timeout=60)[0]
    assert first.returncode == 130, output
    assert (
        output.strip()
        .splitlines()[-1]
        .startswith("interrupted by a stop signal: trial 0 goes back to the queue, to continue from its checkpoint")
    )
    assert list((study_dir / "trial-0000").glob("interrupted_checkpoint_*.pt"))
    trials = load(study_dir).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]

    second = worker(config, study_dir, 1, "--lr", "0.05", "--optimizer", "sgd", "--space", str(space_file(tmp_path)))
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    assert [t.state for t in load(study_dir).get_trials()] == [TrialState.FAIL, TrialState.COMPLETE]
    assert "Resuming from" in (study_dir / "trial-0000" / "train.log").read_text()


def space_file(root: Path) -> Path:
    path = root / "space.yaml"
    path.write_text("momentum: [0.9]\n")  # one choice: every trial the same
    return path


def test_tune_refuses_resume_and_several_processes(small_config):
    with pytest.raises(FmnistError, match="without resume$"):
        tune(small_config.replace(resume="auto"), 1)
    with pytest.raises(FmnistError, match="several tune workers"):
        tune(small_config.replace(nproc_per_node=2), 1)


def test_the_default_pruner_stops_the_bottom_quarter_only_and_not_before_a_third_of_the_epochs():
    from fmnist_ignite.experiments.study import default_pruner

    study = optuna.create_study(direction="maximize", pruner=default_pruner(epochs=9))
    for value in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):  # the startup trials, reported at epochs 2 and 3
        study.add_trial(
            optuna.create_trial(value=value, intermediate_values={2: value, 3: value}, params={}, distributions={})
        )

    def pruned_at(epoch: int, value: float) -> bool:
        trial = study.ask()
        trial.report(value, epoch)
        pruned = trial.should_prune()
        study.tell(trial, state=TrialState.FAIL)
        return pruned

    assert pruned_at(3, 0.15)  # in the bottom quarter at epoch 3 = a third of 9
    assert not pruned_at(3, 0.35)  # below the median, above the bottom quarter: kept
    assert not pruned_at(2, 0.05)  # too early to tell


def test_a_range_with_a_step_draws_on_its_grid():
    from fmnist_ignite.experiments.search_space import suggest

    space = check_search_space(
        {"dropout": {"low": 0.0, "high": 0.5, "step": 0.25}, "epochs": {"low": 2, "high": 8, "step": 3}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [suggest(study.ask(), space) for _ in range(30)]
    assert {d["dropout"] for d in drawn} == {0.0, 0.25, 0.5}
    assert {d["epochs"] for d in drawn} == {2, 5, 8}

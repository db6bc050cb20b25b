"""--target-accuracy: the run stops at the end of the first epoch whose validation accuracy reaches the
target and says when (summary.json, the last lines); a resumed run that had reached it trains no more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.run.launch import train


def summary(result) -> dict:
    return json.loads((Path(result.output_dir) / "summary.json").read_text())


def first_epoch_reaching(history: list[dict], target: float) -> int | None:
    return next((row["epoch"] for row in history if row["val_accuracy"] >= target), None)


def test_the_run_stops_at_the_first_epoch_that_reaches_the_target(small_config, said):
    full = train(small_config.replace(epochs=6, output_dir=small_config.output_dir + "-full"))
    accuracies = [row["val_accuracy"] for row in full.history]
    target = sorted(set(accuracies))[len(set(accuracies)) // 2]  # reached in the middle of the full run
    expected = first_epoch_reaching(full.history, target)
    assert expected is not None and expected < 6
    said.clear()
    result = train(small_config.replace(epochs=6, target_accuracy=target))
    assert result.epochs_run == expected and result.stopped_early
    block = summary(result)["target"]
    assert block["reached"] is True and block["epoch"] == expected and block["accuracy"] == target
    assert block["training_s"] == pytest.approx(sum(row["epoch_time_s"] for row in result.history))
    assert block["process_s"] >= block["training_s"]
    (reached,) = [line for line in said() if line.startswith("Target reached: ")]
    assert f"at epoch {expected}," in reached
    assert any(line.startswith("Test, ") for line in said())  # the test split is still scored once


def test_a_target_not_reached_runs_every_epoch_and_says_so(small_config, said):
    result = train(small_config.replace(epochs=2, target_accuracy=0.999999))
    assert result.epochs_run == 2
    block = summary(result)["target"]
    assert block["reached"] is False and block["epoch"] is None
    assert any(
        line.startswith("Target not reached: validation accuracy 100.00% not reached in 2 epochs") for line in said()
    )


def test_a_resumed_run_that_had_reached_its_target_trains_no_more(small_config):
    full = train(small_config.replace(epochs=6, output_dir=small_config.output_dir + "-full"))
    target = full.history[1]["val_accuracy"]  # epoch 2's, reached by epoch 2 at the latest
    config = small_config.replace(epochs=6, target_accuracy=target)
    first = train(config)
    again = train(config.replace(resume="auto"))
    assert again.epochs_run == first.epochs_run <= 2
    assert summary(again)["target"]["epoch"] == first.epochs_run


@pytest.mark.parametrize("given", [0.0, 1.0, 90.0, -0.5])
def test_a_target_outside_0_to_1_is_one_line(small_config, given):
    with pytest.raises(FmnistError, match=r"^target_accuracy=.*: must be in \(0, 1\)$"):
        small_config.replace(target_accuracy=given).validate()

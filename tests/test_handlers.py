"""Handlers on engine events: when each fires, what it prints, what it writes and when it stops training."""

from __future__ import annotations

import re
import sys

import pytest
import torch
from helpers import scripted_evaluator
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from fmnist_ignite import (
    Net,
    TensorLoader,
    attach_best_model_checkpoint,
    attach_checkpointing,
    attach_early_stopping,
    attach_epoch_header,
    attach_evaluation,
    attach_loss_logging,
    attach_progress_bar,
    create_trainer,
)


def dummy_trainer() -> Engine:
    """A trainer whose every iteration returns a loss of 0.5 and does nothing else."""
    return Engine(lambda engine, batch: torch.tensor(0.5))


def test_loss_logging_fires_every_n_batches_of_each_epoch_in_the_tutorials_format(said):
    model = Net()
    loader = TensorLoader(torch.zeros(500, 1, 28, 28), torch.zeros(500, dtype=torch.long), batch_size=50)
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.01))
    fired_at = []
    attach_loss_logging(trainer, every=4)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: fired_at.append(e.state.iteration))
    trainer.run(loader, max_epochs=2)
    assert len(fired_at) == 20
    # 10 batches an epoch, every 4th from the first: batches 1, 5 and 9 of each epoch.
    assert [line[-13:] for line in said()] == ["[    0/  500]", "[  200/  500]", "[  400/  500]"] * 2
    assert all(re.fullmatch(r"loss: \d\.\d{6}  \[ *\d+/ *500\]", line) for line in said())


def test_loss_logging_count_is_samples_seen_of_the_whole_epoch(said):
    loader = TensorLoader(torch.zeros(60000, 1, 1, 1), torch.zeros(60000), batch_size=10)
    trainer = dummy_trainer()
    attach_loss_logging(trainer, every=100)
    trainer.run(loader, max_epochs=1, epoch_length=201)
    assert said() == ["loss: 0.500000  [    0/60000]", "loss: 0.500000  [ 1000/60000]", "loss: 0.500000  [ 2000/60000]"]


def test_epoch_header_is_printed_once_per_epoch(said):
    trainer = dummy_trainer()
    attach_epoch_header(trainer)
    trainer.run(range(3), max_epochs=2)
    assert said() == ["Epoch 1\n-------------------------------", "Epoch 2\n-------------------------------"]


def test_evaluation_runs_once_per_epoch_and_history_grows_by_one_each_time(said):
    trainer, evaluator = dummy_trainer(), scripted_evaluator([0.9, 0.5, 0.25])
    runs, sizes = [], []
    evaluator.add_event_handler(Events.STARTED, lambda e: runs.append(trainer.state.epoch))
    history = attach_evaluation(trainer, evaluator, [0], name="Validation")
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: sizes.append(len(history.epochs)))
    trainer.run(range(5), max_epochs=3)
    assert runs == [1, 2, 3] and sizes == [1, 2, 3]
    assert history.epochs == [
        {"epoch": 1, "val_loss": 0.9, "val_accuracy": pytest.approx(0.1)},
        {"epoch": 2, "val_loss": 0.5, "val_accuracy": 0.5},
        {"epoch": 3, "val_loss": 0.25, "val_accuracy": 0.75},
    ]
    assert said()[1] == "Validation: Accuracy: 50.0%, Avg loss: 0.500000\n"
    assert history.best("val_loss")["epoch"] == 3 and history.best("val_accuracy")["epoch"] == 3


def test_evaluation_every_n_epochs_runs_after_each_nth_and_after_the_last_even_when_the_run_is_extended():
    trainer, evaluator = dummy_trainer(), scripted_evaluator([0.9, 0.5, 0.25, 0.2])
    runs = []
    evaluator.add_event_handler(Events.STARTED, lambda e: runs.append(trainer.state.epoch))
    history = attach_evaluation(trainer, evaluator, [0], every=3)
    trainer.run(range(5), max_epochs=7)
    assert runs == [3, 6, 7] and [row["epoch"] for row in history.epochs] == [3, 6, 7]
    trainer.run(range(5), max_epochs=8)  # continued to 8: epoch 8 is now the last
    assert runs == [3, 6, 7, 8]


def test_history_survives_a_state_dict_round_trip():
    trainer, evaluator = dummy_trainer(), scripted_evaluator([0.9, 0.5])
    history = attach_evaluation(trainer, evaluator, [0])
    trainer.run(range(2), max_epochs=2)
    restored = type(history)()
    restored.load_state_dict(history.state_dict())
    assert restored.epochs == history.epochs and len(restored.epochs) == 2


def test_checkpoints_appear_each_epoch_and_only_the_last_n_are_kept(tmp_path):
    model = Net()
    trainer = dummy_trainer()
    seen = []
    attach_checkpointing(trainer, {"model": model, "trainer": trainer}, tmp_path, n_saved=2)
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED, lambda e: seen.append(sorted(p.name for p in tmp_path.glob("*.pt")))
    )
    trainer.run(range(3), max_epochs=4)
    assert seen == [
        ["training_checkpoint_1.pt"],
        ["training_checkpoint_1.pt", "training_checkpoint_2.pt"],
        ["training_checkpoint_2.pt", "training_checkpoint_3.pt"],
        ["training_checkpoint_3.pt", "training_checkpoint_4.pt"],
    ]
    saved = torch.load(tmp_path / "training_checkpoint_4.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 12 and saved["trainer"]["max_epochs"] == 4
    assert torch.equal(saved["model"]["linear_relu_stack.4.bias"], model.linear_relu_stack[4].bias)


@pytest.mark.parametrize(
    "monitor, expected",
    [("loss", "best_model_3_neg_val_loss=-0.3000.pt"), ("accuracy", "best_model_3_val_accuracy=0.7000.pt")],
)
def test_best_model_checkpoint_keeps_the_best_epoch_named_by_trainer_epoch(tmp_path, monitor, expected):
    trainer, evaluator = dummy_trainer(), scripted_evaluator([0.8, 0.5, 0.3, 0.4, 0.6])
    attach_evaluation(trainer, evaluator, [0])
    attach_best_model_checkpoint(evaluator, trainer, Net(), tmp_path, monitor=monitor)
    trainer.run(range(2), max_epochs=5)
    assert [p.name for p in tmp_path.glob("*.pt")] == [expected]


def run_early_stopping(losses, patience, max_epochs=10) -> int:
    trainer, evaluator = dummy_trainer(), scripted_evaluator(losses)
    attach_evaluation(trainer, evaluator, [0])
    attach_early_stopping(trainer, evaluator, patience=patience, monitor="loss")
    trainer.run(range(2), max_epochs=max_epochs)
    return trainer.state.epoch


def test_early_stopping_stops_after_patience_epochs_without_improvement_and_not_before():
    losses = [1.0, 0.9, 0.95, 0.93, 0.92, 0.5, 0.6, 0.7, 0.8, 0.9]
    # Best at epoch 2; epochs 3, 4, 5 do not improve: patience 3 stops after epoch 5.
    assert run_early_stopping(losses, patience=3) == 5
    # With patience 4, epoch 6 improves in time; 7-10 then use up the patience exactly at the end.
    assert run_early_stopping(losses, patience=4) == 10
    assert run_early_stopping([1.0 - 0.01 * i for i in range(10)], patience=1) == 10


def test_early_stopping_on_accuracy_uses_higher_is_better():
    trainer, evaluator = dummy_trainer(), scripted_evaluator([0.5, 0.6, 0.4, 0.45, 0.3])
    attach_evaluation(trainer, evaluator, [0])
    stopper = attach_early_stopping(trainer, evaluator, patience=2, monitor="accuracy")
    trainer.run(range(2), max_epochs=5)
    # accuracy = 1 - loss: 0.5, 0.4, 0.6 (best, epoch 3), 0.55, 0.7 -> epoch 4 is one miss, epoch 5 improves.
    assert trainer.state.epoch == 5 and stopper.counter == 0 and stopper.best_score == pytest.approx(0.7)


def test_progress_bar_is_off_off_a_terminal_and_when_switched_off(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert attach_progress_bar(dummy_trainer()) is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert attach_progress_bar(dummy_trainer(), enabled=False) is None
    trainer = dummy_trainer()
    assert isinstance(attach_progress_bar(trainer), ProgressBar)
    trainer.run(range(7), max_epochs=1)
    drawn = capsys.readouterr().err
    assert "Iteration: [6/7]" in drawn and "loss=0.5" in drawn  # the epoch's batches, with the running loss

"""A run's lines are log records of the package's loggers, printed on standard output by one handler: each run
(each thread) sends them to its own destination, ``logging`` silences them, and the root logger a user
configures does not print them twice."""

from __future__ import annotations

import errno
import logging
import sys
import threading

import torch
from ignite.engine import Engine
from torch.utils.data import DataLoader, TensorDataset

from fmnist_ignite import attach_epoch_header, attach_loss_logging, train
from fmnist_ignite.run.training import route_output
from fmnist_ignite.ui.console import LineHandler, lines_to, no_lines, say


def test_the_package_logger_has_one_handler_and_keeps_its_records_from_the_root_logger():
    logger = logging.getLogger("fmnist_ignite")
    assert len([handler for handler in logger.handlers if isinstance(handler, LineHandler)]) == 1  # and caplog's
    assert logger.level == logging.INFO and not logger.propagate


def test_the_lines_of_runs_in_two_threads_each_go_to_their_own_destination(small_config, tmp_path):
    lines: dict[str, list[str]] = {"a": [], "b": []}
    errors = []

    def run(name: str, seed: int) -> None:
        try:
            with lines_to(lines[name].append):
                train(small_config.replace(epochs=1, seed=seed, output_dir=str(tmp_path / name)))
        except BaseException as exc:  # noqa: BLE001 (said by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name, seed)) for seed, name in enumerate(lines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for name, other in (("a", "b"), ("b", "a")):
        text = "\n".join(lines[name])
        assert text.count("Epoch 1\n") == 1 and text.count("Training completed") == 1
        assert f"Checkpoints in {tmp_path / name}:" in text and str(tmp_path / other) not in text


def test_a_root_logger_a_user_configured_does_not_print_the_lines_twice(monkeypatch, capsys):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [logging.StreamHandler(sys.stderr)])  # as logging.basicConfig() sets it
    monkeypatch.setattr(root, "level", logging.INFO)
    trainer = Engine(lambda engine, batch: torch.tensor(0.25))
    attach_epoch_header(trainer)
    trainer.run([0], max_epochs=1)
    captured = capsys.readouterr()
    assert captured.out == "Epoch 1\n-------------------------------\n" and "Epoch" not in captured.err


def test_the_lines_are_printed_unchanged_and_a_level_of_warning_silences_them(monkeypatch, capsys, small_config):
    trainer = Engine(lambda engine, batch: torch.tensor(0.25))
    attach_loss_logging(trainer, every=2)
    trainer.run(DataLoader(TensorDataset(torch.zeros(8, 1)), batch_size=2), max_epochs=1)
    assert capsys.readouterr().out == "loss: 0.250000  [    0/    8]\nloss: 0.250000  [    4/    8]\n"
    monkeypatch.setattr(logging.getLogger("fmnist_ignite"), "level", logging.WARNING)
    result = train(small_config.replace(epochs=1))
    assert result.epochs_run == 1 and capsys.readouterr().out == ""


def test_only_rank_0_says_anything_and_a_destination_chosen_by_the_caller_is_kept(small_config):
    trainer = Engine(lambda engine, batch: None)
    assert route_output(small_config, trainer, 1).destination is no_lines
    assert route_output(small_config.replace(display="plain"), trainer, 0).destination is say
    with lines_to(print):
        assert route_output(small_config.replace(display="plain"), trainer, 0).destination is print


def test_a_destination_that_cannot_be_written_is_said_once_in_one_line_and_the_run_goes_on(capsys):
    def full_disk(line: str) -> None:  # a trial's train.log on a full disk
        raise OSError(errno.ENOSPC, "No space left on device")

    trainer = Engine(lambda engine, batch: torch.tensor(0.25))
    attach_epoch_header(trainer)
    with lines_to(full_disk):
        state = trainer.run([0], max_epochs=3)
    captured = capsys.readouterr()
    assert state.epoch == 3 and captured.out == ""
    assert captured.err == "warning: cannot write the run's lines (No space left on device); the run goes on\n"

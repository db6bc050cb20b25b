"""train(config) and the command line on synthetic data: results, selection, early stopping, bad input."""

from __future__ import annotations

import pytest
import torch
from conftest import without_times

from fmnist_ignite import Config, FmnistError, Net, create_evaluator, get_data_loaders, train
from fmnist_ignite.cli.main import train_main as main
from fmnist_ignite.cli.parser import build_parser, config_from_args


def test_train_returns_history_test_metrics_and_checkpoints(small_config):
    result = train(small_config.replace(lr=0.05))
    assert result.epochs_run == 3 and not result.stopped_early
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    best = min(result.history, key=lambda row: row["val_loss"])
    assert result.scored_weights == f"best (epoch {best['epoch']})"
    assert result.best_checkpoint.name.startswith(f"best_model_{best['epoch']}_neg_val_loss=")
    assert result.last_checkpoint.name == "training_checkpoint_3.pt" and result.last_checkpoint.is_file()
    assert 0.8 <= result.test_metrics["accuracy"] <= 1.0  # the synthetic classes are easy to tell apart

    # The reported test metrics are those of the best checkpoint's weights, scored on the test split.
    model = Net()
    model.load_state_dict(torch.load(result.best_checkpoint, weights_only=True))
    rescored = create_evaluator(model).run(get_data_loaders(small_config)["test"]).metrics
    assert rescored["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert rescored["loss"] == pytest.approx(result.test_metrics["loss"], rel=1e-5)


def test_train_prints_the_tutorials_blocks(small_config, said):
    train(small_config.replace(epochs=2))
    text = "\n".join(said())
    assert text.count("-------------------------------") == 2 and "Epoch 2\n" in text
    assert "loss: " in text and "/  500]" in text
    assert text.count("Validation: Accuracy: ") == 2
    done = said().index("Training completed")
    after = [line.split(" ", 2)[:2] for line in said()[done + 1 : done + 5]]
    assert after == [
        ["Calibration", "(validation):"],
        ["Test,", "best"],
        ["Calibration", "(test):"],
        ["Per-class", "test"],
    ]


def test_same_seed_gives_the_same_run_and_another_seed_does_not(small_config, tmp_path):
    runs = [
        train(small_config.replace(output_dir=str(tmp_path / name), seed=seed))
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    assert without_times(runs[0].history) == without_times(runs[1].history)
    assert without_times(runs[0].history) != without_times(runs[2].history)


def test_early_stopping_ends_the_run_after_patience_epochs_without_progress(small_config):
    # A learning rate too small to change any prediction: validation accuracy never improves.
    config = small_config.replace(lr=1e-9, momentum=0.0, epochs=30, patience=2, monitor="accuracy")
    result = train(config)
    assert result.epochs_run == 3 and result.stopped_early
    assert result.scored_weights == "best (epoch 1)"


def test_without_validation_the_last_weights_are_scored(small_config):
    result = train(small_config.replace(val_size=0, epochs=2))
    assert [sorted(row) for row in result.history] == [["epoch", "epoch_time_s", "lr", "train_loss"]] * 2
    assert result.best_checkpoint is None
    assert result.scored_weights == "last (epoch 2)"


def test_one_hot_training_gives_the_same_run(small_config, tmp_path):
    by_index = train(small_config.replace(output_dir=str(tmp_path / "i")))
    by_one_hot = train(small_config.replace(output_dir=str(tmp_path / "o"), one_hot=True))
    for a, b in zip(by_index.history, by_one_hot.history, strict=True):
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], abs=0.011)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-3)
    # the same images right: one-hot targets are counted as their classes, never as 10 answers an image
    assert by_one_hot.test_metrics["accuracy"] == pytest.approx(by_index.test_metrics["accuracy"], abs=0.011)


def test_dataloader_path_trains_too(small_config):
    result = train(small_config.replace(loader="dataloader", epochs=2, lr=0.05))
    assert result.epochs_run == 2 and result.test_metrics["accuracy"] > 0.5  # it learned: chance is 0.1


def test_an_output_dir_with_checkpoints_is_refused_and_left_alone(small_config, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "training_checkpoint_7.pt").write_bytes(b"precious")
    with pytest.raises(FmnistError, match="already holds checkpoints"):
        train(small_config)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "training_checkpoint_7.pt"]  # the OS lock file only
    assert (out / "training_checkpoint_7.pt").read_bytes() == b"precious"


def test_an_unwritable_output_dir_is_reported_before_training(small_config, tmp_path, said):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(FmnistError, match="is not writable"):
        train(small_config.replace(output_dir=str(tmp_path / "a-file" / "out")))
    assert said() == []


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "0"], "--lr 0.0: must be > 0"),
        (["--lr", "-1"], "--lr -1.0: must be > 0"),
        (["--batch-size", "0"], "--batch-size 0: must be at least 1"),
        (["--epochs", "0"], "--epochs 0: must be in [1, 1000000]"),
        (["--patience", "-1"], "--patience -1: must be at least 0"),
        (["--val-size", "60000"], "--val-size 60000: must be in [0, 60000)"),
        (["--val-size", "-5"], "--val-size -5: must be in [0, 60000)"),
        (
            ["--patience", "2", "--val-size", "0"],
            "--patience 2: early stopping needs a validation set: set --val-size above 0",
        ),
        (
            ["--target-accuracy", "0.5", "--val-size", "0"],
            "--target-accuracy 0.5: a target accuracy is reached on the validation set",
        ),
        (["--log-interval", "0"], "--log-interval 0: must be at least 1"),
    ],
)
def test_bad_flags_give_one_line_and_exit_code_2(flags, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*flags, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {err[7:]}" and err.count("\n") == 1 and message in err
    assert not out.exists()  # refused before anything was written


def test_unknown_choices_are_refused_by_the_parser(capsys):
    for flags in (["--optimizer", "rmsprop"], ["--device", "tpu"], ["--loader", "fast"], ["--monitor", "f1"]):
        with pytest.raises(SystemExit) as info:
            main(flags)
        assert info.value.code == 2
        assert "invalid choice" in capsys.readouterr().err


def test_missing_data_is_one_line_and_exit_code_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["--data-dir", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Fashion-MNIST not found.") and err.count("\n") == 1


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_data_dir_named_but_not_a_directory_is_refused_before_anything_is_written(tmp_path, capsys, kind):
    named = tmp_path / "nothing"
    if kind == "file":
        named.write_text("not a directory")
    assert main(["--data-dir", str(named), "--output-dir", str(tmp_path / "out")]) == 2
    expected = "a file, not a directory" if kind == "file" else "no such directory"
    assert capsys.readouterr().err == f"error: --data-dir {named}: {expected}\n"
    assert not (tmp_path / "out").exists()


def test_flags_map_onto_the_config():
    args = build_parser().parse_args(
        [
            "--epochs",
            "7",
            "--batch-size",
            "128",
            "--lr",
            "0.01",
            "--optimizer",
            "adamw",
            "--one-hot",
            "--loader",
            "dataloader",
            "--no-progress",
            "--monitor",
            "accuracy",
            "--patience",
            "3",
            "--val-size",
            "100",
        ]
    )
    config = config_from_args(args)
    assert (config.epochs, config.batch_size, config.lr, config.optimizer) == (7, 128, 0.01, "adamw")
    assert config.one_hot and config.loader == "dataloader" and not config.progress
    assert (config.monitor, config.patience, config.val_size) == ("accuracy", 3, 100)
    defaults = config_from_args(build_parser().parse_args([]))
    assert defaults == Config()  # the command line's defaults are the library's (the tutorial's)

"""What a run leaves: metrics.csv, summary.json, plots, per-class table, TensorBoard; evaluate and predict."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from conftest import small_run_config, synthetic_set, write_idx
from ignite.engine import Events
from PIL import Image

from fmnist_ignite import CLASS_NAMES, FmnistError, TrainingInterrupted, train, wilson_interval
from fmnist_ignite.analysis.inference import evaluate_checkpoint, load_images, load_model, predict
from fmnist_ignite.cli.main import main
from fmnist_ignite.data.fashion_mnist import load_fashion_mnist
from fmnist_ignite.ui import plots as reports_module
from fmnist_ignite.ui.console import lines_to

COLUMNS = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_accuracy_ci_low",
    "val_accuracy_ci_high",
    "lr",
    "epoch_time_s",
]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small trained run on synthetic data, shared by the tests that only read its results (and its lines,
    sent to a list: ``said`` is one test's)."""
    config = small_run_config(tmp_path_factory.mktemp("trained")).replace(lr=0.05)
    lines: list[str] = []
    with lines_to(lines.append):
        result = train(config)
    return config, result, lines


def test_metrics_csv_has_the_columns_and_one_row_per_epoch(trained):
    config, result, _ = trained
    rows = read_csv(result.output_dir / "metrics.csv")
    assert list(rows[0]) == COLUMNS and [row["epoch"] for row in rows] == ["1", "2", "3"]
    for row, record in zip(rows, result.history, strict=True):  # the file is the run's history, to the digit
        for column in ("val_accuracy", "train_loss", "epoch_time_s"):
            assert float(row[column]) == pytest.approx(record[column]), column
        assert float(row["lr"]) == pytest.approx(0.05)
    assert len({row["train_loss"] for row in rows}) == 3  # each epoch its own mean, not one value copied


def test_summary_json_says_what_ran_and_how_it_scored(trained):
    config, result, _ = trained
    summary = json.loads((result.output_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_done"] == 3
    assert summary["config"]["lr"] == 0.05 and summary["seed"] == 0 and summary["device"] == "cpu"
    assert set(summary["versions"]) >= {"torch", "pytorch_ignite", "torchvision"}
    assert summary["versions"]["torch"] == torch.__version__
    assert summary["best_epoch"] == min(result.history, key=lambda r: r["val_loss"])["epoch"]
    assert summary["test"]["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert set(summary["test"]["per_class_accuracy"]) == set(CLASS_NAMES)
    assert summary["checkpoints"]["best"] == str(result.best_checkpoint)
    assert summary["wall_time_s"] >= sum(row["epoch_time_s"] for row in result.history)  # the epochs, and more


def test_per_class_table_is_printed_worst_first(trained):
    _, result, lines = trained
    table = next(line for line in lines if line.startswith("Per-class test accuracy")).splitlines()[1:]
    assert len(table) == 10
    rows = [re.fullmatch(r"  (.+?) +([\d.]+)%  \(([\d.]+)-([\d.]+)%, ([\d,]+) images\)", line) for line in table]
    assert all(rows), table
    values = [float(row.group(2)) for row in rows]
    assert values == sorted(values)
    assert {row.group(1) for row in rows} == set(CLASS_NAMES)
    confusion = result.confusion.long()
    for row in rows:  # each class's Wilson interval, from its own counts
        c = CLASS_NAMES.index(row.group(1))
        low, high = wilson_interval(int(confusion[c, c]), int(confusion[c].sum()))
        assert (row.group(3), row.group(4)) == (f"{100 * low:.1f}", f"{100 * high:.1f}")
        assert int(row.group(5).replace(",", "")) == int(confusion[c].sum())


def test_plots_are_pngs_of_sensible_size(small_config):
    result = train(small_config.replace(plots=True, epochs=2))
    for name, min_size in (("curves.png", (600, 300)), ("confusion.png", (500, 500))):
        with Image.open(result.output_dir / name) as image:
            assert image.format == "PNG" and image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
            assert len(image.convert("L").getcolors(maxcolors=256 * 256)) > 10  # something was drawn


def test_without_matplotlib_the_run_works_and_says_plots_were_skipped(small_config, monkeypatch, said):
    monkeypatch.setattr(reports_module, "pyplot", lambda: None)
    monkeypatch.setattr(reports_module, "new_figure", lambda **kwargs: None)
    result = train(small_config.replace(plots=True, epochs=1))
    assert any(line.startswith("Plots skipped: matplotlib is not installed") for line in said())
    assert not (result.output_dir / "curves.png").exists() and result.test_metrics["count"] == 200  # scored


def test_an_interrupted_run_leaves_its_history_and_a_resumed_one_has_no_duplicate_epochs(small_config):
    def sigint_at_iteration_25(trainer):
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=25), lambda e: os.kill(os.getpid(), signal.SIGINT))

    with pytest.raises(TrainingInterrupted) as info:
        train(small_config.replace(epochs=4), extra_handlers=[sigint_at_iteration_25])
    out = info.value.checkpoint.parent
    assert [row["epoch"] for row in read_csv(out / "metrics.csv")] == ["1", "2"]
    assert json.loads((out / "summary.json").read_text())["status"] == "interrupted"
    train(small_config.replace(epochs=4, resume="auto"))
    assert [row["epoch"] for row in read_csv(out / "metrics.csv")] == ["1", "2", "3", "4"]


def test_tensorboard_logs_loss_lr_and_validation(small_config):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(small_config.replace(tensorboard=True, epochs=2))
    events = EventAccumulator(str(result.output_dir / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"training/loss", "lr/group_0", "validation/loss", "validation/accuracy"} <= tags
    assert [e.step for e in events.Scalars("validation/accuracy")] == [10, 20]


def test_tensorboard_missing_is_a_clear_error(small_config, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("tensorboard", "tensorboardX", "torch.utils.tensorboard")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(FmnistError, match=r"^tensorboard needs the tensorboard package.*fmnist-ignite\[tensorboard\]"):
        train(small_config.replace(tensorboard=True, epochs=1))


def test_evaluate_gives_the_accuracy_the_run_reported(trained):
    config, result, _ = trained
    metrics = evaluate_checkpoint(result.best_checkpoint, config.data_dir, "cpu", verify=False)
    assert metrics["accuracy"] == pytest.approx(result.test_metrics["accuracy"])
    assert metrics["loss"] == pytest.approx(result.test_metrics["loss"], rel=1e-5)
    assert torch.equal(metrics["confusion"].cpu(), result.confusion)
    # A training checkpoint holds the model too: its "model" entry is what gets loaded.
    saved = torch.load(result.last_checkpoint, weights_only=True)["model"]
    loaded = load_model(result.last_checkpoint).state_dict()
    assert all(torch.equal(loaded[key], saved[key]) for key in saved)


def test_predict_gives_the_label_of_known_test_images(trained, tmp_path, capsys):
    config, result, _ = trained
    images, labels = load_fashion_mnist(config.data_dir, verify=False)["test"]
    png = tmp_path / "first.png"
    Image.fromarray(images[0].numpy(), mode="L").save(png)
    idx = write_idx(tmp_path / "ten-images", images[:10])
    model = load_model(result.best_checkpoint)
    names, pixels = load_images(png)
    assert names == [str(png)] and torch.equal(pixels[0], images[0])
    assert predict(model, pixels)[0][0] == CLASS_NAMES[labels[0]]
    assert [label for label, _ in predict(model, load_images(idx)[1])] == [CLASS_NAMES[i] for i in labels[:10]]

    assert main(["predict", str(result.best_checkpoint), str(png), str(idx)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 11 and out[0].startswith(f"{png}: {CLASS_NAMES[labels[0]]} (")
    assert out[1].startswith(f"{idx}[0]: ") and out[0].endswith("%)")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: Image.new("L", (32, 32)).save(p), "image is 32x32, expected 28x28"),
        (lambda p: Image.new("RGB", (28, 28)).save(p), "image mode RGB is not 8- or 16-bit grayscale"),
        (lambda p: p.write_text("hello"), "neither an image (PNG, JPEG, ...) nor an IDX file"),
    ],
)
def test_predict_refuses_wrong_images_with_one_line(trained, tmp_path, capsys, make, message):
    _, result, _ = trained
    path = tmp_path / "input.png"
    make(path)
    assert main(["predict", str(result.best_checkpoint), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err and err.count("\n") == 1


def test_evaluate_and_predict_take_a_run_directory_and_score_its_best_model(trained, tmp_path, capsys, monkeypatch):
    config, result, _ = trained
    from fmnist_ignite.data import fashion_mnist

    real = fashion_mnist.load_fashion_mnist  # the command verifies the data set: not the synthetic one here
    monkeypatch.setattr(
        "fmnist_ignite.analysis.inference.load_fashion_mnist", lambda d, verify=True, **kw: real(d, verify=False, **kw)
    )
    assert main(["evaluate", str(result.output_dir), "--data-dir", config.data_dir]) == 0
    by_dir = capsys.readouterr().out
    assert main(["evaluate", str(result.best_checkpoint), "--data-dir", config.data_dir]) == 0
    assert by_dir == capsys.readouterr().out and f"{result.test_metrics['accuracy']:.1%}" in by_dir

    images = write_idx(tmp_path / "five-images", real(config.data_dir, verify=False)["test"][0][:5])
    assert main(["predict", str(result.output_dir), str(images)]) == 0
    by_dir = capsys.readouterr().out
    assert main(["predict", str(result.best_checkpoint), str(images)]) == 0
    assert by_dir == capsys.readouterr().out and len(by_dir.splitlines()) == 5

    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'empty'}: a directory without a model (no best_model_*.pt or training checkpoint)\n"
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prlimit") is None, reason="util-linux's prlimit is not installed")
def test_predict_of_100000_images_runs_in_bounded_memory(trained, tmp_path):
    _, result, _ = trained
    idx = write_idx(tmp_path / "many-idx3-ubyte", synthetic_set(100_000, seed=5, marker=0)[0])
    four_gib = ["prlimit", f"--as={4 << 30}"]  # all of it at once needs more: the float images and activations
    command = [*four_gib, sys.executable, "-m", "fmnist_ignite", "predict", str(result.output_dir), str(idx)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 100_000 and lines[-1].startswith(f"{idx}[99999]: ")


def test_a_directory_where_a_file_is_read_is_named_as_a_directory(tmp_path):
    from fmnist_ignite.files.checkpoints import load_checkpoint
    from fmnist_ignite.files.reading import read_json

    (tmp_path / "summary.json").mkdir()
    with pytest.raises(FmnistError, match=r"summary.json: a directory, not a summary$"):
        read_json(tmp_path / "summary.json", 1000, "a summary")
    with pytest.raises(FmnistError, match=r"summary.json: a directory, not a checkpoint$"):
        load_checkpoint(tmp_path / "summary.json")


def test_evaluate_of_a_non_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "x.pt").write_text("not a checkpoint")
    assert main(["evaluate", str(tmp_path / "x.pt")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'x.pt'}: not a checkpoint")


@pytest.mark.parametrize("epochs", [1, 2, 5, 40])
def test_the_curves_tick_whole_epochs_from_the_first_epoch_on(epochs):
    pytest.importorskip("matplotlib")
    from fmnist_ignite import plot_curves

    rows = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.1 / e, "val_accuracy": 0.8 + e / 1000}
        for e in range(1, epochs + 1)
    ]
    for ax in plot_curves(rows).axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert low < 1 <= ticks[0] and ticks[-1] <= epochs < high  # every point inside, the first epoch at the left
        if epochs <= 5:
            assert ticks == list(range(1, epochs + 1))


def test_every_result_shows_itself_in_html_and_in_a_short_repr_without_tensors(small_config, tmp_path):
    from fmnist_ignite import Comparison, Interpretation, LRFinderResult, SeedsResult, TuneResult
    from fmnist_ignite.analysis.compare import RunScore
    from fmnist_ignite.analysis.statistics import mean_interval

    result = train(small_config.replace(epochs=1, plots=False))
    labels = torch.arange(200) % 10
    probabilities = torch.eye(10)[
        (labels + (labels % 3 == 0).long()) % 10
    ]  # classes 0, 3, 6, 9: each taken for the next
    interpretation = Interpretation(torch.zeros(200, 28, 28, dtype=torch.uint8), labels, probabilities)
    score = RunScore("a", tmp_path, 180, 200, 0.9, 0.85, 0.93)
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study()
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    shown = {
        "TrainResult": result,
        "Interpretation": interpretation,
        "most_confused": interpretation.most_confused(3),
        "top_losses": interpretation.top_losses(4),
        "Comparison": Comparison([score, score], "ab" * 32, 200, "no difference this test set can detect"),
        "SeedsResult": SeedsResult(
            [0, 1],
            [
                {"seed": s, "epochs_done": 2, "validation": None, "test": {"accuracy": a, "ci95": None}}
                for s, a in ((0, 0.9), (1, 0.92))
            ],
            [],
            None,
            mean_interval([0.9, 0.92]),
            tmp_path / "seeds_summary.json",
            tmp_path,
        ),  # fmt: skip
        "LRFinderResult": LRFinderResult(0.01, [1e-4 * 1.1**i for i in range(300)], [2.0] * 300),
        "TuneResult": TuneResult(study, tmp_path, None),
    }
    for name, value in shown.items():
        text, page = repr(value), value._repr_html_()
        assert "tensor(" not in text and len(text.splitlines()[0]) < 200 and len(text) < 1200, (name, text)
        assert "tensor(" not in page and "<" in page, name
    assert repr(interpretation) == "Interpretation(200 images, accuracy 60.00%)"  # 4 classes of 20 images wrong
    assert repr(shown["most_confused"]).splitlines()[1].split() == ["true", "predicted", "count"]
    assert shown["most_confused"] == list(shown["most_confused"]) and shown["most_confused"][0] == (
        "T-shirt/top",
        "Trouser",
        20,
    )
    assert "<th>probability</th>" in shown["top_losses"]._repr_html_()
    assert "suggestion=0.01, 300 learning rates" in repr(shown["LRFinderResult"])
    assert repr(result) == f"TrainResult(test accuracy {result.test_metrics['accuracy']:.2%}, 1 epoch, " + (
        f"output_dir='{result.output_dir}')"
    )
    assert "test accuracy mean 91.00%" in repr(shown["SeedsResult"])
    assert "<td" in shown["SeedsResult"]._repr_html_() and "92.00%" in shown["SeedsResult"]._repr_html_()

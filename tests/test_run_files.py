"""A run directory you can hand to anyone (issue 25): every file read back from it is bounded and checked, no write
follows a link planted in it, nothing it names is trusted to say what may be deleted, and a cut at any point
leaves a directory that ``--resume auto`` completes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import small_config_file

from fmnist_ignite import FmnistError, LrFindSettings, find_latest_checkpoint, load_checkpoint, train
from fmnist_ignite.cli.main import main
from fmnist_ignite.cli.main import train_main as run_py
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.summary import RunStatus, read_summary


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def finished(out: Path) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed", summary["status"]
    return summary


# --------------------------------------------------------------------------------------------- no link followed


def test_a_lock_planted_as_a_link_is_refused_and_its_target_is_untouched(small_config, tmp_path):
    out = Path(small_config.output_dir)
    out.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (out / ".lock").symlink_to(victim)
    with pytest.raises(FmnistError, match=r"\.lock is a symbolic link: refused"):
        train(small_config)
    assert victim.read_text() == "keep me\n"


def test_plots_planted_as_links_are_replaced_never_written_through(small_config, tmp_path):
    pytest.importorskip("matplotlib")
    out = Path(small_config.output_dir)
    out.mkdir(parents=True)
    victims = {}
    for name in ("curves.png", "confusion.png", "metrics.csv", "summary.json"):
        victims[name] = tmp_path / f"victim-{name}"
        victims[name].write_text("keep me")
        (out / name).symlink_to(victims[name])
    train(small_config.replace(epochs=1, plots=True))
    for name, victim in victims.items():
        assert victim.read_text() == "keep me", name
        assert not (out / name).is_symlink() and (out / name).stat().st_size > 20, name
    assert (out / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_the_lr_finder_plot_planted_as_a_link_is_replaced(small_config, tmp_path):
    pytest.importorskip("matplotlib")
    from fmnist_ignite import find_lr

    victim = tmp_path / "victim.png"
    victim.write_text("keep me")
    plot = tmp_path / "lr" / "lr_finder.png"
    plot.parent.mkdir()
    plot.symlink_to(victim)
    find_lr(small_config, LrFindSettings(1e-5, 10.0, iterations=10), plot_path=plot)
    assert victim.read_text() == "keep me" and plot.read_bytes().startswith(b"\x89PNG")


def test_a_checkpoint_list_read_back_never_names_a_file_to_delete_outside_its_directory(small_config, tmp_path):
    """The training checkpoint keeps the list of files its handler saved (to delete the oldest): data read back."""
    first = train(small_config.replace(epochs=1))
    victim = tmp_path / "victim.pt"
    victim.write_bytes(b"precious")
    checkpoint = load_checkpoint(first.last_checkpoint)
    saved = checkpoint["checkpointer"]["_saved"]
    saved.insert(0, (0, "../victim.pt"))  # the oldest entries: what the handler deletes when it saves the next
    saved.insert(0, (0, str(victim)))
    torch.save(checkpoint, first.last_checkpoint)
    train(small_config.replace(epochs=3, resume="auto"))
    assert victim.read_bytes() == b"precious"


# --------------------------------------------------------------------------- a cut at any point resumes


@pytest.mark.parametrize(
    "left",
    [
        pytest.param(("config.json",), id="killed-in-epoch-1"),
        pytest.param(("config.json", "BEST"), id="killed-between-the-best-model-and-the-checkpoint"),
        pytest.param(("config.json", "BEST", "training_checkpoint_1.pt", "metrics.csv"), id="killed-after-epoch-1"),
        pytest.param(("config.json", "BEST", "training_checkpoint_1.pt", "PARTIAL"), id="killed-writing-epoch-2"),
        pytest.param(("ALL",), id="killed-after-the-end"),
    ],
)
def test_a_directory_cut_at_any_instant_is_completed_by_resume_auto(small_config, tmp_path, left):
    whole = train(small_config.replace(epochs=2, output_dir=str(tmp_path / "whole")))
    one = train(small_config.replace(epochs=1, output_dir=str(tmp_path / "one")))  # epoch 1's files
    cut = tmp_path / "cut"
    if left == ("ALL",):
        shutil.copytree(whole.output_dir, cut)
    else:
        cut.mkdir()
        for name in left:
            if name == "BEST":
                shutil.copy(one.best_checkpoint, cut)
            elif name == "PARTIAL":  # the temporary files of writes a kill cut short
                (cut / ".training_checkpoint_2.pt.a1b2c3d4.partial").write_bytes(b"half a checkpoint")
                (cut / ".summary.json.zz99yy88.partial").write_text("{")
            else:
                shutil.copy(one.output_dir / name, cut)
    resumed = train(small_config.replace(epochs=2, resume="auto", output_dir=str(cut)))
    assert resumed.test_metrics["accuracy"] == whole.test_metrics["accuracy"]
    summary = finished(cut)
    assert summary["epochs_done"] == 2
    assert not [name for name in names(cut) if name.endswith(".partial")]
    assert sorted(p.name for p in cut.glob("training_checkpoint_*.pt"))[-1] == "training_checkpoint_2.pt"


def test_resume_auto_in_a_copied_directory_goes_by_the_state_not_the_file_times(small_config, capsys, said):
    """A copy gives every file a new time; a stale interrupted checkpoint of epoch 1 may be the newest file."""
    result = train(small_config.replace(epochs=2))
    out = result.output_dir
    shutil.copy(out / "training_checkpoint_1.pt", out / "interrupted_checkpoint_3.pt")  # epoch 1's stop
    os.utime(out / "training_checkpoint_2.pt", (1, 1))
    said.clear()
    again = train(small_config.replace(epochs=2, resume="auto"))
    assert f"Resuming from {out / 'training_checkpoint_2.pt'}" in said()
    assert again.epochs_run == 2 and not any(line.startswith("Epoch ") for line in said())  # nothing trained again
    assert find_latest_checkpoint(out).name == "training_checkpoint_2.pt"


@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_a_checkpoint_that_is_a_broken_link_is_set_aside_as_damaged(small_config, link, said):
    result = train(small_config.replace(epochs=1))
    out = result.output_dir
    bad = out / "training_checkpoint_9.pt"
    bad.symlink_to(out / "nowhere.pt" if link == "dangling" else bad)
    train(small_config.replace(epochs=2, resume="auto"))
    assert any(line.startswith(f"Skipped {bad}: a symbolic link") for line in said())
    assert (out / "training_checkpoint_9.pt.damaged").is_symlink() and not bad.exists()
    assert finished(out)["epochs_done"] == 2


# ------------------------------------------------------------------------- a resume keeps its run's settings


def test_a_checkpoint_resumed_into_another_directory_keeps_its_own_settings(tmp_path, capsys):
    config_file = small_config_file(tmp_path, model="cnn", lr=0.01)
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_py(["--config", str(config_file), "--epochs", "1", "--output-dir", str(first)]) == 0
    checkpoint = first / "training_checkpoint_1.pt"
    assert run_py(["--resume", str(checkpoint), "--output-dir", str(second)]) == 0
    saved = json.loads((second / "config.json").read_text())
    assert (saved["model"], saved["epochs"], saved["lr"]) == ("cnn", 1, 0.01)  # not the defaults' mlp, 5, 0.001
    summary = finished(second)
    assert summary["epochs_done"] == 1 and summary["resumed_from"] == str(checkpoint)
    assert not list(second.glob("training_checkpoint_*.pt"))  # a finished run: scored again, not trained on


def test_a_checkpoint_copied_out_of_its_run_resumes_with_the_settings_it_keeps(tmp_path, capsys):
    config_file = small_config_file(tmp_path, model="cnn", lr=0.01)
    first, alone = tmp_path / "first", tmp_path / "alone"
    assert run_py(["--config", str(config_file), "--epochs", "1", "--output-dir", str(first)]) == 0
    alone.mkdir()
    shutil.copy(first / "training_checkpoint_1.pt", alone / "copied.pt")
    assert run_py(["--resume", str(alone / "copied.pt"), "--epochs", "2", "--output-dir", str(tmp_path / "on")]) == 0
    saved = json.loads((tmp_path / "on" / "config.json").read_text())
    assert (saved["model"], saved["epochs"], saved["lr"]) == ("cnn", 2, 0.01)


# ----------------------------------------------------------------------------- files read back are input


BAD_CONFIGS = {
    "a-list": ("[1, 2]", "not a saved configuration (a list"),
    "a-string": ('"hello"', "not a saved configuration (a str"),
    "lr-as-text": ('{"lr": "0.001"}', "lr: expected float, got '0.001'"),
    "epochs-null": ('{"epochs": null}', "epochs: expected int, got None"),
    "nested-30k": ("[" * 30_000 + "]" * 30_000, "nested too deep"),
    "nested-100k": ("[" * 100_000 + "]" * 100_000, "more than a saved configuration may be"),
    "unknown-key": ('{"lr": 0.001, "shiny": 1}', "unknown setting 'shiny'"),
    "a-bad-value": ('{"dropout": 1.5}', "dropout=1.5: must be in [0, 1)"),
    "nan": ('{"lr": NaN}', "not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_crafted_config_json_is_one_line_for_a_resume_and_for_evaluate(tmp_path, case, capsys):
    text, expected = BAD_CONFIGS[case]
    config_file = small_config_file(tmp_path)
    out = tmp_path / "run"
    assert run_py(["--config", str(config_file), "--epochs", "1", "--output-dir", str(out)]) == 0
    capsys.readouterr()
    (out / "config.json").write_text(text)
    assert run_py(["--resume", "auto", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {out / 'config.json'}") and expected in err, err
    best = next(out.glob("best_model_*.pt"))
    assert main(["evaluate", str(best), "--data-dir", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_a_huge_sparse_config_json_is_refused_by_its_size_unread(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / "config.json", "wb") as sparse:
        sparse.truncate(1_500_000_000)  # 1.5 GB of nothing, on disk in no time
    assert run_py(["--resume", "auto", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"error: {out / 'config.json'}: 1,500,000,000 bytes, more than a saved configuration may be (65,536)\n"
    )


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda s: [1], id="a-list"),
        pytest.param(lambda s: {**s, "config": [1]}, id="config-a-list"),
        pytest.param(lambda s: {**s, "test": {**s["test"], "accuracy": 1.7}}, id="accuracy-1.7"),
        pytest.param(lambda s: {**s, "history": [[[[1]]]]}, id="nested-history"),
    ],
)
def test_seeds_over_a_damaged_summary_score_that_seed_again_never_report_a_wrong_mean(small_config, damage, said):
    from fmnist_ignite import train_seeds

    config = small_config.replace(epochs=1, seeds="0,1")
    first = train_seeds(config)
    path = first.output_dir / "seed-0" / "summary.json"
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    said.clear()
    again = train_seeds(config)
    assert any(line.startswith(f"Seed 0: {path}: ") and line.endswith("its run is scored again") for line in said())
    assert again.test is not None and again.test.mean == pytest.approx(first.test.mean) and 0 <= again.test.mean <= 1
    assert read_summary(path).status is RunStatus.COMPLETED


def test_a_summary_writes_no_nan_a_reader_refuses(tmp_path):
    from fmnist_ignite.files.summary import RunSummary, write_summary

    summary = RunSummary(history=[{"epoch": 1, "train_loss": float("nan"), "val_accuracy": 0.5}])
    write_summary(tmp_path / "summary.json", summary)
    assert "NaN" not in (tmp_path / "summary.json").read_text()
    assert read_summary(tmp_path / "summary.json").history == [{"epoch": 1, "train_loss": None, "val_accuracy": 0.5}]


def test_write_durably_names_the_real_file_when_even_the_temporary_cannot_be_made(tmp_path):
    missing = tmp_path / "gone" / "config.json"
    with pytest.raises(OSError) as info:
        write_durably(missing, "{}")
    assert info.value.filename == str(missing)

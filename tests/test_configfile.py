"""Configuration files: precedence, a run replayed from its saved config.json, and one line per bad file."""

from __future__ import annotations

import json

import pytest
import torch

from fmnist_ignite import RECIPES, train
from fmnist_ignite.cli.main import train_main as main
from fmnist_ignite.cli.parser import build_parser, config_from_args


def config_of(argv):
    return config_from_args(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    "name, text",
    [
        ("run.yaml", "recipe: fast\nlr: 0.01\nepochs: 4\ndropout: 0.1\n"),
        ("run.json", '{"recipe": "fast", "lr": 0.01, "epochs": 4, "dropout": 0.1}'),
        ("run.toml", 'recipe = "fast"\nlr = 0.01\nepochs = 4\ndropout = 0.1\n'),
    ],
)
def test_the_file_overrides_its_recipe_and_flags_override_the_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    config = config_of(["--config", str(path), "--epochs", "7"])
    assert (config.optimizer, config.scheduler, config.batch_size) == ("adamw", "onecycle", 256)  # the recipe
    assert (config.lr, config.dropout) == (0.01, 0.1)  # the file over its recipe
    assert config.epochs == 7  # the flag over the file
    assert config_of(["--config", str(path), "--recipe", "tutorial"]).optimizer == "adamw"  # tutorial adds nothing
    assert config_of(["--config", str(path), "--recipe", "best"]).dropout == RECIPES["best"]["dropout"] != 0.1


def test_a_run_replayed_from_its_saved_config_ends_bitwise_equal(small_config, tmp_path, capsys):
    first = train(small_config.replace(optimizer="adamw", lr=0.01, dropout=0.2, seed=5))
    replay = tmp_path / "replay"
    assert main(["--config", str(first.output_dir / "config.json"), "--output-dir", str(replay)]) == 0
    assert "Training completed" in capsys.readouterr().out
    a = torch.load(first.last_checkpoint, weights_only=True)["model"]
    b = torch.load(replay / first.last_checkpoint.name, weights_only=True)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert json.loads((replay / "config.json").read_text())["seed"] == 5


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.yaml", "lr: 0.1\nbatchsize: 32\n", "unknown key 'batchsize': did you mean 'batch_size'?"),
        ("bad.yaml", "epochs: ten\n", "epochs: expected int, got 'ten'"),
        ("bad.yaml", "one_hot: 1\n", "one_hot: expected bool, got 1"),
        ("bad.yaml", "epochs: true\n", "epochs: expected int, got True"),
        ("bad.yaml", "lr: [0.1\n", "not valid yaml: "),
        ("bad.json", '{"lr": 0.1,}', "not valid json: "),
        ("bad.yaml", "- lr\n- 0.1\n", "expected a mapping of settings (key: value), got list"),
        ("bad.yaml", "lr: -1\n", "bad.yaml: lr=-1: must be > 0"),
        ("bad.yaml", "recipe: fastest\n", "recipe: unknown recipe 'fastest': choose one of tutorial, best, fast"),
        ("missing.yaml", None, "missing.yaml: no such file"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_the_file_and_the_key(tmp_path, capsys, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    assert main(["--config", str(path), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_threads_may_be_null_in_a_file_and_floats_take_ints(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("threads: null\nlr: 1\n")
    config = config_of(["--config", str(path)])
    assert config.threads is None and config.lr == 1

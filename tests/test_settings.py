"""Settings defined once: each Config field's Setting gives its flag, its help, whether a resume may change
it and whether the tuner may search it; the command line, config files, resume check and tuner follow."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from conftest import write_synthetic

from fmnist_ignite.cli.main import train_main as main
from fmnist_ignite.cli.parser import NEGATED_FLAGS, build_parser, config_from_args
from fmnist_ignite.config.fields import FLAGS
from fmnist_ignite.config.settings import Config, environment_settings, settings
from fmnist_ignite.data.loaders import get_data_loaders
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.saved_config import CHANGEABLE_ON_RESUME

FLAG_LESS = {"split_seed", "n_saved", "eval_batch_size", "verify_data", "score_test"}
FLAG_LESS |= {"allow_download", "system_data_dir"}  # the environment decides them, or a file
# Every training flag the command line had before the settings were defined once, and the one added since.
FLAGS_BEFORE = {
    "--model", "--epochs", "--batch-size", "--lr", "--momentum", "--optimizer", "--weight-decay", "--dropout",
    "--label-smoothing", "--scheduler", "--patience", "--monitor", "--val-size", "--data-dir", "--output-dir",
    "--seed", "--device", "--threads", "--precision", "--log-interval", "--one-hot", "--loader", "--no-progress",
    "--resume", "--no-restore-best", "--nproc-per-node", "--backend", "--nnodes", "--node-rank", "--master-addr",
    "--master-port", "--tensorboard", "--no-plots",
}  # fmt: skip


def config_of(*argv: str) -> Config:
    return config_from_args(build_parser().parse_args(list(argv)))


def parser_options() -> set[str]:
    return {option for action in build_parser()._actions for option in action.option_strings}


# ---------------------------------------------------------------------------------------- the one table


def test_every_field_has_a_flag_or_is_declared_flag_less():
    assert all("setting" in field.metadata for field in dataclasses.fields(Config))
    assert all(s.flag in FLAGS for s in settings().values())
    assert {name for name, s in settings().items() if s.flag is None} == FLAG_LESS
    options = parser_options()
    assert all(s.option in options for s in settings().values() if s.flag is not None)


def test_on_off_flags_are_bool_fields_whose_flag_moves_them_off_their_default():
    for name, s in settings().items():
        if s.flag in ("switch", "negated"):
            assert s.value_type is bool and s.default is (s.flag == "negated"), name
        if s.flag == "value":
            assert s.value_type is not bool, name


def test_the_command_line_keeps_every_flag_it_had_and_adds_peer_timeout():
    assert parser_options() - {"-h", "--help", "--version", "--config", "--recipe"} == FLAGS_BEFORE | {
        "--peer-timeout",
        "--seeds",
        "--display",
        "--hflip",  # issue 20: training augmentation, test-time flips, weight averaging
        "--shift",
        "--ema",
        "--tta",
        "--ns-steps",  # issue 30: Muon's Newton-Schulz iterations, time to a target accuracy
        "--target-accuracy",
        "--tracker",  # issue 28: MLflow and W&B
        "--validate-every",  # issue 30: fewer validations (the cnn recipe's: every 5 epochs)
    }
    choices = {a.option_strings[0]: a.choices for a in build_parser()._actions if a.choices}
    assert choices["--backend"] == ("gloo", "nccl") and choices["--model"] == ("mlp", "cnn")
    assert choices["--precision"] == ("auto", "fp32", "bf16")


def test_each_flag_s_help_gives_the_default_from_config():
    helps = {a.option_strings[0]: a.help for a in build_parser()._actions if a.option_strings}
    for s in settings().values():
        if s.flag == "value" and s.default is not None:
            assert str(s.default) in helps[s.option], s.option
    assert "(300)" in helps["--peer-timeout"] and "(64)" in helps["--batch-size"]


def test_what_a_resume_may_change_and_what_the_tuner_leaves_alone():
    before = {"epochs", "device", "threads", "progress", "plots", "tensorboard", "output_dir", "log_interval"}
    before |= {"data_dir", "resume", "restore_best", "score_test", "backend", "master_addr", "master_port", "node_rank"}
    assert CHANGEABLE_ON_RESUME == before | {
        "peer_timeout",
        "allow_download",
        "system_data_dir",
        "seeds",
        "display",
        "eval_batch_size",
        "tracker",
        "validate_every",  # how often it validates, not what it trains
    }
    tuning = pytest.importorskip("fmnist_ignite.experiments.search_space")
    assert set(tuning.RUN_SETTINGS) == {"output_dir", "resume", "score_test", "progress", "plots"} | {
        "peer_timeout",
        "allow_download",
        "system_data_dir",
        "seeds",
        "display",
        "tracker",
    }


# A new setting, added the one way: a field with its Setting. Everything else must follow from it.
WITH_A_NEW_SETTING = """
from __future__ import annotations

import dataclasses, json, sys
import fmnist_ignite.config.settings as config

@dataclasses.dataclass
class Config(config.Config):
    warmup_epochs: int = config.setting(2, "epochs of warm-up ({default})", on_resume=True, tunable=False)
    shuffle: bool = config.setting(True, "do not shuffle", flag="negated")

config.Config = Config
from fmnist_ignite.cli import parser as cli
from fmnist_ignite.config import files as configfile
from fmnist_ignite.experiments import search_space as tuning
from fmnist_ignite.files import saved_config as rundir

parser = cli.build_parser()
given = cli.config_from_args(parser.parse_args(["--warmup-epochs", "5", "--no-shuffle"]))
help = {a.option_strings[0]: a.help for a in parser._actions if a.option_strings}
try:
    configfile.read_config_file(sys.argv[1])
    refused = None
except Exception as exc:
    refused = str(exc)
print(json.dumps({
    "given": [given.warmup_epochs, given.shuffle],
    "default": cli.config_from_args(parser.parse_args([])).warmup_epochs,
    "help": help["--warmup-epochs"],
    "negated": cli.NEGATED_FLAGS.get("no_shuffle"),
    "on_resume": sorted({"warmup_epochs", "shuffle"} & rundir.CHANGEABLE_ON_RESUME),
    "not_tunable": sorted({"warmup_epochs", "shuffle"} & set(tuning.RUN_SETTINGS)),
    "refused": refused,
}))
"""


def test_a_new_setting_is_one_edit_the_parser_resume_check_tuner_and_files_pick_up(tmp_path):
    pytest.importorskip("optuna")
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("warmup_epochs: two\n")
    proc = subprocess.run(
        [sys.executable, "-c", WITH_A_NEW_SETTING, str(bad_file)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["given"] == [5, False] and found["default"] == 2
    assert found["help"] == "epochs of warm-up (2)" and found["negated"] == "shuffle"
    assert found["on_resume"] == ["warmup_epochs"] and found["not_tunable"] == ["warmup_epochs"]
    assert found["refused"] == f"{bad_file}: warmup_epochs: expected int, got 'two'"


# ---------------------------------------------------------------------------------- flags onto Config


def test_flags_parse_into_their_config_values():
    config = config_of(
        "--epochs", "3", "--lr", "0.01", "--optimizer", "adamw", "--threads", "2", "--output-dir", "out",
        "--backend", "gloo", "--resume", "auto", "--one-hot", "--tensorboard", "--peer-timeout", "60",
    )  # fmt: skip
    assert (config.epochs, config.lr, config.optimizer, config.threads) == (3, 0.01, "adamw", 2)
    assert config.output_dir == "out"
    assert (config.backend, config.resume, config.one_hot, config.tensorboard) == ("gloo", "auto", True, True)
    assert config.peer_timeout == 60


def test_the_negated_flags_turn_their_settings_off_and_only_when_given():
    assert NEGATED_FLAGS == {"no_progress": "progress", "no_restore_best": "restore_best", "no_plots": "plots"}
    assert config_of() == Config()
    config = config_of("--no-progress", "--no-restore-best", "--no-plots")
    assert (config.progress, config.restore_best, config.plots) == (False, False, False)


def test_a_flag_of_the_wrong_type_or_choice_is_refused_by_the_parser(capsys):
    for argv in (["--epochs", "two"], ["--optimizer", "rmsprop"], ["--peer-timeout", "1.5"]):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(argv)
        assert exit_info.value.code == 2
    assert "invalid int value: '1.5'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ peer timeout


def test_peer_timeout_defaults_to_five_minutes_and_refuses_less_than_a_second(capsys):
    assert Config().peer_timeout == 300 and Config(peer_timeout=1).validate().peer_timeout == 1
    with pytest.raises(FmnistError, match=r"^peer_timeout=0: must be in \[1, 604800\] seconds$"):
        Config(peer_timeout=0).validate()
    assert main(["--peer-timeout", "-5"]) == 2
    assert capsys.readouterr().err == "error: --peer-timeout -5: must be in [1, 604800] seconds\n"


def test_peer_timeout_in_a_config_file_is_type_checked(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("peer_timeout: soon\n")
    assert main(["--config", str(path)]) == 2
    assert capsys.readouterr().err == f"error: {path}: peer_timeout: expected int, got 'soon'\n"


# ------------------------------------------------------------------------------------------ environment


def test_the_environment_decides_downloads_and_the_system_copy_only_where_left_none(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("FMNIST_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path))
    assert environment_settings() == {"allow_download": True, "system_data_dir": str(tmp_path)}
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert Config().with_environment().allow_download is False
    monkeypatch.setenv("FMNIST_ALLOW_DOWNLOAD", "1")
    assert Config().with_environment().allow_download is True
    kept = Config(allow_download=False, system_data_dir="/elsewhere").with_environment()
    assert (kept.allow_download, kept.system_data_dir) == (False, "/elsewhere")
    assert Config().allow_download is None and Config().system_data_dir is None  # decided at the entry point


def test_the_data_comes_from_the_config_s_system_copy_not_the_environment_s(tmp_path, small_config):
    system = write_synthetic(tmp_path / "system")
    config = small_config.replace(data_dir=str(tmp_path / "empty"), system_data_dir=str(system))
    (tmp_path / "empty").mkdir()
    assert len(get_data_loaders(config)["test"].dataset) == 200  # FMNIST_DATA_DIR (conftest) holds nothing


def test_a_resume_takes_the_environment_s_say_afresh_not_the_saved_run_s(tmp_path):
    saved = {**dataclasses.asdict(Config(epochs=7)), "allow_download": False, "system_data_dir": "/old/node"}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = config_of("--resume", "auto", "--output-dir", str(tmp_path))
    assert config.epochs == 7 and (config.allow_download, config.system_data_dir) == (None, None)

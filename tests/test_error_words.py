"""An error names a setting structurally (issue 39, step 3): each front end says it in its own words, Python
``batch_size=0``, ``resume='auto'``, ``plots=False``, the command line ``--batch-size 0``, ``--resume auto``,
``--no-plots``; a setting with no flag by its settings-file key on both; no message rewritten by patterns."""

from __future__ import annotations

import ast
import pickle
import re
from pathlib import Path

import pytest
from helpers import cli

import fmnist_ignite
from fmnist_ignite import Config
from fmnist_ignite.cli.main import main
from fmnist_ignite.config.fields import named
from fmnist_ignite.errors import Command, FmnistError, Message, Named, SettingError, TrainingInterrupted

PACKAGE = Path(fmnist_ignite.__file__).parent


def words(error: FmnistError) -> tuple[str, str]:
    """(Python's words, the command line's) of ``error``."""
    return str(error), error.on_command_line()


def test_a_setting_out_of_its_range_names_its_field_in_python_and_its_flag_on_the_command_line(capsys):
    with pytest.raises(SettingError) as info:
        Config(batch_size=0).validate()
    assert words(info.value) == ("batch_size=0: must be at least 1", "--batch-size 0: must be at least 1")
    assert main(["train", "--batch-size", "0"]) == 2
    assert capsys.readouterr().err == "error: --batch-size 0: must be at least 1\n"


def test_a_rule_between_settings_names_the_other_one_in_each_front_end_s_words():
    with pytest.raises(SettingError) as info:
        Config(patience=2, val_size=0).validate()
    assert words(info.value) == (
        "patience=2: early stopping needs a validation set: set val_size above 0",
        "--patience 2: early stopping needs a validation set: set --val-size above 0",
    )


def test_resume_advice_is_said_as_a_setting_and_as_a_command_to_run(tmp_path):
    from fmnist_ignite.analysis.predictions import load_predictions

    run = tmp_path / "run"
    run.mkdir()
    (run / "training_checkpoint_1.pt").write_bytes(b"")
    with pytest.raises(FmnistError) as info:
        load_predictions(run)
    python, command_line = words(info.value)
    assert python.endswith(
        f"score it again from its checkpoints with: train(config.replace(resume='auto', output_dir='{run}'))"
    )
    assert command_line.endswith(
        f"score it again from its checkpoints with: fmnist-ignite train --resume=auto --output-dir={run}"
    )
    advice = Message("continue it with {resume}", resume=named(Config, "resume", "auto"))
    assert (str(advice), advice.said(command_line=True)) == (
        "continue it with resume='auto'",
        "continue it with --resume auto",
    )


def test_a_negated_switch_and_a_setting_without_a_flag():
    assert (named(Config, "plots", False).said(False), named(Config, "plots", False).said(True)) == (
        "plots=False",
        "--no-plots",
    )
    assert named(Config, "tensorboard", True).said(True) == "--tensorboard"
    assert named(Config, "eval_batch_size", 64).said(True) == "eval_batch_size=64"  # its settings-file key
    import torch

    from fmnist_ignite.run.training import out_of_memory_error

    error = out_of_memory_error(RuntimeError("can't allocate memory"), Config(batch_size=64), torch.device("cpu"))
    python, command_line = words(error)
    assert python.endswith("lower batch_size (64) or eval_batch_size (500), or use a larger machine")
    assert command_line.endswith("lower --batch-size (64) or eval_batch_size (500), or use a larger machine")
    with pytest.raises(SettingError) as info:
        Config(system_data_dir=5).validate()  # a flag-less setting refused: its key on the command line too
    assert words(info.value) == ("system_data_dir=5: must be str or None",) * 2


def test_a_notebook_shows_the_python_words_and_the_command_line_prints_its_own(tmp_path):
    from fmnist_ignite.experiments.seeds import parse_seeds

    with pytest.raises(FmnistError) as info:
        parse_seeds("0,0", 0)
    assert info.value._render_traceback_() == ["FmnistError: seeds='0,0': a seed is named twice"]
    proc = cli("train", "--seeds", "0,0", "--output-dir", tmp_path / "run")
    assert (proc.returncode, proc.stderr) == (2, "error: --seeds 0,0: a seed is named twice\n")


def test_an_error_keeps_its_structure_across_processes(tmp_path):
    error = FmnistError(
        "{path}: lower {lr}; then {evaluate}", path="a{b}", lr=Named("lr"), evaluate=Command.evaluate(tmp_path / "x y")
    )
    for again in (error, pickle.loads(pickle.dumps(error))):  # a spawned worker's error reaches its launcher so
        assert words(again) == (
            f"a{{b}}: lower lr; then evaluate_checkpoint('{tmp_path / 'x y'}')",
            f"a{{b}}: lower --lr; then fmnist-ignite evaluate '{tmp_path / 'x y'}'",
        )
    stop = TrainingInterrupted(Message("stopped; {resume}", resume=Named("resume", "auto")), 130, Path("c"), Path("d"))
    again = pickle.loads(pickle.dumps(stop))
    assert (again.exit_code, again.checkpoint, again.on_command_line()) == (130, Path("c"), "stopped; --resume auto")
    assert again._render_traceback_() == [
        "TrainingInterrupted: stopped; resume='auto'",
        "Continue it with resume='auto' and output_dir='d'",
    ]


ERRORS = {"FmnistError", "SettingError", "CouldNotWrite", "DirectoryInUse", "NonFiniteLoss", "TrainingInterrupted"}
FLAG = re.compile(r"(?<![\w/.-])--[a-z]")


def messages() -> list[tuple[str, int, ast.Call]]:
    """(module, line, call) for each error or ``Message`` built in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ERRORS | {"Message"}:
                found.append((str(path.relative_to(PACKAGE)), node.lineno, node))
    return found


def test_no_message_of_the_library_writes_a_flag_as_text():
    """A message that names a setting names it with a field; only the command line's own (``cli/``, about its
    parser and its ``--output``) may write a flag, and only it raises them."""
    written = [
        f"{module}:{line}"
        for module, line, call in messages()
        if not module.startswith("cli/")
        for text in ast.walk(call.args[0] if call.args else call)
        if isinstance(text, ast.Constant) and isinstance(text.value, str) and FLAG.search(text.value)
    ]
    assert not written


def test_a_template_with_fields_is_no_f_string():
    """Its values are fields, so a brace in a path is never read as one."""
    mixed = [
        f"{module}:{line}"
        for module, line, call in messages()
        if {keyword.arg for keyword in call.keywords} - {"checkpoint", "output_dir"}  # TrainingInterrupted's own
        and call.args
        and isinstance(call.args[0], ast.JoinedStr)
    ]
    assert not mixed

"""The learning-rate finder, which needs no Optuna; and tune without Optuna, which says how to get it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import small_config_file

from fmnist_ignite.cli.main import main
from fmnist_ignite.config.commands import LrFindSettings
from fmnist_ignite.core.models import Net
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.experiments.lr_finder import find_lr

# The command line run with Optuna made unimportable, as where the tune extra is not installed.
WITHOUT_OPTUNA = """
import sys
sys.modules["optuna"] = None
from fmnist_ignite.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def run_without_optuna(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_OPTUNA, *argv], capture_output=True, text=True, timeout=300, check=False
    )


def test_lr_find_suggests_a_rate_in_its_range_writes_the_plot_and_restores_the_weights(small_config, tmp_path):
    torch.manual_seed(0)
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sweep = LrFindSettings(1e-5, 1.0, iterations=30)
    result = find_lr(small_config, sweep, plot_path=tmp_path / "lr_finder.png", model=model)
    assert 1e-5 <= result.suggestion <= 1.0
    assert result.lrs[0] < result.lrs[-1] and len(result.lrs) == len(result.losses) >= 3
    assert result.plot_path == tmp_path / "lr_finder.png" and result.plot_path.stat().st_size > 1000
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_lr_find_command_prints_the_suggestion_and_the_train_command(tmp_path, capsys):
    config = small_config_file(tmp_path, batch_size=20)
    code = main(["lr-find", "--config", str(config), "--iterations", "40", "--output-dir", str(tmp_path / "lrf")])
    out = capsys.readouterr().out
    assert code == 0
    suggested = float(out.split("Suggested learning rate: ")[1].split()[0])
    assert 1e-6 <= suggested <= 1.0
    assert f"Train with it: fmnist-ignite train --config {config} --iterations" not in out
    assert f"Train with it: fmnist-ignite train --config {config} --lr {suggested:.3g}" in out
    assert (tmp_path / "lrf" / "lr_finder.png").is_file()


def test_lr_find_refuses_a_falling_range_in_one_line(small_config):
    with pytest.raises(FmnistError, match="must rise"):
        find_lr(small_config, LrFindSettings(start_lr=1.0, end_lr=1e-3))


def test_a_curve_without_a_fall_is_one_line_not_ignite_s_traceback(small_config):
    with pytest.raises(FmnistError, match=r"^no learning rate to suggest: .* raise iterations or widen the range$"):
        find_lr(small_config, LrFindSettings(iterations=3))


@pytest.mark.slow  # a subprocess
def test_lr_find_works_without_optuna(tmp_path):
    config = small_config_file(tmp_path, batch_size=20)
    proc = run_without_optuna("lr-find", "--config", str(config), "--iterations", "40", "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "Suggested learning rate: " in proc.stdout and "Traceback" not in proc.stderr


def test_tune_without_optuna_says_in_one_line_how_to_install_it(tmp_path):
    proc = run_without_optuna("tune", "--config", str(small_config_file(tmp_path)), "--trials", "1")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: tune needs Optuna") and proc.stderr.count("\n") == 1, proc.stderr
    assert "pip install 'fmnist-ignite[tune]'" in proc.stderr

"""What a newcomer trips on (issue 31): the small untruths and the noise, each pinned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import small_config_file
from helpers import ROOT, signal_at

from fmnist_ignite import FmnistError, Training, TrainingInterrupted, train
from fmnist_ignite.cli.main import main
from fmnist_ignite.config.settings import download_allowed
from fmnist_ignite.data import fashion_mnist

REAL_DOWNLOAD = fashion_mnist._download_with_torchvision  # before the offline fixture replaces it


def test_fmnist_allow_download_says_yes_or_no_anywhere_and_slurm_alone_says_no():
    assert download_allowed({}) is True
    assert download_allowed({"FMNIST_ALLOW_DOWNLOAD": "0"}) is False  # outside SLURM too
    assert download_allowed({"SLURM_JOB_ID": "7"}) is False
    assert download_allowed({"SLURM_JOB_ID": "7", "FMNIST_ALLOW_DOWNLOAD": "1"}) is True


def test_a_failed_download_says_why_not_just_error_downloading(monkeypatch, tmp_path):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            try:
                raise ConnectionError("[Errno -3] Temporary failure in name resolution")
            except ConnectionError as exc:
                raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:") from exc

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    reason = REAL_DOWNLOAD(tmp_path)  # conftest keeps the tests offline with a stub in its place
    assert reason == (
        "RuntimeError: Error downloading train-images-idx3-ubyte.gz: "
        "ConnectionError: [Errno -3] Temporary failure in name resolution"
    )


def test_tensorboard_without_its_package_is_refused_before_the_data_is_loaded(small_config, monkeypatch):
    import importlib.util

    from fmnist_ignite.run import training as training_module

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real_find_spec(name, *a)
    )
    monkeypatch.setattr(training_module, "get_data_loaders", lambda *a, **k: pytest.fail("the data was loaded"))
    with pytest.raises(FmnistError, match=r"^tensorboard needs the tensorboard package \(not installed\)"):
        Training(small_config.replace(tensorboard=True))


def test_resuming_an_early_stopped_run_scores_it_again_and_trains_no_more(small_config, said):
    config = small_config.replace(epochs=10, patience=1, monitor="accuracy", lr=0.05)
    first = train(config)
    assert first.stopped_early, "the synthetic data reaches 100% and stops improving"
    checkpoints = sorted(p.name for p in first.output_dir.glob("training_checkpoint_*.pt"))
    said.clear()
    again = train(config.replace(resume="auto"))
    assert not any(line.startswith("Epoch ") for line in said()) and again.epochs_run == first.epochs_run
    assert sorted(p.name for p in first.output_dir.glob("training_checkpoint_*.pt")) == checkpoints
    assert again.test_metrics["accuracy"] == first.test_metrics["accuracy"]


def test_a_run_interrupted_in_its_first_epoch_has_done_no_epoch(small_config):
    with pytest.raises(TrainingInterrupted):
        train(small_config, extra_handlers=[signal_at(3)])
    summary = json.loads((Path(small_config.output_dir) / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_done"] == 0


def test_lr_find_refuses_the_flags_it_would_ignore(tmp_path, capsys):
    config = small_config_file(tmp_path)
    for flags, named in ((["--seeds", "0,1"], "--seeds"), (["--nproc-per-node", "2"], "--nproc-per-node")):
        assert main(["lr-find", "--config", str(config), *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: lr-find runs one process with one seed (--seed): leave out ") and named in err


@pytest.mark.slow  # a subprocess
def test_the_compose_example_is_seeded_and_never_writes_over_an_earlier_run(tmp_path):
    source = (ROOT / "examples" / "compose_handlers.py").read_text()
    assert "manual_seed(0)" in source
    (tmp_path / "runs" / "composed").mkdir(parents=True)
    (tmp_path / "runs" / "composed" / "training_checkpoint_2.pt").write_bytes(b"an earlier run's")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "compose_handlers.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "error: runs/composed already holds checkpoints: move them away, or set OUTPUT to a new directory"
    )
    assert (tmp_path / "runs" / "composed" / "training_checkpoint_2.pt").read_bytes() == b"an earlier run's"


def test_what_slurm_jobs_and_notebooks_leave_is_ignored_and_the_license_is_there():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"slurm-*.out", "examples/runs/", ".ipynb_checkpoints/"} <= set(ignored)
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "__pycache__/" in (ROOT / "mkdocs.yml").read_text()  # a built site publishes no bytecode

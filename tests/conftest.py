"""Shared fixtures: small synthetic Fashion-MNIST-shaped IDX files, and the real data set when present."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest
import torch
import yaml

from fmnist_ignite import Config
from fmnist_ignite.config.settings import SYSTEM_DATA_DIR
from fmnist_ignite.data import fashion_mnist as data_module

# One thread: two OpenMP threads on a loaded 2-core machine can be many times slower.
torch.set_num_threads(1)

IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049


def idx_bytes(array: torch.Tensor) -> bytes:
    """Encode a uint8 tensor as an IDX file."""
    magic = IMAGE_MAGIC if array.ndim == 3 else LABEL_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.to(torch.uint8).numpy().tobytes()


def write_idx(path: Path, array: torch.Tensor) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    return path


def synthetic_set(n: int, seed: int, marker: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Learnable images: class c lights row band c; pixel (0, 0) holds ``marker`` to tell sets apart."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.int64)
    for c in range(10):
        images[labels == c, 2 * c + 4 : 2 * c + 6, :] += 180
    images[:, 0, 0] = marker
    return images.clamp(0, 255).to(torch.uint8), labels.to(torch.uint8)


def write_synthetic(directory: Path, n_train: int = 600, n_test: int = 200, gz: bool = True) -> Path:
    """Write the four IDX files (train marked 0 at pixel (0, 0), test marked 255) into ``directory``."""
    suffix = ".gz" if gz else ""
    train_images, train_labels = synthetic_set(n_train, seed=1, marker=0)
    test_images, test_labels = synthetic_set(n_test, seed=2, marker=255)
    write_idx(directory / f"train-images-idx3-ubyte{suffix}", train_images)
    write_idx(directory / f"train-labels-idx1-ubyte{suffix}", train_labels)
    write_idx(directory / f"t10k-images-idx3-ubyte{suffix}", test_images)
    write_idx(directory / f"t10k-labels-idx1-ubyte{suffix}", test_labels)
    return directory


@pytest.fixture(autouse=True)
def package_logger():
    """Each test starts with the package's logger as the package set it up: a test that changes it (a
    benchmark's main sets its level to WARNING) leaves the next ones their lines."""
    logger = logging.getLogger("fmnist_ignite")
    level, handlers, propagate = logger.level, list(logger.handlers), logger.propagate
    yield
    logger.setLevel(level)
    logger.handlers[:] = handlers
    logger.propagate = propagate


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test reaches the network, picks up the machine's system copy or the user's precision cache unless it
    asks to."""
    monkeypatch.setattr(data_module, "_download_with_torchvision", lambda data_dir: "offline in tests")
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "no-system-copy"))
    monkeypatch.setenv("FMNIST_PRECISION_CACHE", str(tmp_path / "precision.json"))  # never the user's own cache


@pytest.fixture
def synthetic_dir(tmp_path) -> Path:
    return write_synthetic(tmp_path / "data")


def small_run_config(root: Path) -> Config:
    """A quick run on synthetic data written under ``root``: 600 train images (100 held out), 200 test."""
    return Config(
        data_dir=str(write_synthetic(root / "data")),
        output_dir=str(root / "out"),
        verify_data=False,
        val_size=100,
        batch_size=50,
        eval_batch_size=64,
        epochs=3,
        progress=False,
        device="cpu",
        log_interval=4,
        plots=False,  # tests/test_reports.py checks them
        precision="fp32",  # the tests re-score in fp32; bf16 is tested where asked for (test_hardware.py)
        threads=1,  # the same count in every run of a test, whatever else the machine is doing
    )


def small_config_file(root: Path, **settings) -> Path:
    """A YAML config file for a small synthetic run (the command line verifies data unless told not to)."""
    config = small_run_config(root)
    values = {
        "data_dir": config.data_dir,
        "verify_data": False,
        "val_size": 100,
        "batch_size": 50,
        "eval_batch_size": 64,
        "epochs": 3,
        "threads": 1,
        "log_interval": 100,
        "precision": "fp32",
        **settings,
    }
    path = root / "small.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture
def small_config(tmp_path) -> Config:
    return small_run_config(tmp_path)


def real_data_dir() -> Path | None:
    """Where the real Fashion-MNIST lies on this machine, or None."""
    for directory in (Path("data/FashionMNIST/raw"), Path("data"), Path(SYSTEM_DATA_DIR)):
        if all((directory / name).is_file() or (directory / f"{name}.gz").is_file() for name in data_module.IDX_FILES):
            return directory
    return None


@pytest.fixture
def real_data() -> Path:
    directory = real_data_dir()
    if directory is None:
        pytest.skip("the real Fashion-MNIST is not on this machine (apt-get install dataset-fashion-mnist)")
    return directory


class Said:
    """``said()``: the package's lines so far in a test, the messages of its loggers' records as caplog holds
    them; ``said.clear()`` forgets them (to read one run's lines after another's)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog

    def __call__(self) -> list[str]:
        return [record.getMessage() for record in self.caplog.records if record.name.startswith("fmnist_ignite")]

    def clear(self) -> None:
        self.caplog.clear()


@pytest.fixture
def said(caplog, monkeypatch) -> Said:
    """The package's lines in this test (``Said``), printed as well. pytest 9 puts caplog's handler on the
    ``fmnist_ignite`` logger too, which does not pass its records on to the root; an older one only on the
    root: then the logger passes them on while the test runs."""
    logger = logging.getLogger("fmnist_ignite")
    if caplog.handler not in logger.handlers:
        monkeypatch.setattr(logger, "propagate", True)
    return Said(caplog)


def without_times(history: list[dict]) -> list[dict]:
    """History rows without their wall times, which differ between any two runs."""
    return [{k: v for k, v in row.items() if k != "epoch_time_s"} for row in history]


@pytest.fixture
def splits_loaded(monkeypatch) -> list[list[str]]:
    """The splits each run made loaders of (sorted names, one list per call), recorded as runs go."""
    from fmnist_ignite.run import training as training_module

    loaded = []
    real_get_data_loaders = training_module.get_data_loaders

    def recording(config, *args, **kwargs):
        loaders = real_get_data_loaders(config, *args, **kwargs)
        loaded.append(sorted(loaders))
        return loaders

    monkeypatch.setattr(training_module, "get_data_loaders", recording)
    return loaded


# The quick tier (make quick, pytest -m "not slow") leaves out what starts processes, kernels, clusters or
# servers, and the end-to-end runs on the real data: these whole modules, the tests that use these fixtures,
# and the tests marked slow by hand.
SLOW_MODULES = {
    "test_slurm",  # a one-node SLURM cluster
    "test_launch",  # spawned workers
    "test_distributed",
    "test_crash",  # killed processes
    "test_examples",  # the command line on the real data
    "test_benchmarks",
    "test_tuning",  # tune workers in processes of their own
    "test_docs",  # the site's build, every block of every page
    "test_hostile_files",  # mounts, subprocesses, a stopped worker
    "test_postgres",  # a PostgreSQL server
}
SLOW_FIXTURES = {"real_data", "kernel", "slurm", "small_disk", "mounted"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module in SLOW_MODULES or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

"""Data: IDX parsing and verification, where the data is found, splits and the two loaders."""

from __future__ import annotations

import hashlib
import re

import pytest
import torch
from conftest import idx_bytes, synthetic_set, write_idx, write_synthetic

from fmnist_ignite import Config, FmnistError, get_data_loaders, load_fashion_mnist, locate_fashion_mnist, read_idx
from fmnist_ignite.config import settings as config_module
from fmnist_ignite.data import fashion_mnist as data_module
from fmnist_ignite.data.idx import IdxSpec
from fmnist_ignite.data.loaders import ImageDataset, TensorLoader, make_loader
from fmnist_ignite.data.splits import make_splits, split_indices

# ------------------------------------------------------------------------------------------ IDX files


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trips_plain_and_gzipped(tmp_path, suffix):
    images, _ = synthetic_set(30, seed=0, marker=7)
    path = write_idx(tmp_path / f"images{suffix}", images)
    assert torch.equal(read_idx(path), images)


def test_read_idx_accepts_the_matching_spec(tmp_path):
    images, _ = synthetic_set(30, seed=0, marker=7)
    path = write_idx(tmp_path / "images", images)
    spec = IdxSpec(2051, (30, 28, 28), hashlib.sha256(idx_bytes(images)).hexdigest())
    assert read_idx(path, spec).shape == (30, 28, 28)


@pytest.mark.parametrize(
    "spec, message",
    [
        (IdxSpec(2049, (30, 28, 28), ""), "magic number 2051, expected 2049"),
        (IdxSpec(2051, (60000, 28, 28), ""), "shape (30, 28, 28), expected (60000, 28, 28)"),
        (IdxSpec(2051, (30, 28, 28), "0" * 64), "checksum mismatch"),
    ],
)
def test_read_idx_rejects_files_that_are_not_the_expected_one(tmp_path, spec, message):
    path = write_idx(tmp_path / "images.gz", synthetic_set(30, seed=0, marker=7)[0])
    with pytest.raises(FmnistError, match=re.escape(message)):
        read_idx(path, spec)


def test_read_idx_rejects_garbage_truncation_and_bad_gzip(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(FmnistError, match="bad magic number"):
        read_idx(garbage)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(idx_bytes(synthetic_set(30, seed=0, marker=7)[0])[:-100])
    with pytest.raises(FmnistError, match="header says shape"):
        read_idx(truncated)
    bad_gzip = tmp_path / "bad.gz"
    bad_gzip.write_bytes(b"\x1f\x8b\x08\x00 broken")
    with pytest.raises(FmnistError, match="cannot read it"):
        read_idx(bad_gzip)


def test_the_real_files_pass_verification(real_data):
    sets = load_fashion_mnist(real_data.parent if real_data.name == "raw" else real_data)
    assert sets["train"][0].shape == (60000, 28, 28) and sets["test"][0].shape == (10000, 28, 28)
    # The real set is balanced: 6,000 training and 1,000 test images of each class.
    assert torch.bincount(sets["train"][1]).tolist() == [6000] * 10
    assert torch.bincount(sets["test"][1]).tolist() == [1000] * 10


def test_verification_rejects_a_data_dir_holding_something_else(synthetic_dir):
    with pytest.raises(FmnistError, match=r"train-images-idx3-ubyte\.gz: shape \(600, 28, 28\), expected"):
        load_fashion_mnist(synthetic_dir, verify=True)


# --------------------------------------------------------------------------------- where data is found


def test_data_root_in_torchvision_layout_comes_first(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_synthetic(root / "FashionMNIST" / "raw", gz=False)
    write_synthetic(root)
    monkeypatch.setenv("FMNIST_DATA_DIR", str(write_synthetic(tmp_path / "system")))
    files = locate_fashion_mnist(root)
    assert set(files) == set(data_module.IDX_FILES)
    assert all(path.parent == root / "FashionMNIST" / "raw" and path.suffix != ".gz" for path in files.values())


def test_flat_data_root_comes_before_the_system_copy(tmp_path, monkeypatch):
    root = write_synthetic(tmp_path / "root")
    monkeypatch.setenv("FMNIST_DATA_DIR", str(write_synthetic(tmp_path / "system")))
    assert all(path.parent == root for path in locate_fashion_mnist(root).values())


def test_system_copy_from_env_is_used_when_the_data_root_is_empty(tmp_path, monkeypatch):
    system = write_synthetic(tmp_path / "system")
    monkeypatch.setenv("FMNIST_DATA_DIR", str(system))
    assert all(path.parent == system for path in locate_fashion_mnist(tmp_path / "empty").values())


def test_debian_directory_is_the_default_system_copy(tmp_path, monkeypatch):
    system = write_synthetic(tmp_path / "debian")
    monkeypatch.delenv("FMNIST_DATA_DIR")
    monkeypatch.setattr(config_module, "SYSTEM_DATA_DIR", str(system))
    assert all(path.parent == system for path in locate_fashion_mnist(tmp_path / "empty").values())


def test_download_is_the_last_resort_and_lands_in_torchvision_layout(tmp_path, monkeypatch):
    calls = []

    def fake_download(data_dir):
        calls.append(data_dir)
        write_synthetic(data_dir / "FashionMNIST" / "raw")

    monkeypatch.setattr(data_module, "_download_with_torchvision", fake_download)
    files = locate_fashion_mnist(tmp_path / "root")
    assert calls == [tmp_path / "root"]
    assert all(path.parent == tmp_path / "root" / "FashionMNIST" / "raw" for path in files.values())


def test_a_partial_data_root_is_not_used(tmp_path):
    root = write_synthetic(tmp_path / "root")
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FmnistError, match="Fashion-MNIST not found"):
        locate_fashion_mnist(root)


def test_missing_data_error_names_the_three_ways_on_one_line(tmp_path):
    with pytest.raises(FmnistError) as info:
        locate_fashion_mnist(tmp_path / "nowhere")
    message = str(info.value)
    assert "\n" not in message
    for way in (str(tmp_path / "nowhere"), "dataset-fashion-mnist", "FMNIST_DATA_DIR", "torchvision download"):
        assert way in message
    assert "offline in tests" in message  # the download's own failure is reported


# ------------------------------------------------------------------------------------------- splits


def test_validation_is_held_out_of_train_disjoint_seeded_and_sized():
    train_idx, val_idx = split_indices(600, 100, seed=3)
    assert len(val_idx) == 100 and len(train_idx) == 500
    assert set(train_idx.tolist()).isdisjoint(val_idx.tolist())
    assert set(train_idx.tolist()) | set(val_idx.tolist()) == set(range(600))
    again_train, again_val = split_indices(600, 100, seed=3)
    assert torch.equal(val_idx, again_val) and torch.equal(train_idx, again_train)
    assert not torch.equal(val_idx, split_indices(600, 100, seed=4)[1])


def test_test_split_is_the_test_file_not_the_training_set(synthetic_dir):
    """Tutorial defect: it built its test loader with train=True and so scored the training set."""
    sets = load_fashion_mnist(synthetic_dir, verify=False)
    splits = make_splits(sets, val_size=100, seed=0)
    assert torch.equal(splits["test"][0], sets["test"][0])
    assert (splits["test"][0][:, 0, 0] == 255).all()  # the test file's marker
    for name in ("train", "validation"):
        assert (splits[name][0][:, 0, 0] == 0).all()  # only training-file images, never a test image
    assert len(splits["train"][0]) + len(splits["validation"][0]) == 600


def test_zero_validation_size_gives_no_validation_split(synthetic_dir):
    splits = make_splits(load_fashion_mnist(synthetic_dir, verify=False), val_size=0, seed=0)
    assert set(splits) == {"train", "test"} and len(splits["train"][0]) == 600


# ------------------------------------------------------------------------------------------ loaders


def test_loaders_use_the_configured_batch_size(small_config):
    """Tutorial defect: it set batch_size = 64 but built its loaders with 10."""
    for kind in ("tensor", "dataloader"):
        loaders = get_data_loaders(small_config.replace(batch_size=64, loader=kind))
        images, targets = next(iter(loaders["train"]))
        assert images.shape == (64, 1, 28, 28) and targets.shape == (64,)
        assert len(loaders["train"]) == -(-500 // 64)


def test_tensor_loader_shuffles_each_epoch_differently_and_reproducibly():
    """Tutorial defect: it never shuffled, so every epoch saw the same order."""
    labels = torch.arange(100)
    loader = TensorLoader(torch.zeros(100, 1, 28, 28), labels, batch_size=10, shuffle=True, seed=5)
    first, second = (torch.cat([y for _, y in loader]) for _ in range(2))
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(100))
    assert not torch.equal(first, second) and not torch.equal(first, labels)
    loader.set_epoch(2)
    assert torch.equal(torch.cat([y for _, y in loader]), second)
    other_seed = TensorLoader(torch.zeros(100, 1, 28, 28), labels, batch_size=10, shuffle=True, seed=6)
    assert not torch.equal(torch.cat([y for _, y in other_seed]), first)


def test_dataloader_path_shuffles_too(small_config):
    loader = get_data_loaders(small_config.replace(loader="dataloader"))["train"]
    first, second = (torch.cat([y for _, y in loader]) for _ in range(2))
    assert not torch.equal(first, second) and sorted(first.tolist()) == sorted(second.tolist())


def test_tensor_loader_and_torchvision_path_give_the_same_tensors(synthetic_dir):
    images, labels = load_fashion_mnist(synthetic_dir, verify=False)["test"]
    fast = make_loader((images, labels), "tensor", batch_size=64, shuffle=False)
    slow = make_loader((images, labels), "dataloader", batch_size=64, shuffle=False)
    for (x_fast, y_fast), (x_slow, y_slow) in zip(fast, slow, strict=True):
        assert torch.equal(x_fast, x_slow) and torch.equal(y_fast, y_slow)
        assert x_fast.dtype == torch.float32 and 0 <= x_fast.min() and x_fast.max() <= 1


@pytest.mark.parametrize("kind", ["tensor", "dataloader"])
def test_one_hot_targets_are_the_tutorials(synthetic_dir, kind):
    images, labels = load_fashion_mnist(synthetic_dir, verify=False)["test"]
    _, targets = next(iter(make_loader((images, labels), kind, batch_size=32, shuffle=False, one_hot=True)))
    assert targets.dtype == torch.float32 and targets.shape == (32, 10)
    assert torch.equal(targets.argmax(1), labels[:32]) and torch.equal(targets.sum(1), torch.ones(32))


def test_image_dataset_uses_pil_and_to_tensor_per_sample():
    images, labels = synthetic_set(5, seed=0, marker=255)
    image, label = ImageDataset(images, labels.long())[0]
    assert image.shape == (1, 28, 28) and image[0, 0, 0] == 1.0 and label == labels[0]


def test_config_val_size_is_honoured(small_config):
    loaders = get_data_loaders(small_config.replace(val_size=150))
    assert len(loaders["validation"].dataset) == 150 and len(loaders["train"].dataset) == 450
    assert "validation" not in get_data_loaders(small_config.replace(val_size=0))


def test_default_config_keeps_5000_for_validation():
    assert Config().val_size == 5000 and Config().batch_size == 64


@pytest.mark.parametrize("allow", [None, "1"])
def test_inside_a_slurm_job_nothing_is_downloaded_unless_allowed(tmp_path, monkeypatch, allow):
    tried = []
    monkeypatch.setattr(data_module, "_download_with_torchvision", lambda data_dir: tried.append(data_dir) or "no net")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    if allow:
        monkeypatch.setenv("FMNIST_ALLOW_DOWNLOAD", allow)
    with pytest.raises(FmnistError) as info:
        data_module.locate_fashion_mnist(tmp_path)
    if allow:
        assert tried == [tmp_path] and "it failed: no net" in str(info.value)
    else:
        assert tried == [] and "inside a SLURM job unless FMNIST_ALLOW_DOWNLOAD=1" in str(info.value)

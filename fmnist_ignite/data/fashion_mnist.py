"""Fashion-MNIST: find the real files, verify them, split them, and serve them in batches.

The data is looked for, in order, under the data root (torchvision's ``FashionMNIST/raw`` layout or
the four IDX files themselves, gzipped or not), in a system copy (``$FMNIST_DATA_DIR``, else
Debian's ``/usr/share/datasets/fashion-mnist``), and last through torchvision's download.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import torch

from fmnist_ignite.config.settings import environment_settings
from fmnist_ignite.data.idx import IMAGES_MAGIC, LABELS_MAGIC, IdxSpec, read_idx
from fmnist_ignite.errors import FmnistError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The names of the ten Fashion-MNIST classes, by label.

``CLASS_NAMES[label]`` names a label (or a model's output index), e.g. ``CLASS_NAMES[9]`` is "Ankle boot". The
order is the data set's own, the same as torchvision's.
"""
NUM_CLASSES = len(CLASS_NAMES)
IDX_FILES = {
    "train-images-idx3-ubyte": IdxSpec(
        IMAGES_MAGIC, (60_000, 28, 28), "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "train-labels-idx1-ubyte": IdxSpec(
        LABELS_MAGIC, (60_000,), "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "t10k-images-idx3-ubyte": IdxSpec(
        IMAGES_MAGIC, (10_000, 28, 28), "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "t10k-labels-idx1-ubyte": IdxSpec(
        LABELS_MAGIC, (10_000,), "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _idx_files_in(directory: Path) -> dict[str, Path] | None:
    """The four files in ``directory`` (plain or ``.gz``), or None when any is missing."""
    found = {}
    for name in IDX_FILES:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _download_with_torchvision(data_dir: Path) -> str | None:
    """Let torchvision fetch the data into ``data_dir/FashionMNIST/raw``; return the error, if any."""
    from torchvision import datasets

    try:
        for train in (True, False):
            datasets.FashionMNIST(str(data_dir), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 (any network or disk failure means "this way did not work")
        reason = " ".join(str(exc).split())
        cause = exc.__cause__ or exc.__context__  # torchvision's own message may end at a colon
        if cause is not None and (not reason or reason.endswith(":")):
            reason = f"{reason} {type(cause).__name__}: {' '.join(str(cause).split())}".strip()
        return f"{type(exc).__name__}: {reason}"
    return None


def locate_fashion_mnist(
    data_dir: str | os.PathLike, download: bool | None = None, system_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Find the four IDX files: under ``data_dir``, then in ``system_dir``, then through torchvision's download.

    Args:
        data_dir: the data root: torchvision's ``FashionMNIST/raw`` layout under it, or the four files
            themselves, gzipped or not; a download goes there.
        download: whether torchvision may download the files when they are found nowhere; None: what the
            environment says (``Config.with_environment``).
        system_dir: a system copy, looked in after ``data_dir``; None: what the environment says
            (``$FMNIST_DATA_DIR``, else Debian's ``/usr/share/datasets/fashion-mnist``).

    Returns:
        The path of each of the four files, by its upstream name (e.g. "train-images-idx3-ubyte").

    Raises:
        FmnistError: the data is in none of these places (or the download failed or was off), saying the three
            ways to provide it.
    """
    data_dir = Path(data_dir).expanduser()
    environment = environment_settings()
    # the environment's: download_allowed gives a bool, system_copy a str (fmnist_ignite.config.settings)
    download = cast(bool, environment["allow_download"]) if download is None else download
    system_dir = Path(cast(str, environment["system_data_dir"]) if system_dir is None else system_dir)
    for directory in (data_dir / "FashionMNIST" / "raw", data_dir, system_dir):
        found = _idx_files_in(directory)
        if found:
            return found
    if download:
        download_error = _download_with_torchvision(data_dir)
    else:
        download_error = (
            "downloads are off: allow_download is false (FMNIST_ALLOW_DOWNLOAD=0, or inside a SLURM job unless "
            "FMNIST_ALLOW_DOWNLOAD=1)"
        )
    found = _idx_files_in(data_dir / "FashionMNIST" / "raw")
    if found:
        return found
    raise FmnistError(
        f"Fashion-MNIST not found. Provide it one of three ways: put the four IDX files in {data_dir} "
        f"(or {data_dir}/FashionMNIST/raw); install Debian's dataset-fashion-mnist or set FMNIST_DATA_DIR "
        f"to a directory holding them (looked in {system_dir}); or let torchvision download it "
        f"(needs internet; it failed: {download_error})"
    )


def load_fashion_mnist(
    data_dir: str | os.PathLike,
    verify: bool = True,
    download: bool | None = None,
    system_dir: str | os.PathLike | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The train and test sets as ``(uint8 images N x 28 x 28, int64 labels N)``, verified by default.

    The files are found as ``locate_fashion_mnist`` finds them.

    Args:
        data_dir: the data root, as ``locate_fashion_mnist`` takes it.
        verify: check each file's magic number, shape and checksum against the upstream files' (the default);
            False: any IDX files of 28 x 28 images and matching labels will do.
        download: whether torchvision may download the files; None: what the environment says.
        system_dir: a system copy to look in; None: what the environment says.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``.

    Raises:
        FmnistError: the files are not found, unreadable, not the upstream data (with ``verify``), or their
            images and labels do not match.
    """
    files = locate_fashion_mnist(data_dir, download, system_dir)
    arrays = {name: read_idx(path, IDX_FILES[name] if verify else None) for name, path in files.items()}
    sets = {}
    for split, (images_name, labels_name) in SPLIT_FILES.items():
        images, labels = arrays[images_name], arrays[labels_name].long()
        if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
            raise FmnistError(
                f"{files[images_name]}: {tuple(images.shape)} images do not match "
                f"{tuple(labels.shape)} labels in {files[labels_name]}"
            )
        if labels.numel() and int(labels.max()) >= NUM_CLASSES:
            raise FmnistError(f"{files[labels_name]}: label {int(labels.max())} is not one of the 10 classes")
        sets[split] = (images, labels)
    return sets

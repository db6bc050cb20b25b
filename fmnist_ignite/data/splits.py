"""The splits: train, a validation set held out of it by a seeded draw, and the separate test set untouched."""

from __future__ import annotations

import torch

from fmnist_ignite.errors import FmnistError


def split_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint sorted train and validation indices into ``range(n)``, drawn with a seeded generator."""
    if not 0 <= val_size < n:
        raise FmnistError(f"validation size must be in [0, {n - 1}], got {val_size}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def make_splits(
    sets: dict[str, tuple[torch.Tensor, torch.Tensor]], val_size: int, seed: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Train, validation (held out of the train set) and test (the separate test set, untouched).

    Args:
        sets: the train and test sets, as ``load_fashion_mnist`` returns them.
        val_size: how many train images to hold out for validation; 0: no validation split.
        seed: the seed of the draw of the validation images: the same seed holds out the same images.

    Returns:
        ``(images, labels)`` by split: "train", "validation" (absent when ``val_size`` is 0) and "test".

    Raises:
        FmnistError: ``val_size`` is negative or not smaller than the train set.
    """
    images, labels = sets["train"]
    train_idx, val_idx = split_indices(len(images), val_size, seed)
    splits = {"train": (images[train_idx], labels[train_idx])}
    if val_size:
        splits["validation"] = (images[val_idx], labels[val_idx])
    splits["test"] = sets["test"]
    return splits

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
    """Train, validation (held out of the train set) and test (the separate test set, untouched)."""
    images, labels = sets["train"]
    train_idx, val_idx = split_indices(len(images), val_size, seed)
    splits = {"train": (images[train_idx], labels[train_idx])}
    if val_size:
        splits["validation"] = (images[val_idx], labels[val_idx])
    splits["test"] = sets["test"]
    return splits

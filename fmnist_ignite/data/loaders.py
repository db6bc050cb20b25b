"""Serving a split in batches: in-memory tensors (``TensorLoader``: seeded shuffles, exact resume, shards,
augmentation on the batch) or the tutorial's torchvision-style per-sample path."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fmnist_ignite.config.settings import Config
from fmnist_ignite.data.fashion_mnist import NUM_CLASSES, load_fashion_mnist
from fmnist_ignite.data.splits import make_splits


def to_float_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 28 x 28 to float N x 1 x 28 x 28 in [0, 1], the same values ``ToTensor`` gives."""
    return images.unsqueeze(1).div(255)  # true division makes float32 in one pass: one new tensor a batch


def one_hot_targets(labels: torch.Tensor) -> torch.Tensor:
    """The tutorial's float one-hot targets."""
    return F.one_hot(labels, NUM_CLASSES).float()


def augment_batch(images: torch.Tensor, generator: torch.Generator, hflip: bool, shift: int) -> torch.Tensor:
    """A new batch (the one given is not changed): each N x 28 x 28 image flipped left-right with
    probability 1/2 (``hflip``) and moved by up to ``shift`` pixels each way, the edge zero-filled; the
    draws come from ``generator`` alone, in a fixed order, so a batch's augmentation is reproducible."""
    n, height, width = images.shape
    flips = torch.rand(n, generator=generator) < 0.5 if hflip else None
    if shift:
        dy, dx = torch.randint(-shift, shift + 1, (2, n, 1), generator=generator).to(images.device)
        padded = F.pad(images, (shift, shift, shift, shift))
        rows = torch.arange(height, device=images.device) + shift + dy  # n x height
        cols = torch.arange(width, device=images.device) + shift + dx
        if flips is not None:  # a flip is the columns read backwards
            cols = torch.where(flips.to(images.device)[:, None], cols.flip(1), cols)
        return padded[torch.arange(n, device=images.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flips is not None:
        return torch.where(flips.to(images.device)[:, None, None], images.flip(-1), images)
    return images.clone()


class TensorLoader:
    """Batches sliced from one in-memory tensor per split, shuffled each epoch with a seeded generator.

    The order of an epoch depends only on ``(seed, epoch)``: the trainer calls ``set_epoch`` at each
    epoch start, and without it each pass counts as the next epoch. ``start_batch`` skips the batches
    a resumed run already trained on, so it sees exactly the batches an uninterrupted run would.
    With ``world_size > 1`` this process (``rank``) gets every world_size-th sample of the epoch's
    order; shuffled shards are cut to equal length, so every process runs the same number of steps.

    Args:
        images: the split's images, on the device the batches are to be on.
        targets: their targets (class indices, or one-hot rows), on the same device.
        batch_size: the images in a batch (this process's); the last batch of an epoch may be smaller.
        shuffle: draw a new order each epoch (training); False: the split in order (evaluation).
        seed: the seed of the epochs' orders and of the augmentation.
        rank: this process's index among ``world_size`` processes.
        world_size: the processes sharing the split; 1: this process gets all of it.
        transform: applied to each batch of images, e.g. uint8 to float; None: the batches as they are.
        hflip: flip each image left-right with probability 1/2 (training augmentation, on the batch, seeded
            per batch).
        shift: move each image by up to this many pixels each way, the edge zero-filled; 0: no shift.
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        hflip: bool = False,
        shift: int = 0,
    ) -> None:
        self.dataset = TensorDataset(images, targets)
        self.hflip, self.shift = hflip, shift  # training augmentation (augment_batch), seeded per batch
        self.transform = transform  # applied to each batch of images, e.g. uint8 to float
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 1
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    @property
    def num_local_samples(self) -> int:
        """Samples this process sees in an epoch."""
        n = len(self.dataset)
        return n // self.world_size if self.shuffle else len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        return -(-self.num_local_samples // self.batch_size)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation of all sample indices used in ``epoch`` (before sharding)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.dataset), generator=generator)

    def _local_order(self, epoch: int) -> torch.Tensor | None:
        """This process's sample indices for ``epoch``; None for the whole set in order."""
        if self.shuffle:
            return self.epoch_order(epoch)[self.rank :: self.world_size][: self.num_local_samples]
        if self.world_size > 1:
            return torch.arange(self.rank, len(self.dataset), self.world_size)
        return None

    def batch_generator(self, epoch: int, batch: int) -> torch.Generator:
        """The generator of one batch's augmentation: seeded by (seed, epoch, batch, rank) alone, so a run
        resumed in the middle of an epoch draws what the uninterrupted run drew."""
        seed = ((self.seed * 1_000_003 + epoch) * 100_003 + batch) * 1_009 + self.rank
        return torch.Generator().manual_seed(seed % 2**64)  # the same for seeds below 40,000; any seed fits

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # A generator: the body runs at the first next(), after the trainer's EPOCH_STARTED set the epoch.
        images, targets = self.dataset.tensors
        epoch, self.epoch = self.epoch, self.epoch + 1
        first, self.start_batch = self.start_batch * self.batch_size, 0
        order = self._local_order(epoch)
        transform = self.transform or (lambda batch: batch)
        if order is None:
            for start in range(first, len(images), self.batch_size):
                yield transform(images[start : start + self.batch_size]), targets[start : start + self.batch_size]
        else:
            order = order.to(images.device)
            augmenting = self.hflip or self.shift
            for start in range(first, len(order), self.batch_size):
                index = order[start : start + self.batch_size]
                batch = images.index_select(0, index)  # a quarter of the time of images[index] for a batch of 64
                if augmenting:
                    generator = self.batch_generator(epoch, start // self.batch_size)
                    batch = augment_batch(batch, generator, self.hflip, self.shift)
                yield transform(batch), targets.index_select(0, index)


class ImageDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The tutorial's per-sample path: each image goes through PIL and ``ToTensor``, like torchvision's.

    Args:
        images: the split's uint8 images, N x 28 x 28.
        labels: their int64 labels, N.
        one_hot: give each label as the tutorial's float one-hot target; False (the default): the class index.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, one_hot: bool = False) -> None:
        from torchvision.transforms import ToTensor  # torchvision takes seconds to import: only on this path

        self.images, self.labels, self.one_hot = images, labels, one_hot
        self.transform = ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.transform(Image.fromarray(self.images[index].numpy(), mode="L"))
        label = self.labels[index]
        return image, one_hot_targets(label) if self.one_hot else label


def make_loader(
    split: tuple[torch.Tensor, torch.Tensor],
    kind: str,
    batch_size: int,
    shuffle: bool,
    one_hot: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
    hflip: bool = False,
    shift: int = 0,
) -> TensorLoader | DataLoader[tuple[torch.Tensor, torch.Tensor]]:
    """A ``TensorLoader`` or a torchvision-style ``DataLoader`` serving one split in batches.

    Kind "tensor" gives a ``TensorLoader``: uint8 data on ``device``, this process's shard, augmented with
    ``hflip`` and ``shift`` when shuffled. Any other kind ("dataloader") gives a ``DataLoader`` over an
    ``ImageDataset`` (one process only, no augmentation).

    Args:
        split: the split's ``(images, labels)``, as ``make_splits`` gives them.
        kind: "tensor" or "dataloader" (``Config.loader``).
        batch_size: the images in a batch (this process's).
        shuffle: a new seeded order each epoch (training); False: the split in order.
        one_hot: float one-hot targets, as the tutorial's; False: class indices.
        seed: the seed of the shuffles (and of the tensor loader's augmentation).
        device: where the tensor loader keeps the data and makes its batches.
        rank: this process's index among ``world_size`` (tensor loader only).
        world_size: the processes sharing the split (tensor loader only).
        hflip: random left-right flips (tensor loader, shuffled only).
        shift: random moves of up to this many pixels (tensor loader, shuffled only); 0: none.
    """
    images, labels = split
    if kind == "tensor":
        targets = one_hot_targets(labels) if one_hot else labels
        # The images stay uint8 (a quarter of float32's memory); each batch is made float where it lies.
        return TensorLoader(
            images.to(device),
            targets.to(device),
            batch_size,
            shuffle,
            seed,
            rank,
            world_size,
            to_float_images,
            hflip=hflip and shuffle,
            shift=shift if shuffle else 0,
        )
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        ImageDataset(images, labels, one_hot), batch_size=batch_size, shuffle=shuffle, generator=generator
    )


def get_data_loaders(config: Config, device: torch.device | str = "cpu", rank: int = 0, world_size: int = 1) -> dict:
    """Loaders for "train" (shuffled), "validation" and "test", as ``config`` says.

    With several processes each gets its shard, and ``batch_size`` is the total over all of them
    (as with Ignite's ``auto_dataloader``), so the optimisation is the same as in one process.

    Args:
        config: the run's settings: the data (``data_dir``, ``verify_data``, ...), the split, the loader, the
            batch sizes and the augmentation.
        device: where the tensor loader keeps the data and makes its batches.
        rank: this process's index among ``world_size``.
        world_size: the processes training together; 1: one process.

    Returns:
        The loaders by split: "train", "validation" (absent when ``val_size`` is 0) and "test" (absent when
        ``score_test`` is off, so nothing can read it).
    """
    sets = load_fashion_mnist(config.data_dir, config.verify_data, config.allow_download, config.system_data_dir)
    splits = make_splits(sets, config.val_size, config.split_seed)
    return {
        name: make_loader(
            split,
            config.loader,
            config.batch_size // world_size if name == "train" else config.eval_batch_size,
            shuffle=name == "train",
            one_hot=config.one_hot,
            seed=config.seed,
            device=device,
            rank=rank,
            world_size=world_size,
            hflip=config.hflip and name == "train",  # augmentation: the training batches only
            shift=config.shift if name == "train" else 0,
        )
        for name, split in splits.items()
        if name != "test" or config.score_test
    }

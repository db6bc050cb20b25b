"""Fashion-MNIST: find the real files, verify them, split them, and serve them in batches.

The data is looked for, in order, under the data root (torchvision's ``FashionMNIST/raw`` layout or
the four IDX files themselves, gzipped or not), in a system copy (``$FMNIST_DATA_DIR``, else
Debian's ``/usr/share/datasets/fashion-mnist``), and last through torchvision's download.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fmnist_ignite.config import Config, environment_settings
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
NUM_CLASSES = len(CLASS_NAMES)
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


@dataclass(frozen=True)
class IdxSpec:
    """What one of the four upstream files holds; sha256 is of the decompressed bytes."""

    magic: int
    shape: tuple[int, ...]
    sha256: str


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


# ---------------------------------------------------------------------------------------------- files

MAX_IDX_BYTES = 100_000 * 28 * 28  # more images than Fashion-MNIST's 70,000: anything larger is refused unread


def read_idx(path: Path, spec: IdxSpec | None = None) -> torch.Tensor:
    """Parse an IDX file of unsigned bytes (gzipped or not) into a uint8 tensor.

    The header is checked before the data is read, and no more bytes are read (or decompressed) than it
    promises, up to ``MAX_IDX_BYTES``: a file that holds more, or a gzip bomb, is refused on the way.
    With ``spec``, also check the magic number, the shape and the checksum of the decompressed bytes.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as stream:
            head = stream.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 3:
                raise FmnistError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
            dims = stream.read(4 * head[3])
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(len(dims) // 4))
            count = math.prod(shape)
            if len(shape) != head[3] or count > MAX_IDX_BYTES or (len(shape) == 3 and shape[1:] != (28, 28)):
                raise FmnistError(
                    f"{path}: header says shape {shape}: not 28 x 28 images or labels of at most "
                    f"{MAX_IDX_BYTES:,} bytes"
                )
            data = stream.read(count + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise FmnistError(f"{path}: cannot read it ({exc})") from None
    if count == 0:
        raise FmnistError(f"{path}: header says shape {shape}: no data")
    if len(data) != count:
        held = "more data than that" if len(data) > count else f"{len(data)} bytes of data"
        raise FmnistError(f"{path}: header says shape {shape} but the file holds {held}")
    if spec is not None:
        magic = int.from_bytes(head, "big")
        if magic != spec.magic:
            raise FmnistError(f"{path}: magic number {magic}, expected {spec.magic}: not this Fashion-MNIST file")
        if shape != spec.shape:
            raise FmnistError(f"{path}: shape {shape}, expected {spec.shape}: not this Fashion-MNIST file")
        if hashlib.sha256(head + dims + data).hexdigest() != spec.sha256:
            raise FmnistError(f"{path}: checksum mismatch: not the Fashion-MNIST data (delete it to use another copy)")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(shape)


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
    except Exception as exc:  # any network or disk failure means "this way did not work"
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def locate_fashion_mnist(
    data_dir: str | os.PathLike, download: bool | None = None, system_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Find the four IDX files: under ``data_dir``, then in ``system_dir``, then through torchvision's
    download if ``download``; either left None is what the environment says (``Config.with_environment``)."""
    data_dir = Path(data_dir).expanduser()
    environment = environment_settings()
    download = environment["allow_download"] if download is None else download
    system_dir = Path(environment["system_data_dir"] if system_dir is None else system_dir)
    for directory in (data_dir / "FashionMNIST" / "raw", data_dir, system_dir):
        found = _idx_files_in(directory)
        if found:
            return found
    if download:
        download_error = _download_with_torchvision(data_dir)
    else:
        download_error = (
            "downloads are off: allow_download is false, the default inside a SLURM job unless FMNIST_ALLOW_DOWNLOAD=1"
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
    """The train and test sets as ``(uint8 images N x 28 x 28, int64 labels N)``, verified by default;
    found as ``locate_fashion_mnist`` finds them."""
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


# --------------------------------------------------------------------------------------------- splits


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


# -------------------------------------------------------------------------------------------- loaders


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
    """

    def __init__(
        self,
        images,
        targets,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        transform=None,
        hflip: bool = False,
        shift: int = 0,
    ):
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
        return torch.Generator().manual_seed(((self.seed * 1_000_003 + epoch) * 100_003 + batch) * 1_009 + self.rank)

    def __iter__(self):
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


class ImageDataset(Dataset):
    """The tutorial's per-sample path: each image goes through PIL and ``ToTensor``, like torchvision's."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, one_hot: bool = False):
        from torchvision.transforms import ToTensor  # torchvision takes seconds to import: only on this path

        self.images, self.labels, self.one_hot = images, labels, one_hot
        self.transform = ToTensor()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
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
):
    """A ``TensorLoader`` (kind "tensor", uint8 data on ``device``, this process's shard, augmented with
    ``hflip`` and ``shift`` when shuffled) or a torchvision-style ``DataLoader`` (one process only)."""
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
    """Loaders for "train" (shuffled), "validation" (absent when val_size is 0) and "test" (absent
    when ``score_test`` is off, so nothing can read it).

    With several processes each gets its shard, and ``batch_size`` is the total over all of them
    (as with Ignite's ``auto_dataloader``), so the optimisation is the same as in one process.
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

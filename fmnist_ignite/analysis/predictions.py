"""A run's test predictions, kept: ``OUTPUT_DIR/test_predictions.npz`` holds the predicted class and the ten
probabilities of every test image, the true labels and a fingerprint of the test set, so runs can be
compared image by image later (``fmnist-ignite compare``) without scoring them again.

The file (NumPy's ``.npz``, read with ``numpy.load(path)``, no pickles):

- ``predicted``: uint8, N: the class the model chose (the argmax of its output, as the accuracy counts it)
- ``probabilities``: float32, N x 10: the softmax of its output
- ``labels``: uint8, N: the true classes
- ``test_set_sha256``: the SHA-256 of the test labels' bytes (uint8) followed by the images' (uint8,
  N x 28 x 28): two runs are comparable only when theirs are equal
- ``class_names``: the ten class names

A tuner's completed trials keep the same of the validation split (without the probabilities, with
``validation_set_sha256``), to be compared with each other (``fmnist_ignite.experiments.confirm``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np

from fmnist_ignite.errors import Command, FmnistError, Message
from fmnist_ignite.files.layout import resumable_checkpoints
from fmnist_ignite.files.predictions import (
    PREDICTIONS_FILE,
    VALIDATION_PREDICTIONS_FILE,
    read_predictions,
    write_predictions,
)

if TYPE_CHECKING:  # torch and Ignite are imported where predictions are made: reading them (compare) needs neither
    import torch
    from ignite.engine import Engine
    from torch.utils.data import DataLoader

    from fmnist_ignite.config.settings import Config
    from fmnist_ignite.data.loaders import ImageDataset, TensorLoader

    Loader = TensorLoader | DataLoader[tuple[torch.Tensor, torch.Tensor]]  # what make_loader gives


class FinishedTraining(Protocol):
    """What ``keep_validation_predictions`` uses of a finished ``Training`` (``fmnist_ignite.run.training``)."""

    @property
    def loaders(self) -> Mapping[str, Loader]: ...

    @property
    def config(self) -> Config: ...

    def evaluate(self, loader: Loader, *, attach: Callable[[Engine], object]) -> object: ...


def split_tensors(loader: Loader) -> tuple[torch.Tensor, torch.Tensor]:
    """The uint8 images and the class-index labels of a loader's whole split, on the CPU (every process's
    loader holds the whole split, whatever shard it reads)."""
    dataset = loader.dataset
    if hasattr(dataset, "tensors"):  # TensorLoader: uint8 images, index or one-hot targets
        images, targets = dataset.tensors
    else:  # the torchvision-style ImageDataset
        image_dataset = cast("ImageDataset", dataset)
        images, targets = image_dataset.images, image_dataset.labels
    labels = targets.argmax(dim=1) if targets.ndim == 2 else targets
    return images.cpu(), labels.cpu()


def fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of the labels' bytes (uint8) followed by the images' (uint8): the same images with the same
    labels in the same order give the same fingerprint."""
    import torch

    digest = hashlib.sha256(labels.to(torch.uint8).contiguous().numpy().tobytes())
    digest.update(images.to(torch.uint8).contiguous().numpy().tobytes())
    return digest.hexdigest()


class PredictionCollector:
    """Attached to an evaluator, keeps what it predicted for each image of its run (this process's shard)."""

    def __init__(self) -> None:
        self.probabilities: list[torch.Tensor] = []
        self.predicted: list[torch.Tensor] = []

    def attach(self, evaluator: Engine) -> PredictionCollector:
        from ignite.engine import Events

        evaluator.add_event_handler(Events.STARTED, self._reset)
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, self._keep)
        return self

    def _reset(self, engine: Engine) -> None:
        self.probabilities, self.predicted = [], []

    def _keep(self, engine: Engine) -> None:
        # the evaluator's output, (logits, labels): Ignite's State annotates it as int | None
        logits = cast("tuple[torch.Tensor, torch.Tensor]", engine.state.output)[0].detach()
        self.predicted.append(logits.argmax(dim=1).cpu())  # as Ignite's Accuracy counts it, at the run's precision
        self.probabilities.append(logits.float().softmax(dim=1).cpu())

    def gathered(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The predicted classes and probabilities of all ``n`` images in the split's order, on every process.

        With several processes, process r scored images r, r + W, r + 2W, ... (the unshuffled shards of
        ``TensorLoader``): the shards are padded to one length, gathered, and put back in order.
        """
        import ignite.distributed as idist
        import torch

        from fmnist_ignite.data.fashion_mnist import CLASS_NAMES

        predicted = torch.cat(self.predicted) if self.predicted else torch.zeros(0, dtype=torch.long)
        probabilities = torch.cat(self.probabilities) if self.probabilities else torch.zeros(0, len(CLASS_NAMES))
        world = idist.get_world_size()
        if world > 1:
            longest = -(-n // world)
            local = torch.cat([predicted.float().unsqueeze(1), probabilities], dim=1)
            padded = torch.zeros(longest, local.shape[1])
            padded[: len(local)] = local
            gathered = idist.all_gather(padded.to(idist.device()))
            assert isinstance(gathered, torch.Tensor)  # a tensor in, a tensor out: every process's padded shard
            everyone = gathered.cpu().reshape(world, longest, -1)
            whole = torch.empty(n, local.shape[1])
            for rank in range(world):
                index = torch.arange(rank, n, world)
                whole[index] = everyone[rank, : len(index)]
            predicted, probabilities = whole[:, 0].round().long(), whole[:, 1:]
        if len(predicted) != n:
            raise RuntimeError(f"kept predictions of {len(predicted)} images, the split has {n}")
        return predicted.numpy().astype(np.uint8), probabilities.numpy().astype(np.float32)

    def of_split(self, loader: Loader) -> tuple[np.ndarray, np.ndarray]:
        """The probabilities (N x 10, float32) and true classes (N) of the evaluator's last run over
        ``loader``'s whole split, in its order, on every process."""
        _, labels = split_tensors(loader)
        _, probabilities = self.gathered(len(labels))
        return probabilities, labels.numpy().astype(np.int64)

    def save(
        self,
        path: Path,
        loader: Loader,
        split: str = "test",
        probabilities: bool = True,
    ) -> dict:
        """Write the predictions of the evaluator's last run over ``loader``'s split to ``path`` (durably, on
        rank 0 only; every process must call it), the probabilities too unless told not to. Returns what
        ``summary.json`` says of them: the file's name and the split's fingerprint (``<split>_set_sha256``)."""
        import ignite.distributed as idist

        from fmnist_ignite.data.fashion_mnist import CLASS_NAMES

        images, labels = split_tensors(loader)
        predicted, kept_probabilities = self.gathered(len(labels))
        sha = fingerprint(images, labels)
        if idist.get_rank() == 0:
            arrays = {
                "predicted": predicted,
                "labels": labels.numpy().astype(np.uint8),
                f"{split}_set_sha256": np.array(sha),
                "class_names": np.array(CLASS_NAMES),
            }
            if probabilities:
                arrays["probabilities"] = kept_probabilities
            write_predictions(Path(path), arrays)
        return {"predictions": Path(path).name, f"{split}_set_sha256": sha}


def keep_validation_predictions(training: FinishedTraining, path: Path) -> Path | None:
    """Score the validation split with the model a finished ``Training`` holds (its kept weights, unless
    the run scores its last) and keep what it predicted, without the probabilities, in ``path``: a tuner's
    trials are compared image by image with these. None when the run has no validation split."""
    loader = training.loaders.get("validation")
    if loader is None or not training.config.restore_best:
        return None
    collector = PredictionCollector()
    training.evaluate(loader, attach=collector.attach)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    collector.save(Path(path), loader, split="validation", probabilities=False)
    return Path(path)


def load_predictions(run: str | Path, split: str = "test") -> dict:
    """A run's kept predictions of ``split``, as NumPy arrays.

    Args:
        run: a run directory, or the ``.npz`` file itself.
        split: "test" (the default) or "validation".

    Returns:
        The arrays of the file (``predicted``, ``labels``, ...), with ``correct`` (which images it got right)
        and ``sha256`` (the split's fingerprint).

    Raises:
        FmnistError: one line naming the run when there are none or the file is not one of these.
    """
    run = Path(run)
    path = run / (PREDICTIONS_FILE if split == "test" else VALIDATION_PREDICTIONS_FILE) if run.is_dir() else run
    if not run.exists():
        raise FmnistError(f"{run}: no such run directory")
    if not path.is_file():
        again = (
            Message(
                "score it again from its checkpoints with: {train}", train=Command.train(resume="auto", output_dir=run)
            )
            if run.is_dir() and resumable_checkpoints(run)
            else "it has no checkpoint to score again from: train it again"
        )
        raise FmnistError(
            "{run}: no {name} (a run that did not finish, that did not score the test set, or one from before runs "
            "kept their predictions); {again}",
            run=run,
            name=path.name,
            again=again,
        )
    loaded = read_predictions(path, split)
    loaded["sha256"] = loaded[f"{split}_set_sha256"]
    loaded["correct"] = loaded["predicted"] == loaded["labels"]
    return loaded

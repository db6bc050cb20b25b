"""The peer: the default run's work written the way Lightning's documentation teaches it.

A ``LightningModule`` holding the tutorial's MLP (``training_step``, ``validation_step``, ``test_step``,
``configure_optimizers``: SGD lr 1e-3, momentum 0.9), ``DataLoader``s over in-memory tensors (the same
55,000 / 5,000 split of the training file, batch 64, shuffled; the test file scored once at the end),
``Trainer(max_epochs=5)`` with validation each epoch, its default checkpointing (``ModelCheckpoint``)
and logger on, the progress bar off. Not a dependency of the library: ``pip install -e '.[bench]'``
(or ``pip install lightning``).

    python benchmarks/lightning_program.py DATA_DIR OUTPUT_DIR [--epochs 5]
"""

import argparse
from pathlib import Path

import lightning as L
import torch
from plain_program import load
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class LitMLP(L.LightningModule):
    def __init__(self, lr: float = 1e-3, momentum: float = 0.9):
        super().__init__()
        self.save_hyperparameters()
        self.model = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
        )
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss)
        return loss

    def _evaluate(self, batch, stage):
        x, y = batch
        logits = self(x)
        self.log(f"{stage}_loss", self.loss_fn(logits, y))
        self.log(f"{stage}_acc", (logits.argmax(1) == y).float().mean())

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    L.seed_everything(0, verbose=False)
    images, labels = load(args.data_dir, "train")
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    val, train = perm[:5000], perm[5000:]
    train_loader = DataLoader(TensorDataset(images[train], labels[train]), batch_size=64, shuffle=True)
    val_loader = DataLoader(TensorDataset(images[val], labels[val]), batch_size=1000)
    test_loader = DataLoader(TensorDataset(*load(args.data_dir, "t10k")), batch_size=1000)

    model = LitMLP()
    trainer = L.Trainer(
        max_epochs=args.epochs, default_root_dir=args.output_dir, enable_progress_bar=False, accelerator="cpu"
    )
    trainer.fit(model, train_loader, val_loader)
    trainer.test(model, test_loader)


if __name__ == "__main__":
    main()

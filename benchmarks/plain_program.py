"""The floor: a plain hand-written PyTorch program doing the work of `make run`'s default run.

The same 55,000 / 5,000 split of the training file, the tutorial's MLP and SGD (lr 1e-3, momentum 0.9,
batch 64, 5 epochs), shuffled batches sliced from in-memory tensors, a loss line every 100 batches,
validation after each epoch, a checkpoint each epoch, and the test set scored once at the end. No
verification, no reports, no safety: what someone would type by hand.

    python benchmarks/plain_program.py DATA_DIR OUTPUT_DIR [--epochs 5]
"""

import argparse
import gzip
from pathlib import Path

import torch
from torch import nn


def read_idx(path: Path) -> torch.Tensor:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(data_dir: Path, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    def find(stem):
        return next(p for p in (data_dir / stem, data_dir / f"{stem}.gz") if p.exists())

    images = read_idx(find(f"{name}-images-idx3-ubyte")).unsqueeze(1).float().div(255)
    return images, read_idx(find(f"{name}-labels-idx1-ubyte")).long()


def evaluate(model, images, labels, loss_fn, name):
    model.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(labels), 1000):
            pred = model(images[i : i + 1000])
            loss += loss_fn(pred, labels[i : i + 1000]).item() * len(pred)
            correct += (pred.argmax(1) == labels[i : i + 1000]).sum().item()
    print(f"{name}: Accuracy: {100 * correct / len(labels):>0.1f}%, Avg loss: {loss / len(labels):>8f}\n")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    images, labels = load(args.data_dir, "train")
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    val, train = perm[:5000], perm[5000:]
    train_x, train_y, val_x, val_y = images[train], labels[train], images[val], labels[val]
    test_x, test_y = load(args.data_dir, "t10k")

    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, args.epochs + 1):
        print(f"Epoch {epoch}\n-------------------------------")
        model.train()
        order = torch.randperm(len(train_y))
        for batch, i in enumerate(range(0, len(order), 64)):
            index = order[i : i + 64]
            loss = loss_fn(model(train_x[index]), train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if batch % 100 == 0:
                print(f"loss: {loss.item():>7f}  [{i:>5d}/{len(train_y):>5d}]")
        evaluate(model, val_x, val_y, loss_fn, "Validation")
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, args.output_dir / f"{epoch}.pt")
    print("Training completed")
    evaluate(model, test_x, test_y, loss_fn, "Test")


if __name__ == "__main__":
    main()

"""Ignite's own MNIST example (examples/mnist/mnist.py), switched to Fashion-MNIST and the tutorial's MLP.

Written from its description: torchvision's dataset through a DataLoader with per-sample transforms
(ToTensor, Normalize), create_supervised_trainer/evaluator, a loss line every 100 iterations, and after
each epoch the evaluator run on the whole training set and on the validation set. SGD lr 1e-3,
momentum 0.9, batch 64, as the tutorial. The test file plays its validation set, as in that example.

    python benchmarks/ignite_example.py DATA_DIR [--epochs 5]
"""

import argparse

import torch
from ignite.engine import Events, create_supervised_evaluator, create_supervised_trainer
from ignite.metrics import Accuracy, Loss
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import FashionMNIST
from torchvision.transforms import Compose, Normalize, ToTensor


def get_data_loaders(data_dir, train_batch_size, val_batch_size):
    transform = Compose([ToTensor(), Normalize((0.2860,), (0.3530,))])
    train = DataLoader(FashionMNIST(data_dir, train=True, transform=transform), train_batch_size, shuffle=True)
    val = DataLoader(FashionMNIST(data_dir, train=False, transform=transform), val_batch_size, shuffle=False)
    return train, val


def run(data_dir, epochs, log_interval=100):
    train_loader, val_loader = get_data_loaders(data_dir, 64, 1000)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    trainer = create_supervised_trainer(model, optimizer, criterion)
    metrics = {"accuracy": Accuracy(), "nll": Loss(criterion)}
    train_evaluator = create_supervised_evaluator(model, metrics=metrics)
    val_evaluator = create_supervised_evaluator(model, metrics=metrics)

    @trainer.on(Events.ITERATION_COMPLETED(every=log_interval))
    def log_training_loss(engine):
        print(f"Epoch[{engine.state.epoch}] Iteration[{engine.state.iteration}] Loss: {engine.state.output:.2f}")

    @trainer.on(Events.EPOCH_COMPLETED)
    def log_results(engine):
        for name, evaluator, loader in (
            ("Training", train_evaluator, train_loader),
            ("Validation", val_evaluator, val_loader),
        ):
            m = evaluator.run(loader).metrics
            accuracy, loss = m["accuracy"], m["nll"]
            print(f"{name} Results - Epoch: {engine.state.epoch} Avg accuracy: {accuracy:.2f} Avg loss: {loss:.2f}")

    trainer.run(train_loader, max_epochs=epochs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", help="holds FashionMNIST/raw/ (torchvision's layout)")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    run(args.data_dir, args.epochs)

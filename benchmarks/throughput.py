"""Samples per second for one epoch of the tutorial's model, three ways, measured in one process.

(a) the tutorial's pipeline: torchvision-style DataLoader, per-sample ToTensor, one-hot targets;
(b) a plain hand-written PyTorch loop over in-memory tensors;
(c) fmnist-ignite's trainer with the default handlers (loss logging, validation, checkpoints, early stopping).
Same split, batch size, model and optimizer for all three; prints the ratios and the share of the
machine's measured fp32 matmul peak that (c) reaches.

    python benchmarks/throughput.py [--batch-size 64] [--threads N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time

import torch
from ignite.engine import Engine, Events

from fmnist_ignite import Config, Net, create_evaluator, create_trainer, make_optimizer
from fmnist_ignite.data.fashion_mnist import load_fashion_mnist
from fmnist_ignite.data.loaders import make_loader
from fmnist_ignite.data.splits import make_splits
from fmnist_ignite.handlers.standard import attach_default_handlers

# Forward and backward of the MLP: 3 x 2 x (784*512 + 512*512 + 512*10) multiply-adds per sample.
FLOP_PER_SAMPLE = 6 * (784 * 512 + 512 * 512 + 512 * 10)


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    """The best fp32 GFLOP/s of an n x n matmul on this machine, with torch's current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def describe_machine() -> str:
    """The line every figure is printed with: CPU capability, cores, threads, torch, matmul peak."""
    from fmnist_ignite.core.device import cpu_capability

    return (
        f"machine: CPU {cpu_capability()}, {os.cpu_count()} cores, torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads, measured fp32 matmul peak {matmul_peak_gflops():.0f} GFLOP/s"
    )


def tutorial_pipeline(config: Config, split) -> float:
    """(a): the tutorial's loop over a DataLoader of PIL images through ToTensor, one-hot targets."""
    loader = make_loader(split, "dataloader", config.batch_size, shuffle=True, one_hot=True, seed=config.seed)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)  # as written there
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for x, y in loader:
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(split[1]) / (time.perf_counter() - start)


def plain_loop(config: Config, split) -> float:
    """(b): a hand-written loop slicing shuffled batches out of in-memory tensors."""
    images = split[0].unsqueeze(1).float().div(255)
    labels = split[1]
    model = Net()
    optimizer = make_optimizer(config, model)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(config.seed))
    for i in range(0, len(order), config.batch_size):
        index = order[i : i + config.batch_size]
        loss = loss_fn(model(images[index]), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return len(labels) / (time.perf_counter() - start)


def our_trainer(config: Config, splits) -> tuple[float, float]:
    """(c): samples/s of one epoch with every default handler; and of its batches alone."""
    loaders = {
        name: make_loader(
            split,
            "tensor",
            config.batch_size if name == "train" else config.eval_batch_size,
            shuffle=name == "train",
            seed=config.seed,
        )
        for name, split in splits.items()
    }
    model = Net()
    optimizer = make_optimizer(config, model)
    trainer = create_trainer(model, optimizer)
    evaluator = create_evaluator(model)
    marks = {}
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: marks.setdefault("start", time.perf_counter()))
    with tempfile.TemporaryDirectory() as output_dir:
        to_save = {"model": model, "optimizer": optimizer, "trainer": trainer}
        attach_default_handlers(config, trainer, evaluator, loaders, to_save, output_dir)
        # Registered last: the batches are done when the epoch's handlers (evaluation, checkpoint) begin.
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: None)
        trainer.add_event_handler(
            Events.ITERATION_COMPLETED(event_filter=lambda e, i: i == e.state.epoch_length),
            lambda e: marks.setdefault("batches_done", time.perf_counter()),
        )
        trainer.run(loaders["train"], max_epochs=1)
        end = time.perf_counter()
    n = len(splits["train"][1])
    return n / (end - marks["start"]), n / (marks["batches_done"] - marks["start"])


def engine_overhead_us(loader) -> float:
    """Microseconds per iteration an Ignite Engine spends around a step that does nothing."""
    engine = Engine(lambda engine, batch: None)
    start = time.perf_counter()
    engine.run(loader, max_epochs=1)
    return (time.perf_counter() - start) / len(loader) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3, help="runs of (b) and (c), interleaved; medians")
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args()
    logging.getLogger("fmnist_ignite").setLevel(logging.WARNING)  # a benchmark times the run: its lines unprinted
    torch.set_num_threads(args.threads)
    config = Config(batch_size=args.batch_size, patience=5, data_dir=args.data_dir)
    splits = make_splits(load_fashion_mnist(config.data_dir), config.val_size, config.split_seed)
    peak = matmul_peak_gflops()

    plain_loop(config, splits["train"])  # warm-up: allocator, thread pool, kernels
    a = tutorial_pipeline(config, splits["train"])
    b_runs, c_runs, c_batch_runs = [], [], []
    for _ in range(args.repeats):
        b_runs.append(plain_loop(config, splits["train"]))
        c, c_batches = our_trainer(config, splits)
        c_runs.append(c)
        c_batch_runs.append(c_batches)
    b, c, c_batches = (statistics.median(runs) for runs in (b_runs, c_runs, c_batch_runs))

    print(describe_machine())
    print(f"batch {args.batch_size}, {len(splits['train'][1])} training samples an epoch")
    print(f"(a) tutorial pipeline:        {a:>9,.0f} samples/s")
    print(f"(b) plain PyTorch loop:       {b:>9,.0f} samples/s")
    print(f"(c) fmnist-ignite trainer:    {c:>9,.0f} samples/s (whole epoch: batches, validation, checkpoint)")
    print(f"    its batches alone:        {c_batches:>9,.0f} samples/s")
    step_us = 1e6 * config.batch_size / b
    overhead = engine_overhead_us(make_loader(splits["train"], "tensor", config.batch_size, shuffle=True))
    print(
        f"Ignite Engine around a no-op step: {overhead:.0f} us/iteration = {overhead / step_us:.1%} "
        f"of a (b) step ({step_us:.0f} us)"
    )
    print(f"c/b = {c / b:.3f} (batches alone: {c_batches / b:.3f}), c/a = {c / a:.2f}")
    print(
        f"(c) reaches {c * FLOP_PER_SAMPLE / 1e9:.0f} GFLOP/s = {c * FLOP_PER_SAMPLE / 1e9 / peak:.0%} of the peak "
        f"(batches alone: {c_batches * FLOP_PER_SAMPLE / 1e9 / peak:.0%})"
    )


if __name__ == "__main__":
    main()

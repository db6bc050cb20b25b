"""What the library adds to each training iteration beyond Ignite's ``Engine``, item by item, in microseconds.

Each per-iteration handler a default run attaches (``attach_default_handlers`` and the stop-signal check of
``signals.stopping_trainer``) is called directly, many times, on a trainer whose state holds a finite batch
loss: its cost per iteration, Ignite's dispatch of it included (a handler with an event filter is called
through Ignite's filter wrapper, as the engine calls it). The update function is timed against a
hand-written step on a model small enough (``Linear(784, 10)``) that the overhead is what is measured; the
loader against slicing a batch by hand. Medians of interleaved repeats; prints the machine.

    python benchmarks/overhead.py [--repeats 7] [--calls 20000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time

import torch
from ignite.engine import Engine, Events
from throughput import describe_machine

from fmnist_ignite import Config, create_evaluator, create_trainer
from fmnist_ignite.data.loaders import make_loader
from fmnist_ignite.handlers.standard import attach_default_handlers
from fmnist_ignite.run.signals import StopRequests, stopping_trainer

EPOCH_LENGTH = 860  # batches of 64 in 55,000 images


def per_call_us(call, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def handler_items(trainer: Engine) -> list[tuple[str, object]]:
    """The trainer's per-iteration handlers (ITERATION_STARTED and _COMPLETED), each as a name and a
    zero-argument call that runs it as the engine's ``_fire_event`` would."""
    items = []
    for event in (Events.ITERATION_STARTED, Events.ITERATION_COMPLETED):
        for func, args, kwargs in trainer._event_handlers[event]:
            inner = getattr(func, "__wrapped__", func)
            name = getattr(inner, "__qualname__", type(inner).__name__)
            if func is not inner:
                name += " (through its event filter)"

            def call(func=func, args=args, kwargs=kwargs):
                trainer.state.iteration += 1
                engine = args[0]() if args else trainer
                func(engine, *args[1:], **kwargs)

            items.append((f"{event.name}: {name}", call))
    return items


def update_items(batch) -> list[tuple[str, object]]:
    """The trainer's update function and a hand-written step, on a tiny model (the overhead, not the math)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, fused=True)
    loss_fn = torch.nn.CrossEntropyLoss()
    trainer = create_trainer(model, optimizer)
    x, y = batch

    def plain():
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return [
        ("update: hand-written step (Linear(784, 10))", plain),
        ("update: the trainer's update function", lambda: trainer._process_function(trainer, batch)),
    ]


def loader_items(images, labels) -> list[tuple[str, object]]:
    """A batch from the TensorLoader (shuffled, uint8 to float) against slicing one by hand."""
    loader = make_loader((images, labels), "tensor", 64, shuffle=True)
    float_images = images.unsqueeze(1).float().div(255)
    order = torch.randperm(len(labels))
    state = {"it": iter(loader), "i": 0}

    def ours():
        try:
            next(state["it"])
        except StopIteration:
            state["it"] = iter(loader)

    def plain():
        i = state["i"] = (state["i"] + 64) % (len(labels) - 64)
        index = order[i : i + 64]
        float_images[index], labels[index]

    return [("loader: hand-sliced batch of float images", plain), ("loader: TensorLoader batch", ours)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    logging.getLogger("fmnist_ignite").setLevel(logging.WARNING)  # a benchmark times the run: its lines unprinted
    torch.manual_seed(0)
    images, labels = torch.randint(0, 256, (55_000, 28, 28), dtype=torch.uint8), torch.randint(0, 10, (55_000,))
    batch = (images[:64].unsqueeze(1).float().div(255), labels[:64])

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=1e-3))
    loaders = {"train": [batch] * EPOCH_LENGTH, "validation": [batch]}
    with tempfile.TemporaryDirectory() as output_dir:
        to_save = {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=1e-3), "trainer": trainer}
        attach_default_handlers(Config(patience=5), trainer, create_evaluator(model), loaders, to_save, output_dir)
        with stopping_trainer(trainer, StopRequests()):
            trainer.state.max_epochs, trainer.state.epoch_length = 1, EPOCH_LENGTH
            trainer.state.dataloader = loaders["train"]
            trainer.state.output = torch.tensor(0.5)
            trainer.state.epoch, trainer.state.iteration = 1, 1
            items = handler_items(trainer)

            # the iteration counter moves on with each call: keep it in one epoch, away from its last batch
            def reset() -> None:
                trainer.state.iteration = 2

            items = [(name, lambda call=call: (call(), reset())) for name, call in items]
            items += update_items(batch) + loader_items(images, labels)
            items.append(("(the loop and counter reset alone)", reset))
            results = {name: [] for name, _ in items}
            for _ in range(args.repeats):
                for name, call in items:
                    results[name].append(per_call_us(call, args.calls))

    print(describe_machine())
    floor = Engine(lambda engine, batch: None)
    start = time.perf_counter()
    floor.run([batch] * 20_000, max_epochs=1)
    print(f"Ignite Engine around a no-op step: {(time.perf_counter() - start) / 20_000 * 1e6:.2f} us/iteration")
    base = statistics.median(results["(the loop and counter reset alone)"])
    print(f"per iteration, medians of {args.repeats} x {args.calls:,} calls (the loop's own {base:.2f} us taken off):")
    for name, runs in results.items():
        if name.startswith("("):
            continue
        print(f"  {statistics.median(runs) - base:8.2f} us  {name}")


if __name__ == "__main__":
    main()

"""``--precision auto`` by measurement: where bf16 is native, a run times a few training steps of its own model
in fp32 and in bf16 and runs the faster, kept in a cache so that a machine measures a model once.

A CPU flag says what is possible, not what is faster: on 2 cores of a CPU with AVX512-BF16 and no AMX the
default run took 21.8 s in bf16 against 15.1 s in fp32 (issue #41). Where bf16 is not native (an AVX2 CPU, a
CPU held to AVX2, a GPU without bf16) bf16 autocast is emulated, and ``auto`` is fp32 without measuring.

The measurement is of copies: the run's model (its architecture and weights) and its optimizer as the run
builds it, on a synthetic batch of the run's batch size, each step as the trainer takes it. It draws nothing
from the run's generators and puts torch's, Python's and numpy's process-wide ones back, so the run trains
to the same weights, bitwise, whether it measured or not.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path
from typing import Any, Protocol
from weakref import WeakKeyDictionary

import ignite.distributed as idist
import torch
from torch import nn

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.device import bf16_hardware, choose_precision, cpu_capability, cpu_model_name
from fmnist_ignite.core.distributed import unwrap
from fmnist_ignite.core.engines import model_fn_for
from fmnist_ignite.core.models import use_generator
from fmnist_ignite.core.optim import make_optimizer

BF16_AT_MOST = 0.9
"""bf16 runs when its step takes at most this fraction of fp32's: it must be clearly faster to be worth its
coarser arithmetic (about 0.1-0.2 points of validation accuracy lower on the ``fast`` recipe)."""
MIN_ROUNDS, MAX_ROUNDS, BUDGET_S = 2, 10, 0.25  # timed rounds (one step in each precision), after a warm-up
PRECISIONS = ("fp32", "bf16")

_measured: WeakKeyDictionary[nn.Module, dict[str, object]] = WeakKeyDictionary()


class MeasurementCache(Protocol):
    """Where measurements are kept between runs (``files.precision_cache.PrecisionCache``)."""

    path: Path | None
    refused: str | None

    def lookup(self, key: str) -> dict[str, object] | None: ...

    def store(self, key: str, entry: dict[str, object]) -> bool: ...


def run_precision(
    config: Config, model: nn.Module, device: torch.device, world_size: int = 1, cache: MeasurementCache | None = None
) -> tuple[str, str]:
    """The precision a run trains in ("fp32" or "bf16") and why, in words.

    ``--precision fp32|bf16`` is taken as asked (``choose_precision``). ``auto`` is fp32 where bf16 is not
    native; where it is, the faster by measurement (``measure_step_ms``), bf16 only when its step takes at most
    ``BF16_AT_MOST`` of fp32's. A measurement kept in ``cache`` for the same machine, threads, torch, model
    and batch is used instead of measuring, so a run with the same cache always chooses the same. With several
    processes, rank 0 decides for all.

    Args:
        config: the run's settings: ``precision``, ``batch_size`` (over all processes), the optimizer's.
        model: the run's model, on ``device`` (wrapped for data-parallel or not); only a copy is trained.
        device: where the run computes.
        world_size: the processes of the run.
        cache: where measurements are kept; None: none (measured every time).
    """
    if config.precision != "auto":
        return choose_precision(config.precision, device)
    native, hardware = bf16_hardware(device)
    if not native:
        return choose_precision("auto", device)
    model = unwrap(model)
    if world_size == 1:
        decided = _decide(config, model, device, config.batch_size, hardware, cache)
    else:  # one decision for all: rank 0's, which alone measures and reads and writes the cache
        rank0 = idist.get_rank() == 0
        batch_size = config.batch_size // world_size
        mine = json.dumps(_decide(config, model, device, batch_size, hardware, cache)) if rank0 else ""
        decided = json.loads(str(idist.broadcast(mine, src=0)))
    _measured[model] = decided
    return str(decided["used"]), str(decided["why"])


def measured(model: nn.Module) -> dict[str, object] | None:
    """What ``run_precision`` measured for ``model`` (or read from its cache): ``step_ms`` (milliseconds a step
    in each precision) and ``cached``; None when it measured nothing (not ``auto``, bf16 not native)."""
    found = _measured.get(unwrap(model))
    return None if found is None else {key: found[key] for key in ("step_ms", "cached")}


def _decide(
    config: Config,
    model: nn.Module,
    device: torch.device,
    batch_size: int,
    hardware: str,
    cache: MeasurementCache | None,
) -> dict[str, object]:
    """The choice (``used``, ``why``, ``step_ms``, ``cached``) from the cache, else from a measurement."""
    key = cache_key(config, model, device, batch_size)
    entry = cache.lookup(key) if cache is not None else None
    step_ms = {
        name: float(value)
        for name, value in (entry or {}).items()
        if name in PRECISIONS and isinstance(value, (int, float))
    }
    cached = entry is not None and len(step_ms) == len(PRECISIONS)
    if cached and entry is not None and cache is not None:
        source = f"measured {entry.get('date', 'before')} and cached in {cache.path}"
    else:
        step_ms = {name: round(ms, 3) for name, ms in measure_step_ms(config, model, device, batch_size).items()}
        source = "measured as the run started"
        if cache is not None:
            cache.store(key, {**step_ms, "date": date.today().isoformat()})
    fp32, bf16 = (float(step_ms[name]) for name in PRECISIONS)
    used = "bf16" if bf16 <= BF16_AT_MOST * fp32 else "fp32"
    close = f", less than {1 - BF16_AT_MOST:.0%} faster" if used == "fp32" and bf16 < fp32 else ""
    why = f"auto: {hardware} took {fp32:.3g} ms a step in fp32 and {bf16:.3g} ms in bf16{close}, {source}"
    if cache is not None and cache.refused:
        why += f"; cache not used: {cache.refused}"
    return {"used": used, "why": why, "step_ms": step_ms, "cached": cached}


def cache_key(config: Config, model: nn.Module, device: torch.device, batch_size: int) -> str:
    """What a measurement holds for: the CPU (model name, capability, threads) or GPU, torch, the model (its
    class and a digest of its layers and parameter shapes), the batch size and the optimizer."""
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        threads = torch.get_num_threads()
        machine = f"{cpu_model_name()}, {cpu_capability()}, {threads} thread{'s' * (threads != 1)}"
    shapes = [(name, tuple(p.shape), str(p.dtype)) for name, p in model.named_parameters()]
    digest = hashlib.sha256(f"{model!r}{shapes}".encode()).hexdigest()[:12]
    optimizer = config.optimizer + (f" ({config.ns_steps} iterations)" if config.optimizer == "muon" else "")
    model_name = f"{type(model).__qualname__} {digest}"
    return f"{machine}; torch {torch.__version__}; {model_name}; batch {batch_size}; {optimizer}"


def measure_step_ms(config: Config, model: nn.Module, device: torch.device, batch_size: int) -> dict[str, float]:
    """Milliseconds a training step of a copy of ``model`` takes in fp32 and in bf16: the fastest of at least
    ``MIN_ROUNDS`` rounds (one step in each precision, alternately), after one step of each to warm up, and
    more rounds while the rounds have taken under ``BUDGET_S`` (at most ``MAX_ROUNDS``).

    Each precision trains its own copy of the model with its own optimizer, made as the run makes it
    (``make_optimizer``: Muon's iterations in bf16 for bf16), on one synthetic batch, with the trainer's step
    (``create_trainer``'s: zero the gradients, forward, loss with the run's label smoothing, backward, step).
    The run's generators are not drawn from, and torch's, Python's and numpy's process-wide ones are put back.
    """
    with _generators_put_back(device):
        generator = torch.Generator().manual_seed(0)
        images = torch.rand(batch_size, 1, 28, 28, generator=generator).to(device)
        labels = torch.randint(0, 10, (batch_size,), generator=generator).to(device)
        steps = {name: _step(config, model, device, name, images, labels) for name in PRECISIONS}
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        for step in steps.values():
            step()
        times: dict[str, list[float]] = {name: [] for name in PRECISIONS}
        started = time.perf_counter()
        for rounds in range(MAX_ROUNDS):
            if rounds >= MIN_ROUNDS and time.perf_counter() - started > BUDGET_S:
                break
            for name, step in steps.items():
                sync()
                before = time.perf_counter()
                step()
                sync()
                times[name].append(time.perf_counter() - before)
    return {name: 1e3 * min(seconds) for name, seconds in times.items()}


def _step(
    config: Config, model: nn.Module, device: torch.device, precision: str, images: torch.Tensor, labels: torch.Tensor
) -> Callable[[], None]:
    """One training step of a fresh copy of ``model`` in ``precision``, as the run's trainer takes it."""
    trained = copy.deepcopy(model)
    use_generator(trained, torch.Generator(device).manual_seed(0))  # the copy's dropout draws from its own
    trained.train()
    optimizer = make_optimizer(config.replace(precision=precision), trained)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    apply = model_fn_for(precision, device)

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(apply(trained, images), labels).backward()
        optimizer.step()

    return step


@contextmanager
def _generators_put_back(device: torch.device) -> Iterator[None]:
    """Run the block and put torch's (the CPU's and ``device``'s), Python's and numpy's process-wide generators
    back as they were (a model of one's own may draw from them: ``nn.Dropout``)."""
    python = random.getstate()
    numpy_random: Any = None
    with suppress(ImportError):
        import numpy.random as numpy_random
    numpy_state = numpy_random.get_state() if numpy_random is not None else None
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        random.setstate(python)
        if numpy_random is not None:
            numpy_random.set_state(numpy_state)

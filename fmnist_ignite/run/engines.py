"""The model, its optimizer and the two engines of one process's run, built as a ``Config`` asks."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from ignite.handlers import EMAHandler
from ignite.utils import manual_seed

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.device import resolve_device
from fmnist_ignite.core.engines import create_evaluator, create_trainer
from fmnist_ignite.core.models import build_model, check_model_output, use_generator
from fmnist_ignite.core.optim import make_optimizer
from fmnist_ignite.core.precision import run_precision
from fmnist_ignite.files.precision_cache import PrecisionCache
from fmnist_ignite.files.summary import recorded_precision

PROCESS_RNG_LOCK = threading.Lock()
"""Held while a run seeds, draws from, reads or restores torch's process-wide generators, so that runs in
threads of one process do not change each other's initialisation (``seeded_model``, ``RandomState``)."""


@dataclass
class RunEngines:
    """What one process trains and scores with.

    ``model`` is wrapped in ``DistributedDataParallel`` with several processes; ``ema`` is Ignite's
    ``EMAHandler`` with ``--ema`` (its average of the weights is then what validation and test score:
    ``scored_model``); ``precision`` is "bf16" or "fp32", and ``precision_reason`` says why;
    ``generator`` is the run's own, the one its dropout draws from (``seeded_model``).
    """

    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    trainer: Engine
    evaluator: Engine
    precision: str
    precision_reason: str
    ema: EMAHandler | None = None
    generator: torch.Generator | None = None

    @property
    def scored_model(self) -> torch.nn.Module:
        """The weights validation and test score: the moving average with ``--ema``, else the model."""
        return self.ema.ema_model if self.ema is not None else self.model


def seeded_model(
    config: Config, model: torch.nn.Module | None, device: torch.device
) -> tuple[torch.nn.Module, torch.Generator]:
    """The run's model, built (unless given) with the weights ``config.seed`` draws, and the run's own
    generator, on ``device``, which the model's ``Dropout`` layers draw from from now on.

    The initialisation draws from torch's process-wide generator, seeded under ``PROCESS_RNG_LOCK`` and put
    back afterwards (``torch.random.fork_rng``), so a run in a thread beside another draws what it draws
    alone. On a CPU the run's generator goes on from where the initialisation left the seeded one, on another
    device it is seeded with ``config.seed``: the masks dropout drew when it drew from the process-wide
    generators, so a run trains as it did then. Python's, numpy's and torch's process-wide generators are
    seeded too, as before, for a model of your own that draws from them (torch's ``nn.Dropout``): such a run
    shares them with any other run of the process.
    """
    with PROCESS_RNG_LOCK:
        manual_seed(config.seed)
        with torch.random.fork_rng(devices=[]):
            model = model if model is not None else build_model(config.model, config.dropout)
            state = torch.get_rng_state()
    generator = torch.Generator(device)
    if generator.device.type == "cpu":
        generator.set_state(state)
    else:
        generator.manual_seed(config.seed)
    use_generator(model, generator)
    return model, generator


def resumed_dir(config: Config) -> Path | None:
    """The directory of the run a resume continues, where the settings name it: the checkpoint's, or the
    output directory for ``resume="auto"``; None for a fresh run (or ``auto`` without an output directory)."""
    if not config.resume:
        return None
    if config.resume == "auto":
        return Path(config.output_dir) if config.output_dir else None
    return Path(config.resume).expanduser().parent


def build_engines(config: Config, model: torch.nn.Module | None, world_size: int) -> RunEngines:
    """Seed, build (or take) the model and check its output, wrap it for data-parallel training, and
    create the optimizer, the trainer (with the EMA of the weights if asked) and the evaluator."""
    device = idist.device() if world_size > 1 else resolve_device(config.device)
    model, generator = seeded_model(config, model, device)
    model = model.to(device)
    check_model_output(model, device)
    if world_size > 1:
        model = idist.auto_model(model)  # DistributedDataParallel: gradients all-reduced
    continued = resumed_dir(config) if config.precision == "auto" else None
    recorded = recorded_precision(continued) if continued is not None else None
    if recorded is not None:  # a resume trains on as its run chose, whatever a measurement would say today
        precision, reason = recorded, "auto: as the run it continues chose (its summary.json)"
    else:
        with PROCESS_RNG_LOCK:  # auto may time a copy's steps: it draws nothing of the run's and puts torch's back
            precision, reason = run_precision(config, model, device, world_size, PrecisionCache.from_environment())
    optimizer = idist.auto_optim(make_optimizer(config.replace(precision=precision), model))  # Muon's too
    trainer = create_trainer(model, optimizer, device, config.label_smoothing, precision)
    ema = None
    if config.ema:
        ema = EMAHandler(model, momentum=config.ema)
        ema.attach(trainer, name="ema_momentum", event=Events.ITERATION_COMPLETED)
    scored = ema.ema_model if ema is not None else model
    evaluator = create_evaluator(scored, device, precision, tta=config.tta)
    return RunEngines(device, model, optimizer, trainer, evaluator, precision, reason, ema, generator)

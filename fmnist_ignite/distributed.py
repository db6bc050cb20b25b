"""Data-parallel runs through ``ignite.distributed``: launching, and the few agreements ranks need."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import ignite.distributed as idist
import torch

from fmnist_ignite.config import Config
from fmnist_ignite.errors import FmnistError, TrainingInterrupted


def launched_externally() -> bool:
    """True in a process that a launcher started as one of several: torchrun (or another env://
    launcher), or SLURM's ``srun -n N`` (whose variables ignite.distributed reads by itself)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1


def default_backend(config: Config) -> str:
    return config.backend or ("nccl" if config.device != "cpu" and torch.cuda.is_available() else "gloo")


def agreed_max(value: int) -> int:
    """The largest ``value`` over all processes (itself when alone): a decision every rank shares."""
    if idist.get_world_size() == 1:
        return value
    return int(idist.all_reduce(torch.tensor(value), op="MAX"))


def loss_seen_by_all(loss: torch.Tensor) -> torch.Tensor:
    """The batch loss, or NaN when any process's loss is not finite: so ``TerminateOnNan`` stops every
    process at the same iteration instead of leaving the others waiting in the next all-reduce."""
    if idist.get_world_size() == 1:
        return loss
    bad = idist.all_reduce((~torch.isfinite(loss.detach())).float().reshape(1))
    return torch.full_like(loss, float("nan")) if bad.item() else loss


def broadcast_weights(module: torch.nn.Module) -> None:
    """Give every process rank 0's weights (after rank 0 alone read them from a file)."""
    if idist.get_world_size() > 1:
        for tensor in module.state_dict().values():
            tensor.copy_(idist.broadcast(tensor, src=0))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper, or the model itself."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _child_error(exc: BaseException) -> str:
    """The one-line message a failed training process raised, out of the traceback the parent gets."""
    found = re.findall(r"(?:FmnistError|TrainingInterrupted|NonFiniteLoss): (.+)", str(exc))
    return found[-1] if found else f"a training process failed: {str(exc).strip().splitlines()[-1]}"


def run_data_parallel(config: Config, worker, *args) -> dict:
    """Run ``worker(local_rank, config, *args)`` in each of ``nproc_per_node`` processes (or, under torchrun or srun,
    in this one) with ``idist.Parallel``; return rank 0's ``summary.json``."""
    spawn = (
        {}
        if launched_externally()
        else {
            "nproc_per_node": config.nproc_per_node,
            "nnodes": config.nnodes,
            "node_rank": config.node_rank,
            "master_addr": config.master_addr,
            "master_port": config.master_port,
        }
    )
    # The workers take the signals and stop together; the launching process just waits for them.
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in stop_signals} if spawn else {}
    try:
        with idist.Parallel(backend=default_backend(config), **spawn) as parallel:
            parallel.run(worker, config, *args)
    except FmnistError:
        raise
    except Exception as exc:  # a worker's error arrives wrapped in its traceback text
        message = _child_error(exc)
        stopped = re.match(r"interrupted by (SIG\w+) ", message)
        if stopped:
            saved = re.search(r"; saved (.+)$", message)
            exit_code = 128 + signal.Signals[stopped[1]].value
            raise TrainingInterrupted(
                message, exit_code, Path(saved[1]) if saved else None, config.output_dir and Path(config.output_dir)
            ) from None
        raise FmnistError(message) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = Path(config.output_dir) / "summary.json"
    return json.loads(summary.read_text()) if summary.is_file() else {}

"""The few agreements the processes of a data-parallel run need (``fmnist_ignite.run.launch`` starts them)."""

from __future__ import annotations

import ignite.distributed as idist
import torch


def agreed_max(value: int) -> int:
    """The largest ``value`` over all processes (itself when alone): a decision every rank shares."""
    if idist.get_world_size() == 1:
        return value
    return int(idist.all_reduce(torch.tensor(value), op="MAX"))


def broadcast_weights(module: torch.nn.Module) -> None:
    """Give every process rank 0's weights (after rank 0 alone read them from a file)."""
    if idist.get_world_size() > 1:
        for tensor in module.state_dict().values():
            tensor.copy_(idist.broadcast(tensor, src=0))


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper, or the model itself."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model

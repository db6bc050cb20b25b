"""The few agreements the processes of a data-parallel run need (``fmnist_ignite.launch`` starts them)."""

from __future__ import annotations

import ignite.distributed as idist
import torch


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

"""The optimizers a run can use, with a loaded state laid out like its parameters."""

from __future__ import annotations

import torch
from torch import nn

from fmnist_ignite.config.settings import Config


def make_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the tutorial's), Adam or AdamW, from the config.

    The fused implementations do the same arithmetic as the default ones in one kernel per step.

    Args:
        config: the settings it reads: ``optimizer`` ("sgd", "adam" or "adamw"), ``lr``, ``weight_decay``, and
            ``momentum`` (SGD only).
        model: the model whose parameters it optimises.
    """
    params, lr, weight_decay = model.parameters(), config.lr, config.weight_decay
    optimizer: torch.optim.Optimizer
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, momentum=config.momentum, lr=lr, weight_decay=weight_decay, fused=True)
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    else:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    optimizer.register_load_state_dict_post_hook(lay_state_out_like_params)
    return optimizer


def lay_state_out_like_params(optimizer: torch.optim.Optimizer) -> None:
    """Give each loaded state tensor (momentum, Adam's moments) its parameter's memory layout.

    ``load_state_dict`` keeps the saved layout, and the fused kernels walk a parameter and its state as
    flat memory: a state saved NCHW (a CNN checkpointed before it ran channels-last) would pair each
    weight with another weight's moments, a silently wrong update.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)

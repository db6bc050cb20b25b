"""The optimizers a run can use, with a loaded state laid out like its parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from fmnist_ignite.config.settings import Config


def make_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the tutorial's), Adam, AdamW or Muon with AdamW, from the config.

    The fused implementations do the same arithmetic as the default ones in one kernel per step.

    Args:
        config: the settings it reads: ``optimizer`` ("sgd", "adam", "adamw" or "muon"), ``lr``,
            ``weight_decay``, and ``momentum`` (SGD only).
        model: the model whose parameters it optimises.
    """
    params, lr, weight_decay = model.parameters(), config.lr, config.weight_decay
    optimizer: torch.optim.Optimizer
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, momentum=config.momentum, lr=lr, weight_decay=weight_decay, fused=True)
    elif config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    elif config.optimizer == "muon":
        return MuonWithAdamW(params, lr=lr, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    optimizer.register_load_state_dict_post_hook(lay_state_out_like_params)
    return optimizer


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon for the weight matrices (2-D), AdamW for the rest (biases, convolution kernels), as one optimizer.

    Muon (``torch.optim.Muon``) orthogonalises each matrix's momentum by Newton-Schulz iterations; it takes
    only 2-D parameters, so the others go to AdamW, as in the CIFAR-10 speedruns and Moonshot's recipe. The
    matrices' step is scaled to AdamW's RMS (``adjust_lr_fn="match_rms_adamw"``), so one learning rate and
    one weight decay serve both halves, and a schedule that sets ``lr`` in every group drives both.

    Args:
        params: the model's parameters.
        lr: the learning rate of both halves.
        weight_decay: the decoupled weight decay of both halves.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, weight_decay: float) -> None:
        params = list(params)
        matrices = [p for p in params if p.ndim == 2]
        rest = [p for p in params if p.ndim != 2]
        # "momentum" in the defaults: a one-cycle schedule cycles Muon's momentum (AdamW's betas stay).
        super().__init__(params, {"lr": lr, "momentum": 0.95})
        self.muon = torch.optim.Muon(matrices, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay, fused=True) if rest else None
        self.parts: list[torch.optim.Optimizer] = [self.muon] + ([self.adamw] if self.adamw else [])
        for part in self.parts:
            part.register_load_state_dict_post_hook(lay_state_out_like_params)
        # The same group dicts as the parts': a scheduler that sets a group's lr sets the part's.
        self.param_groups = [group for part in self.parts for group in part.param_groups]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step of each part (``closure``, if given, is evaluated once, before them)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Each part's state, by name ("muon", "adamw")."""
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict() if self.adamw else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore each part's state from what ``state_dict()`` returned."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"muon", "adamw"}:
            raise ValueError("not the state of a Muon-with-AdamW optimizer (keys 'muon' and 'adamw' expected)")
        self.muon.load_state_dict(state_dict["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state_dict["adamw"])


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

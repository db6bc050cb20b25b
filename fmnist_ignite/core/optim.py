"""The optimizers a run can use, with a loaded state laid out like its parameters."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from fmnist_ignite.config.settings import Config
from fmnist_ignite.core.device import choose_precision


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
        device = next(model.parameters()).device
        bf16 = choose_precision(config.precision, device)[0] == "bf16"
        return MuonWithAdamW(params, lr=lr, weight_decay=weight_decay, bf16=bf16, ns_steps=config.ns_steps)
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

    Convolution kernels are Muon's too, each flattened to a matrix (out channels x the rest), as in the
    CIFAR-10 speedruns; torch's Muon takes only 2-D parameters, so a model with kernels gets
    ``Fp32Muon``. torch's Muon also runs its Newton-Schulz iterations in bf16, which a CPU without native
    bf16 emulates (on AVX2 a step of the tutorial's MLP took over a second): there too ``Fp32Muon`` does
    the same in fp32.

    Args:
        params: the model's parameters.
        lr: the learning rate of both halves.
        weight_decay: the decoupled weight decay of both halves.
        bf16: orthogonalise in bf16 (torch's Muon: where the device computes bf16 natively, for a model of
            matrices only), else in fp32.
        ns_steps: the Newton-Schulz iterations of each step (torch's default, 5; 3 is cheaper and coarser).
    """

    def __init__(
        self, params: Iterable[torch.Tensor], lr: float, weight_decay: float, bf16: bool = True, ns_steps: int = 5
    ) -> None:
        params = list(params)
        matrices = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        # "momentum" in the defaults: a one-cycle schedule cycles Muon's momentum (AdamW's betas stay).
        super().__init__(params, {"lr": lr, "momentum": 0.95})
        muon = torch.optim.Muon if bf16 and all(p.ndim == 2 for p in matrices) else Fp32Muon
        self.muon = muon(matrices, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw", ns_steps=ns_steps)
        self.adamw = torch.optim.AdamW(rest, lr=lr, weight_decay=weight_decay, fused=True) if rest else None
        self.parts: list[torch.optim.Optimizer] = [self.muon] + ([self.adamw] if self.adamw else [])
        for part in self.parts:
            part.register_load_state_dict_post_hook(lay_state_out_like_params)
        # The same group dicts as the parts': a scheduler that sets a group's lr sets the part's.
        self.param_groups = [group for part in self.parts for group in part.param_groups]

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step of each part (``closure``, if given, is evaluated once, before them)."""
        loss = evaluated(closure)
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
        # Loading gives each part new group dicts: point at those, or a schedule would set stale ones' lr.
        self.param_groups = [group for part in self.parts for group in part.param_groups]


class Fp32Muon(torch.optim.Muon):
    """``torch.optim.Muon`` with its Newton-Schulz iterations in the parameters' dtype (fp32), not bf16,
    and for convolution kernels too (each flattened to out channels x the rest, its step scaled by that
    matrix's shape).

    The same update, state (``momentum_buffer``), defaults and groups as torch's (Nesterov momentum,
    decoupled weight decay, the step scaled by ``adjust_lr_fn``), so a checkpoint moves between the two.

    Args:
        params: the matrices and kernels (2-D or more) to optimise.
        **given: torch's ``Muon`` arguments (``lr``, ``weight_decay``, ``momentum``, ``ns_steps``,
            ``adjust_lr_fn``, ...); the others take torch's defaults.
    """

    def __init__(self, params: Iterable[torch.Tensor], **given: Any) -> None:
        params = list(params)
        if any(p.ndim < 2 for p in params):
            raise ValueError("Muon takes matrices and kernels (2-D or more); give the rest to AdamW")
        signature = inspect.signature(torch.optim.Muon.__init__).parameters.values()
        defaults = {p.name: p.default for p in signature if p.name not in ("self", "params")}
        unknown = set(given) - set(defaults)
        if unknown:
            raise TypeError(f"Fp32Muon got unexpected arguments: {', '.join(sorted(unknown))}")
        torch.optim.Optimizer.__init__(self, params, {**defaults, **given})  # torch's own check: 2-D only

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One step for every matrix with a gradient (``closure``, if given, evaluated first)."""
        loss = evaluated(closure)
        for group in self.param_groups:
            lr, momentum = float(group["lr"]), group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
                buffer = state["momentum_buffer"]
                buffer.lerp_(grad, 1 - momentum)
                update = grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                matrix = update.reshape(param.shape[0], -1)  # a kernel as out channels x the rest
                update = orthogonalised(matrix, group["ns_coefficients"], group["ns_steps"], group["eps"])
                param.mul_(1 - lr * group["weight_decay"])
                param.add_(update.reshape(param.shape), alpha=-adjusted_lr(lr, group["adjust_lr_fn"], matrix.shape))
        return loss


def evaluated(closure: Callable[[], float] | None) -> float | None:
    """The loss ``closure`` gives, computed with gradients on (as torch's optimizers do); None without one."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def orthogonalised(
    matrix: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """Newton-Schulz's quintic iteration towards the nearest semi-orthogonal matrix, as torch's Muon
    computes it (Keller Jordan's coefficients), in ``matrix``'s dtype."""
    a, b, c = coefficients
    wide = matrix.T if matrix.size(0) > matrix.size(1) else matrix
    x = wide / wide.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if matrix.size(0) > matrix.size(1) else x


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: torch.Size) -> float:
    """The step size torch's Muon uses for a ``shape`` matrix under ``adjust_lr_fn``."""
    fan_out, fan_in = shape[:2]
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(fan_out, fan_in)) * lr
    if adjust_lr_fn == "spectral_unclamped":
        return math.sqrt(fan_out / fan_in) * lr
    return math.sqrt(max(1.0, fan_out / fan_in)) * lr  # "original", torch's default


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

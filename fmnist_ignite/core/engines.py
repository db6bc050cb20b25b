"""Ignite trainer and evaluator engines for the MLP, correct for index and one-hot targets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from ignite.engine import Engine, Events, create_supervised_evaluator
from ignite.metrics import Accuracy, ConfusionMatrix, Loss, Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from torch import nn


def class_indices(y: torch.Tensor) -> torch.Tensor:
    """Targets as class indices: one-hot (N x 10) rows become their argmax, indices pass through.

    Args:
        y: a batch's targets: N class indices, or N x 10 one-hot (or probability) rows.
    """
    return y.argmax(dim=1) if y.ndim == 2 else y


def _set_loader_epoch(engine: Engine) -> None:
    """Tell a loader with ``set_epoch`` (ours) which epoch starts, and how many of its batches are done.

    Batches are done already only when a run resumes from a checkpoint taken in the middle of an epoch.
    """
    set_epoch = getattr(engine.state.dataloader, "set_epoch", None)
    if set_epoch is not None:
        epoch_length = engine.state.epoch_length
        assert epoch_length is not None  # Engine.run sets it before EPOCH_STARTED fires
        done = engine.state.iteration - (engine.state.epoch - 1) * epoch_length
        set_epoch(engine.state.epoch, start_batch=done)


ModelFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""How an engine applies a model to a batch of images: ``model_fn(model, x)`` gives the logits."""


def model_fn_for(precision: str, device: torch.device | str) -> ModelFn:
    """How the engines apply the model: plainly, or under bf16 autocast with fp32 logits out."""
    if precision == "fp32":
        return lambda model, x: model(x)
    device_type = torch.device(device).type

    def autocast_bf16(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            return model(x).float()

    return autocast_bf16


def create_trainer(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str = "cpu",
    label_smoothing: float = 0.0,
    precision: str = "fp32",
) -> Engine:
    """A supervised trainer with ``CrossEntropyLoss``, which takes index or one-hot (probability) targets.

    Its output is the batch loss as a detached tensor, so nothing waits on it unless a handler reads it.
    The step does what Ignite's ``supervised_training_step`` does (gradients zeroed, forward, loss,
    backward, optimizer step, in that order, so the arithmetic is the same), without the per-step work a
    run here does not need: ``model.train()`` only when the model is not already training (after an
    evaluation), batches moved only when they are not on the device yet, no gradient-accumulation scaling.

    Args:
        model: the model to train, already on ``device``.
        optimizer: the optimizer of the model's parameters.
        device: where the batches go (those already there are not moved).
        label_smoothing: ``CrossEntropyLoss``'s label smoothing; 0 (the default): none.
        precision: "fp32" (the default), or "bf16": the forward pass under bf16 autocast, fp32 logits out.

    Examples:
        >>> import torch
        >>> from fmnist_ignite import Net, create_trainer
        >>> model = Net()
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        >>> trainer = create_trainer(model, optimizer)
        >>> batch = (torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
        >>> state = trainer.run([batch], max_epochs=1)
        >>> state.iteration, float(state.output) > 0
        (1, True)
    """
    loss_fn = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    apply = model_fn_for(precision, device)
    device = torch.device(device)

    def update(engine: Engine, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        if not model.training:
            model.train()
        x, y = batch
        if x.device != device:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad()
        loss = loss_fn(apply(model, x), y)
        loss.backward()
        optimizer.step()
        return loss.detach()

    trainer = Engine(update)
    trainer.add_event_handler(Events.EPOCH_STARTED, _set_loader_epoch)
    return trainer


class ExampleCount(Metric):
    """How many images were scored (over all processes): with the accuracy, the count a Wilson interval needs."""

    @reinit__is_reduced
    def reset(self) -> None:
        self._count = 0

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        self._count += len(output[1])

    @sync_all_reduce("_count")
    def compute(self) -> int:
        return int(self._count)


def flip_averaged(model_fn: ModelFn) -> ModelFn:
    """Test-time flips: the mean of the logits of each image and of its mirror image (left-right)."""

    def averaged(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return (model_fn(model, x) + model_fn(model, x.flip(-1))) / 2

    return averaged


def create_evaluator(
    model: nn.Module,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    confusion_matrix: bool = False,
    tta: bool = False,
) -> Engine:
    """A supervised evaluator with Ignite metrics ``accuracy``, ``loss`` and ``count``.

    ``accuracy`` is a fraction, never above 1; ``count`` is the number of images scored.

    Args:
        model: the model to score, already on ``device``.
        device: where the batches go.
        precision: "fp32" (the default), or "bf16": the forward pass under bf16 autocast, fp32 logits out.
        confusion_matrix: also the metric ``confusion`` (10 x 10 counts, rows are the true classes).
        tta: each image scored on the mean logits of it and its mirror image (the flipped copy is made from the
            batch; the images the loader holds are not changed).

    Examples:
        >>> import torch
        >>> from fmnist_ignite import Net, create_evaluator
        >>> evaluator = create_evaluator(Net())
        >>> batch = (torch.rand(20, 1, 28, 28), torch.arange(20) % 10)
        >>> metrics = evaluator.run([batch]).metrics
        >>> sorted(metrics), metrics["count"], 0 <= metrics["accuracy"] <= 1
        (['accuracy', 'count', 'loss'], 20, True)
    """
    model_fn = model_fn_for(precision, device)
    metrics = {"accuracy": Accuracy(), "loss": Loss(nn.CrossEntropyLoss()), "count": ExampleCount()}
    if confusion_matrix:
        metrics["confusion"] = ConfusionMatrix(num_classes=10)
    return create_supervised_evaluator(
        model,
        metrics=metrics,
        device=device,
        output_transform=lambda x, y, y_pred: (y_pred, class_indices(y)),
        model_fn=flip_averaged(model_fn) if tta else model_fn,
    )

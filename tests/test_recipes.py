"""Recipes, the one-cycle schedule, label smoothing, bf16 autocast and threads."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events

from fmnist_ignite import RECIPES, Config, FmnistError, Net, Training, create_trainer, recipe, train
from fmnist_ignite.cli.parser import build_parser, config_from_args
from fmnist_ignite.core.optim import make_optimizer


def test_tutorial_recipe_is_the_default_config_and_best_differs():
    assert recipe("tutorial") == Config()
    best = recipe("best")
    assert (best.optimizer, best.scheduler) == ("adamw", "onecycle") and best.dropout > 0
    assert recipe("best", epochs=3).epochs == 3
    with pytest.raises(FmnistError, match="unknown recipe 'fastest'"):
        recipe("fastest")


def test_flags_given_override_the_recipe_and_the_rest_come_from_it():
    config = config_from_args(build_parser().parse_args(["--recipe", "best", "--epochs", "2", "--no-progress"]))
    assert config == recipe("best", epochs=2, progress=False)
    assert config_from_args(build_parser().parse_args(["--lr", "0.5"])) == Config(lr=0.5)


def test_one_cycle_warms_up_to_the_peak_then_anneals_and_is_saved_for_resume(small_config):
    config = small_config.replace(optimizer="adamw", lr=0.01, scheduler="onecycle", epochs=4)
    training = Training(config)
    lrs = []
    training.trainer.add_event_handler(
        Events.ITERATION_COMPLETED, lambda e: lrs.append(training.optimizer.param_groups[0]["lr"])
    )
    result = training.run()
    peak = lrs.index(max(lrs))
    assert len(lrs) == 40 and max(lrs) == pytest.approx(0.01, rel=1e-2)
    assert 5 <= peak <= 15  # the first quarter of 40 steps
    assert lrs[0] < 0.001 and lrs[-1] < 1e-4
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1], strict=False))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1 :], strict=False))
    saved = torch.load(result.last_checkpoint, weights_only=True)
    assert "lr_scheduler" in saved


def test_label_smoothing_changes_the_training_loss_only():
    torch.manual_seed(0)
    model = Net()
    x, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    losses = {}
    for smoothing in (0.0, 0.3):
        trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.0), label_smoothing=smoothing)
        losses[smoothing] = trainer.run([(x, y)], max_epochs=1).output.item()
    logits = model(x)
    assert losses[0.0] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    expected = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.3).item()
    assert losses[0.3] == pytest.approx(expected, rel=1e-5) and losses[0.3] != pytest.approx(losses[0.0])


def test_bf16_autocast_trains_with_fp32_logits_and_close_losses():
    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    outputs = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(1)
        model = Net()
        trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), precision=precision)
        seen = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e, seen=seen: seen.append(e.state.output.item()))
        trainer.run([(x, y)] * 5, max_epochs=1)
        outputs[precision] = seen
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert outputs["bf16"] != outputs["fp32"]  # autocast really ran in bfloat16
    assert outputs["bf16"] == pytest.approx(outputs["fp32"], rel=0.05)


def test_threads_setting_is_applied(small_config):
    before = torch.get_num_threads()
    try:
        train(small_config.replace(epochs=1, threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_optimizers_are_the_fused_implementations():
    for name in ("sgd", "adam", "adamw"):
        optimizer = make_optimizer(Config(optimizer=name), Net())
        assert optimizer.defaults["fused"] is True


def test_every_recipe_is_a_valid_config():
    for name in RECIPES:
        recipe(name).validate()

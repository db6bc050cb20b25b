"""--optimizer muon: torch's Muon for the weight matrices and AdamW for the rest, as one optimizer; the fp32
Newton-Schulz variant for CPUs without native bf16; resumable like the others."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_same_weights, final_weights, signal_at
from torch import nn

from fmnist_ignite.core.models import build_model
from fmnist_ignite.core.optim import Fp32Muon, MuonWithAdamW, adjusted_lr, make_optimizer
from fmnist_ignite.errors import TrainingInterrupted
from fmnist_ignite.run.launch import train


def test_matrices_and_kernels_go_to_muon_and_the_rest_to_adamw(small_config):
    for name in ("mlp", "cnn"):
        model = build_model(name)
        optimizer = make_optimizer(small_config.replace(optimizer="muon", precision="fp32"), model)
        assert isinstance(optimizer, MuonWithAdamW) and isinstance(optimizer.muon, Fp32Muon)
        in_muon = {id(p) for g in optimizer.muon.param_groups for p in g["params"]}
        in_adamw = {id(p) for g in optimizer.adamw.param_groups for p in g["params"]}
        for parameter in model.parameters():
            assert (id(parameter) in in_muon) == (parameter.ndim >= 2)
            assert (id(parameter) in in_adamw) == (parameter.ndim < 2)
        assert len(optimizer.param_groups) == 2  # the parts' own groups: a schedule sets both
    bf16 = make_optimizer(small_config.replace(optimizer="muon", precision="bf16"), build_model("mlp"))
    assert type(bf16.muon) is torch.optim.Muon  # torch's own where it can: matrices only, bf16 asked for
    kernels = make_optimizer(small_config.replace(optimizer="muon", precision="bf16"), build_model("cnn"))
    assert type(kernels.muon) is Fp32Muon  # torch's takes no kernels


def test_a_kernels_step_is_its_flattened_matrix_orthogonalised():
    torch.manual_seed(1)
    kernel = nn.Parameter(torch.randn(32, 16, 3, 3))
    optimizer = Fp32Muon([kernel], lr=0.01, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")
    kernel.grad = torch.randn(32, 16, 3, 3)
    before = kernel.detach().clone()
    optimizer.step()
    step = (before - kernel.detach()).reshape(32, 144) / adjusted_lr(0.01, "match_rms_adamw", torch.Size((32, 144)))
    singular = torch.linalg.svdvals(step)
    assert singular.min() > 0.3 and singular.max() < 1.3
    with pytest.raises(ValueError, match="matrices and kernels"):
        Fp32Muon([nn.Parameter(torch.zeros(5))])


def test_the_fp32_step_is_torchs_muon_step_without_its_bf16_rounding():
    torch.manual_seed(0)
    start = torch.randn(64, 96, dtype=torch.float64)
    ours, theirs = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    mine = Fp32Muon([ours], lr=0.02, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")
    torchs = torch.optim.Muon([theirs], lr=0.02, weight_decay=0.0, adjust_lr_fn="match_rms_adamw")
    for _ in range(3):
        grad = torch.randn(64, 96, dtype=torch.float64)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        before = ours.detach().clone()
        mine.step()
        torchs.step()
        update = (before - ours.detach()) / adjusted_lr(0.02, "match_rms_adamw", ours.shape)
        singular = torch.linalg.svdvals(update)
        assert singular.min() > 0.3 and singular.max() < 1.3  # orthogonalised: all singular values near one
    step = (start - ours.detach()).abs().max()
    assert (ours.detach() - theirs.detach()).abs().max() < 0.05 * step  # torch's rounds to bf16, ours does not
    assert mine.state_dict()["param_groups"][0].keys() == torchs.state_dict()["param_groups"][0].keys()


def test_a_one_cycle_schedule_drives_both_halves(small_config):
    config = small_config.replace(optimizer="muon", scheduler="onecycle", epochs=2, lr=0.02, precision="fp32")
    training_lrs: list[tuple[float, float]] = []

    from fmnist_ignite.run.training import Training

    with Training(config) as training:
        from ignite.engine import Events

        optimizer = training.optimizer
        assert isinstance(optimizer, MuonWithAdamW)

        @training.trainer.on(Events.ITERATION_COMPLETED)
        def lrs(engine):
            training_lrs.append((optimizer.muon.param_groups[0]["lr"], optimizer.adamw.param_groups[0]["lr"]))

        training.run()
    muon_lrs, adamw_lrs = zip(*training_lrs, strict=True)
    assert muon_lrs == adamw_lrs and max(muon_lrs) == pytest.approx(0.02, rel=0.05) and muon_lrs[-1] < 1e-4


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_muon_run_resumed_mid_epoch_is_bitwise_the_uninterrupted_one(small_config, tmp_path, precision):
    if precision == "bf16" and not torch.cpu._is_avx512_bf16_supported():
        pytest.skip("bf16 Newton-Schulz is torch's Muon, slow where bf16 is emulated")
    config = small_config.replace(optimizer="muon", lr=0.01, scheduler="onecycle", epochs=3, precision=precision)
    full = train(config.replace(output_dir=str(tmp_path / "full")))
    cut = config.replace(output_dir=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted) as info:
        train(cut, extra_handlers=[signal_at(13)])  # epoch 2, batch 3 of 10
    resumed = train(cut.replace(resume=str(info.value.checkpoint)))
    assert_same_weights(final_weights(full), final_weights(resumed))
    assert full.history[-1]["val_accuracy"] > full.history[0]["val_accuracy"] or full.history[0]["val_accuracy"] == 1.0

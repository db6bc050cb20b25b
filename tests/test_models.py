"""Models: the built-in CNN by name, a user's own model through the whole pipeline, and the checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from helpers import assert_same_weights, final_weights, signal_at
from torch import nn

from fmnist_ignite import CNN, Config, FmnistError, Net, TrainingInterrupted, evaluate_checkpoint, train
from fmnist_ignite.analysis.inference import load_images, load_model, predict
from fmnist_ignite.cli.parser import build_parser, config_from_args
from fmnist_ignite.core.models import Dropout, model_for_state_dict
from fmnist_ignite.core.optim import make_optimizer


class TinyConvNet(nn.Module):
    """A user's own model: one convolution with batch norm and dropout, then a linear layer."""

    def __init__(self, outputs: int = 10):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 4, 5, stride=2), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.1))
        self.head = nn.Linear(4 * 12 * 12, outputs)

    def forward(self, x):
        return self.head(self.conv(x).flatten(1))


def test_a_users_model_trains_resumes_bitwise_and_is_scored_with_its_class(small_config, tmp_path):
    config = small_config.replace(epochs=3, lr=0.02, optimizer="adamw")
    torch.manual_seed(0)
    full = train(config.replace(output_dir=str(tmp_path / "full")), model=TinyConvNet())
    cut = config.replace(output_dir=str(tmp_path / "cut"))
    torch.manual_seed(0)
    with pytest.raises(TrainingInterrupted) as info:
        train(cut, extra_handlers=[signal_at(13)], model=TinyConvNet())
    resumed = train(cut.replace(resume=str(info.value.checkpoint)), model=TinyConvNet())
    assert_same_weights(final_weights(resumed), final_weights(full))
    assert resumed.test_metrics == full.test_metrics

    summary = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert summary["config"]["model"] == "custom" and summary["model"].endswith("test_models.TinyConvNet)")
    with pytest.raises(FmnistError, match="the weights of a model of your own"):
        evaluate_checkpoint(resumed.best_checkpoint, config.data_dir, "cpu", verify=False)
    mine = evaluate_checkpoint(resumed.best_checkpoint, config.data_dir, "cpu", verify=False, model=TinyConvNet())
    assert mine["accuracy"] == resumed.test_metrics["accuracy"]
    with pytest.raises(FmnistError, match="other settings; .*: model: 'custom' -> 'mlp'"):
        train(cut.replace(resume="auto", epochs=4))  # resumed with the built-in model instead
    with pytest.raises(FmnistError, match=r"model of your own \(model: custom\): pass it"):
        train(cut.replace(resume="auto", epochs=4, model="custom"))  # as its saved config says


@pytest.mark.parametrize(
    "model, message",
    [
        (TinyConvNet(outputs=5), r"the model returned \(2, 5\) for a batch of 2 images of 1 x 28 x 28; it must"),
        (nn.Linear(10, 10), "the model failed on a batch of 2 images of 1 x 28 x 28: RuntimeError: "),
    ],
)
def test_a_model_that_does_not_give_ten_logits_is_refused_before_training(small_config, model, message):
    with pytest.raises(FmnistError, match=message):
        train(small_config, model=model)
    assert not list(Path(small_config.output_dir).glob("*.pt"))


def test_the_cnn_trains_and_evaluate_and_predict_rebuild_it_from_the_checkpoint(small_config, tmp_path):
    assert config_from_args(build_parser().parse_args(["--model", "cnn"])).model == "cnn"
    result = train(small_config.replace(model="cnn", epochs=1, dropout=0.2, lr=0.05))
    assert isinstance(result.model, CNN)
    for path in (result.best_checkpoint, result.last_checkpoint):
        assert isinstance(load_model(path), CNN)
    scored = evaluate_checkpoint(result.best_checkpoint, small_config.data_dir, "cpu", verify=False)
    assert scored["accuracy"] == result.test_metrics["accuracy"]
    names, images = load_images(tmp_path / "data" / "t10k-images-idx3-ubyte.gz")
    assert len(predict(load_model(result.best_checkpoint), images[:3])) == 3 and len(names) == 200


def test_the_cnn_runs_channels_last_and_means_what_an_nchw_cnn_means():
    torch.manual_seed(0)
    model = CNN().eval()
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    # The same weights laid out NCHW, applied without the channels-last conversion: the flattened
    # features (the 128-unit layer's inputs) must come in the same order, or older checkpoints break.
    nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        reference = nchw.classifier(nchw.features(x))
        assert torch.allclose(model(x), reference, atol=1e-5)
        # A state dict saved NCHW (before this layout) loads, and the model stays channels-last.
        reloaded = CNN().eval()
        reloaded.load_state_dict({k: v.contiguous() for k, v in nchw.state_dict().items()})
        assert reloaded.features[4].weight.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(reloaded(x), reference, atol=1e-5)


def test_the_cnn_before_2026_12_02_pooled_before_its_relu_and_computed_what_relu_then_pool_computes():
    # That layout (conv, batch norm, pool, ReLU) against the order before it (conv, batch norm, ReLU, pool),
    # from the same state dict: the same logits and gradients in training mode (batch statistics).
    torch.manual_seed(0)
    model = CNN(pool_first=False)
    assert [type(layer) for layer in model.features[:4]] == [nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU]
    before = copy.deepcopy(model)
    for block in (0, 4):
        before.features[block + 2], before.features[block + 3] = nn.ReLU(), nn.MaxPool2d(2)
    x = torch.randn(16, 1, 28, 28)
    model(x).square().sum().backward()
    before(x).square().sum().backward()
    assert torch.allclose(model(x), before(x), atol=1e-6)
    for (name, param), other in zip(model.named_parameters(), before.parameters(), strict=True):
        assert torch.allclose(param.grad, other.grad, rtol=1e-4, atol=1e-6), name
    assert model.state_dict().keys() == before.state_dict().keys()


def test_the_cnn_pools_before_its_batch_norm_and_tells_the_old_layout_s_weights_by_their_keys():
    torch.manual_seed(0)
    new, old = CNN(), CNN(pool_first=False).eval()
    assert [type(layer) for layer in new.features[:4]] == [nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.ReLU]
    assert "features.2.running_mean" in new.state_dict() and "features.1.running_mean" in old.state_dict()
    old.features[1].running_mean.normal_()
    x = torch.randn(8, 1, 28, 28)
    loaded = model_for_state_dict(old.state_dict()).eval()
    loaded.load_state_dict(old.state_dict())
    assert torch.equal(loaded(x), old(x))
    with pytest.raises(RuntimeError):  # the current layout does not take the old weights as they are
        CNN().load_state_dict(old.state_dict())
    assert type(model_for_state_dict(new.state_dict()).features[1]) is nn.MaxPool2d


def test_old_layout_weights_load_into_a_cnn_the_caller_gives(tmp_path):
    torch.manual_seed(0)
    old = CNN(pool_first=False).eval()
    old.features[5].running_var.uniform_(0.5, 2.0)
    torch.save(old.state_dict(), tmp_path / "best_model_1_neg_val_loss=-0.4.pt")
    given = load_model(tmp_path / "best_model_1_neg_val_loss=-0.4.pt", model=CNN())
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(given(x), old(x))


def test_a_cnn_takes_a_saved_layout_in_place_and_its_optimizer_still_holds_its_parameters():
    torch.manual_seed(0)
    old = CNN(pool_first=False)
    model = CNN()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert model.match_layout(old.state_dict()) is model
    model.load_state_dict(old.state_dict())
    x = torch.randn(8, 1, 28, 28)
    model(x).sum().backward()
    optimizer.step()
    old(x).sum().backward()
    with torch.no_grad():
        for p in old.parameters():
            p -= 0.1 * p.grad
    for (name, param), other in zip(model.state_dict().items(), old.state_dict().values(), strict=True):
        assert torch.allclose(param, other, atol=1e-6), name
    assert type(model.match_layout(CNN().state_dict()).features[1]) is nn.MaxPool2d  # and back


def test_a_cnn_subclass_with_blocks_of_its_own_is_left_as_it_is_by_match_layout():
    class Deeper(CNN):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())

    model = Deeper()
    layers = [type(layer) for layer in model.features]
    assert model.match_layout(CNN(pool_first=False).state_dict()) is model
    assert model.match_layout(model.state_dict()) is model
    assert [type(layer) for layer in model.features] == layers


@pytest.mark.parametrize("p", [0.115, 0.3, 0.5])
def test_dropout_keeps_each_element_with_probability_1_minus_p_and_keeps_the_mean(p):
    torch.manual_seed(0)
    layer = Dropout(p)
    x = torch.rand(1000, 1000, requires_grad=True)  # a million elements: the kept fraction to within 0.15%
    y = layer(x)
    kept = y != 0
    assert abs(kept.double().mean().item() - (1 - p)) < 0.0015
    assert torch.allclose(y[kept], x[kept] / (1 - p), rtol=1e-4)  # kept elements scaled by 1 / (1 - p)
    assert abs(y.double().mean().item() - x.double().mean().item()) < 0.003
    y.sum().backward()  # the gradient: the same mask and scale
    assert torch.equal(x.grad != 0, kept) and torch.allclose(x.grad[kept], torch.tensor(1 / (1 - p)), rtol=1e-4)
    # Each column and row is masked independently: no lane of the random integers is reused.
    columns = kept.double().mean(0)
    assert columns.std().item() < 2 * ((1 - p) * p / 1000) ** 0.5


def test_dropout_repeats_with_the_seed_is_the_identity_in_evaluation_and_zeroes_everything_at_p_1():
    x = torch.rand(64, 300)
    torch.manual_seed(3)
    first = Dropout(0.3)(x)
    torch.manual_seed(3)
    assert torch.equal(Dropout(0.3)(x), first)
    assert not torch.equal(Dropout(0.3)(x), first)  # the next draw differs
    assert Dropout(0.3).eval()(x) is x and Dropout(0.0)(x) is x
    assert torch.equal(Dropout(1.0)(x), torch.zeros_like(x))
    assert Dropout(0.2)(torch.rand(3, 5, 7)).shape == (3, 5, 7)  # an element count not a multiple of 4
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)
    assert isinstance(Dropout(0.1), nn.Dropout) and Dropout(0.1).state_dict() == {}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_optimizer_state_saved_nchw_resumes_channels_last_with_the_same_update(optimizer):
    # A CNN checkpointed before it ran channels-last: its momentum (or Adam's moments) were saved NCHW.
    # The fused step walks a weight and its state as flat memory, so the state must follow the weight.
    config = Config(model="cnn", optimizer=optimizer, lr=0.01)
    torch.manual_seed(0)
    old = CNN().to(memory_format=torch.contiguous_format)
    old_optimizer = make_optimizer(config, old)
    old(torch.rand(4, 1, 28, 28)).sum().backward()
    old_optimizer.step()
    new = CNN()
    new.load_state_dict(old.state_dict())
    new_optimizer = make_optimizer(config, new)
    new_optimizer.load_state_dict(copy.deepcopy(old_optimizer.state_dict()))  # as from a file: no shared tensors
    for old_param, new_param in zip(old.parameters(), new.parameters(), strict=False):
        new_param.grad = torch.empty_like(new_param).copy_(old_param.grad)
        for value in new_optimizer.state[new_param].values():
            if value.dim():
                assert value.stride() == new_param.stride()
    old_optimizer.step()
    new_optimizer.step()
    for name, value in old.state_dict().items():
        assert torch.equal(new.state_dict()[name], value), name


def test_an_mlp_checkpoint_still_rebuilds_an_mlp(small_config):
    result = train(small_config.replace(epochs=1))
    assert type(load_model(result.best_checkpoint)) is Net

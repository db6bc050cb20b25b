"""Engines: the trainer learns, and the evaluator's metrics are right for index and one-hot targets."""

from __future__ import annotations

import copy

import pytest
import torch
from ignite.engine import Events

from fmnist_ignite import FmnistError, Net, class_indices, create_evaluator, create_trainer, resolve_device
from fmnist_ignite.data.loaders import make_loader, one_hot_targets


def random_batches(n=200, seed=0):
    """Images with values on ToTensor's grid (k/255), so they survive the uint8 round trip exactly."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g).float().div(255)
    return images, torch.randint(0, 10, (n,), generator=g)


def test_model_is_the_tutorials_mlp():
    model = Net()
    assert [tuple(p.shape) for p in model.parameters()] == [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]
    assert list(model.state_dict())[0] == "linear_relu_stack.0.weight"
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert sum(isinstance(m, torch.nn.Dropout) for m in Net(dropout=0.2).modules()) == 2


def test_accuracy_with_one_hot_targets_equals_accuracy_with_indices_and_never_exceeds_one():
    """Tutorial defect: it compared argmax with one-hot targets and printed 103-112%."""
    torch.manual_seed(0)
    model = Net().eval()
    images, labels = random_batches()
    labels[:50] = model(images[:50]).argmax(1)  # make a quarter right for sure, so accuracy is not ~0
    index_metrics = create_evaluator(model).run(make_loader_from(images, labels, one_hot=False)).metrics
    onehot_metrics = create_evaluator(model).run(make_loader_from(images, labels, one_hot=True)).metrics
    expected = (model(images).argmax(1) == labels).float().mean().item()
    assert index_metrics["accuracy"] == pytest.approx(expected)
    assert onehot_metrics["accuracy"] == pytest.approx(expected)
    assert onehot_metrics["loss"] == pytest.approx(index_metrics["loss"], rel=1e-6)
    expected_loss = torch.nn.functional.cross_entropy(model(images), labels).item()
    assert index_metrics["loss"] == pytest.approx(expected_loss, rel=1e-5)


def make_loader_from(images, labels, one_hot):
    uint8 = (images.squeeze(1) * 255).round().to(torch.uint8)
    return make_loader((uint8, labels), "tensor", batch_size=64, shuffle=False, one_hot=one_hot)


def test_training_with_one_hot_targets_matches_training_with_indices():
    torch.manual_seed(0)
    model_a = Net()
    model_b = copy.deepcopy(model_a)
    images, labels = random_batches()
    for model, one_hot in ((model_a, False), (model_b, True)):
        trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
        trainer.run(make_loader_from(images, labels, one_hot), max_epochs=2)
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=False):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_trainer_output_is_the_detached_batch_loss_and_it_falls():
    torch.manual_seed(0)
    model = Net()
    images, labels = random_batches(n=64)
    trainer = create_trainer(model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9))
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output))
    trainer.run([(images, labels)] * 30, max_epochs=1)
    assert not losses[0].requires_grad
    assert losses[-1].item() < 0.5 * losses[0].item()


def test_class_indices_converts_one_hot_and_keeps_indices():
    labels = torch.tensor([3, 0, 9])
    assert torch.equal(class_indices(one_hot_targets(labels)), labels)
    assert torch.equal(class_indices(labels), labels)


def test_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(FmnistError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")

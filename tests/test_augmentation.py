"""Training augmentation (flips, shifts), test-time flips, weight averaging, and the recipes the README lists:
exact resume, and the validation and test images untouched during training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import without_times
from helpers import signal_at
from ignite.engine import Events

from fmnist_ignite import RECIPES, Net, Training, TrainingInterrupted, create_evaluator, recipe, train
from fmnist_ignite.data.loaders import TensorLoader, augment_batch, to_float_images

SPEED_PAGE = Path(__file__).resolve().parent.parent / "docs" / "speed.md"  # the recipe table


def saved_weights(path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.fixture
def augmented_config(small_config):
    return small_config.replace(
        epochs=3, lr=0.01, optimizer="adamw", scheduler="onecycle", hflip=True, shift=2, tta=True, ema=0.05
    )


def test_augmented_averaged_tta_run_resumed_mid_epoch_is_bitwise_the_uninterrupted_one(augmented_config, tmp_path):
    full = train(augmented_config.replace(output_dir=str(tmp_path / "full")))
    cut = augmented_config.replace(output_dir=str(tmp_path / "cut"))
    with pytest.raises(TrainingInterrupted) as info:
        train(cut, extra_handlers=[signal_at(13)])  # epoch 2, batch 3 of 10
    resumed = train(cut.replace(resume=str(info.value.checkpoint)))
    a, b = saved_weights(full.last_checkpoint), saved_weights(resumed.last_checkpoint)
    for part in ("model", "ema_model"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert without_times(resumed.history) == without_times(full.history)
    assert resumed.test_metrics == full.test_metrics


def test_augmentation_is_seeded_per_batch_and_changes_training_batches_only(augmented_config):
    training = Training(augmented_config)
    try:
        loaders = training.loaders
        train_loader = loaders["train"]
        assert (train_loader.hflip, train_loader.shift) == (True, 2)
        for name in ("validation", "test"):
            assert (loaders[name].hflip, loaders[name].shift) == (False, 0)
        # Batch 3 of epoch 2 is the same whether the epoch is iterated from its start or resumed there.
        train_loader.set_epoch(2)
        from_start = [x for x, _ in train_loader]
        train_loader.set_epoch(2, start_batch=3)
        assert torch.equal(next(iter(train_loader))[0], from_start[3])
        images, _ = train_loader.dataset.tensors
        order = train_loader.epoch_order(2)
        plain = to_float_images(images[order[: train_loader.batch_size]])
        assert not torch.equal(from_start[0], plain)  # augmented
        assert torch.equal(
            from_start[0],
            to_float_images(
                augment_batch(images[order[: train_loader.batch_size]], train_loader.batch_generator(2, 0), True, 2)
            ),
        )
    finally:
        training.close()


def test_training_never_touches_the_validation_or_test_images(augmented_config):
    training = Training(augmented_config)
    held = {name: training.loaders[name].dataset.tensors[0].clone() for name in ("validation", "test")}
    seen = []
    training.evaluator.add_event_handler(Events.ITERATION_STARTED, lambda e: seen.append(e.state.batch[0].clone()))
    training.run()
    for name, images in held.items():
        assert torch.equal(training.loaders[name].dataset.tensors[0], images), name
    # Each epoch's validation saw the validation images exactly as stored (test-time flips are made in the
    # model function, from a copy), never flipped or shifted.
    val = to_float_images(held["validation"])
    per_epoch = torch.cat(seen[: len(seen) // augmented_config.epochs])
    assert torch.equal(per_epoch, val)


def test_test_time_flips_average_the_logits_of_the_image_and_its_mirror():
    torch.manual_seed(0)
    model = Net().eval()
    x, y = torch.rand(20, 1, 28, 28), torch.randint(0, 10, (20,))
    metrics = create_evaluator(model, tta=True).run([(x, y)]).metrics
    with torch.no_grad():
        logits = (model(x) + model(x.flip(-1))) / 2
    assert metrics["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert metrics["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_augment_batch_flips_and_shifts_with_zero_fill():
    images = torch.arange(2 * 28 * 28).reshape(2, 28, 28).to(torch.uint8)
    flipped = augment_batch(images, torch.Generator().manual_seed(1), hflip=True, shift=0)
    for got, image in zip(flipped, images, strict=False):
        assert torch.equal(got, image) or torch.equal(got, image.flip(-1))
    shifted = augment_batch(images, torch.Generator().manual_seed(3), hflip=False, shift=3)
    assert shifted.shape == images.shape and not torch.equal(shifted, images)
    assert torch.equal(images, torch.arange(2 * 28 * 28).reshape(2, 28, 28).to(torch.uint8))  # input unchanged
    loader = TensorLoader(images, torch.zeros(2), 2, shuffle=False, hflip=False)
    assert torch.equal(next(iter(loader))[0], images)


def readme_recipe_rows() -> dict[str, list[str]]:
    text = SPEED_PAGE.read_text()
    table = text[text.index("| recipe | what | epochs |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = re.match(r"`(\w+)`", cells[0])
        if name and "precision" not in cells[0]:
            rows.setdefault(name.group(1), cells)
    return rows


def test_the_readme_recipe_table_says_what_each_recipe_sets():
    rows = readme_recipe_rows()
    assert set(rows) == set(RECIPES)
    for name, cells in rows.items():
        config, what, epochs = recipe(name), cells[1], cells[2]
        assert int(epochs) == config.epochs, name
        assert f"batch {config.batch_size}" in what, name
        assert {"sgd": "SGD", "adam": "Adam,", "adamw": "AdamW", "muon": "Muon"}[config.optimizer] in what, name
        assert ("cnn" in what.lower()) == (config.model == "cnn"), name
        assert float(re.search(r"\blr ([\d.e-]+)", what).group(1)) == pytest.approx(config.lr, rel=1e-3), name
        assert ("`--hflip`" in what, "`--tta`" in what) == (config.hflip, config.tta), name
    speed = recipe("speed")
    assert (speed.model, speed.batch_size, speed.epochs, speed.lr) == ("mlp", 4096, 9, 2.5e-2)
    assert (speed.optimizer, speed.ns_steps) == ("muon", 3)
    assert (speed.weight_decay, speed.dropout, speed.label_smoothing) == (0.005, 0.115, 0.15)

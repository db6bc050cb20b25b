"""Robustness: the corruption suite is deterministic, each corruption does what it says, and the scores of a
saved model under it are what its predictions give."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import synthetic_set

from fmnist_ignite import evaluate_corruptions, train, wilson_interval
from fmnist_ignite.analysis.corruptions import CORRUPTIONS, SEVERITIES, corrupt, corruption_scores
from fmnist_ignite.cli.main import main


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return synthetic_set(64, seed=3, marker=0)[0]


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_is_deterministic_changes_the_images_and_more_at_each_severity(name, images):
    first, again = corrupt(images, name, 2, seed=0), corrupt(images, name, 2, seed=0)
    assert first.dtype == torch.uint8 and first.shape == images.shape and torch.equal(first, again)
    distances = [float((corrupt(images, name, s).float() - images.float()).abs().mean()) for s in SEVERITIES]
    assert 0 < distances[0] < distances[1] < distances[2], distances  # stronger with each severity


def test_the_random_corruptions_draw_from_their_seed(images):
    for name in ("gaussian_noise", "shot_noise", "shift", "rotation"):
        assert not torch.equal(corrupt(images, name, 2, seed=0), corrupt(images, name, 2, seed=1)), name


def test_what_each_corruption_does_by_hand():
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    image[0, 10:18, 12:16] = 200
    inverted = corrupt(image, "inversion", 3)
    assert torch.equal(inverted, 255 - image)  # severity 3: the negative
    brighter = corrupt(image, "brightness", 1)
    assert int(brighter[0, 0, 0]) == 51 and int(brighter[0, 12, 13]) == 251  # + 0.2 of 255, clipped at 255
    smeared = corrupt(image, "motion_blur", 1)  # 3 pixels sideways: the block widens by one each side
    assert smeared[0, 12, 11] > 0 and smeared[0, 12, 16] > 0 and smeared[0, 9, 13] == 0
    zoomed = corrupt(image, "scale", 3)
    assert int((zoomed > 100).sum()) < int((image > 100).sum())  # zoomed out: a smaller garment
    shifted = corrupt(image, "shift", 3)
    assert int(shifted.float().sum()) == pytest.approx(int(image.float().sum()), rel=0.05)  # moved, not lost
    moved = (shifted.float() * torch.arange(28.0)).sum() / shifted.float().sum()  # its centre of mass moved
    assert not torch.isclose(moved, (image.float() * torch.arange(28.0)).sum() / image.float().sum(), atol=1.0)
    grey = torch.full((1, 28, 28), 128, dtype=torch.uint8)
    noisy = corrupt(grey, "gaussian_noise", 2).float()
    assert float(noisy.std()) == pytest.approx(0.16 * 255, rel=0.15)
    assert float(noisy.mean()) == pytest.approx(128, abs=5)
    shot = corrupt(grey, "shot_noise", 3).float()  # 10 photons at full scale: sd sqrt(5)/10 of 255 at half
    assert float(shot.std()) == pytest.approx(255 * math.sqrt(128 / 255 * 10) / 10, rel=0.2)
    blurred = corrupt(image, "gaussian_blur", 3).float()
    assert float(blurred.sum()) == pytest.approx(float(image.float().sum()), rel=0.05)  # spread, not lost
    assert float(blurred.max()) < 200
    turned = corrupt(image, "rotation", 3)
    assert not torch.equal(turned, image) and int((turned > 100).sum()) == pytest.approx(32, abs=12)  # same area
    flat = corrupt(image, "contrast", 3).float()
    assert flat.std() < image.float().std() / 2  # contrast factor 0.2: towards the mean grey


def test_the_scores_are_the_predictions_counted_with_wilson_intervals(images):
    labels = torch.arange(len(images)) % 10
    calls = []

    def predict(batch: torch.Tensor) -> torch.Tensor:  # right on bright images only
        calls.append(batch)
        return torch.where(batch.float().mean(dim=(1, 2)) > 60, labels, (labels + 1) % 10)

    results = corruption_scores(predict, images, labels, seed=0)
    assert len(results.scores) == len(CORRUPTIONS) * len(SEVERITIES) and len(calls) == 1 + len(results.scores)
    for batch, found in zip(calls[1:], results.scores, strict=True):
        correct = int((predict(batch) == labels).sum())
        assert (found.correct, found.total) == (correct, len(labels))
        assert found.ci95 == wilson_interval(correct, len(labels))
    assert results.mean_accuracy == pytest.approx(sum(s.accuracy for s in results.scores) / 30)
    assert results.text().splitlines()[1].split()[:4] == ["corruption", "severity", "1", "severity"]


def test_evaluate_corruptions_of_a_run_writes_the_same_numbers_twice(small_config, tmp_path, capsys, monkeypatch):
    result = train(small_config.replace(epochs=2))
    data = dict(data_dir=small_config.data_dir, verify=False)
    first = evaluate_corruptions(result.best_checkpoint, **data)
    second = evaluate_corruptions(result.best_checkpoint, **data)
    assert first.to_dict() == second.to_dict()  # deterministic for a checkpoint and a seed
    assert first.clean.accuracy == pytest.approx(result.test_metrics["accuracy"])  # scored as its run scored it
    # the command verifies the data set: not the synthetic one here
    monkeypatch.setattr("fmnist_ignite.analysis.inference.load_fashion_mnist", _unverified_loader())
    # the run directory, as export takes it: its best model is scored, the files land beside it
    assert main(["evaluate", str(result.output_dir), "--data-dir", small_config.data_dir, "--corruptions"]) == 0
    out = capsys.readouterr().out
    kept = json.loads((result.output_dir / "corruptions.json").read_text())
    assert kept == json.loads(json.dumps(first.to_dict()))
    assert f"mean corruption accuracy {first.mean_accuracy:.2%}" in out and "gaussian_noise" in out
    assert (result.output_dir / "corruptions.png").stat().st_size > 5_000


def test_ctrl_c_during_evaluate_corruptions_says_the_evaluation_stopped(small_config, capsys, monkeypatch):
    result = train(small_config.replace(epochs=1))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("fmnist_ignite.analysis.inference.evaluate_corruptions", interrupted)
    monkeypatch.setattr("fmnist_ignite.analysis.inference.load_fashion_mnist", _unverified_loader())
    command = ["evaluate", str(result.best_checkpoint), "--data-dir", small_config.data_dir, "--corruptions"]
    assert main(command) == 130
    err = capsys.readouterr().err
    assert err == "interrupted: the evaluation stopped before it finished; no file was written\n"
    assert not (result.output_dir / "corruptions.json").exists()


def _unverified_loader():
    """``load_fashion_mnist`` without the check against the upstream files (the data here is synthetic)."""
    from fmnist_ignite.data import fashion_mnist

    real = fashion_mnist.load_fashion_mnist
    return lambda d, verify=True, **kw: real(d, verify=False, **kw)

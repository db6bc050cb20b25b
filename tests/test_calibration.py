"""Calibration: the ECE against torchmetrics', the Brier score by hand, temperature scaling fitted on the
validation split and kept with the best model, used by evaluate and predict; per-class Wilson intervals."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fmnist_ignite import (
    FmnistError,
    brier_score,
    evaluate_checkpoint,
    expected_calibration_error,
    fit_temperature,
    read_temperature,
    train,
    wilson_interval,
)
from fmnist_ignite.analysis.calibration import reliability_bins, scaled
from fmnist_ignite.analysis.per_class import per_class_counts, per_class_intervals, per_class_table
from fmnist_ignite.cli.main import main
from fmnist_ignite.files.calibration import CALIBRATION_FILE


def logits_and_labels(seed: int, n: int = 2000, sharpness: float = 3.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels drawn from ``softmax(z)``, and a model that is ``sharpness`` times too sure: ``3 z``."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 10, generator=g) * 1.5
    labels = torch.multinomial(z.softmax(dim=1), 1, generator=g).squeeze(1)
    return z * sharpness, labels


@pytest.mark.parametrize("seed, sharpness", [(0, 3.0), (1, 1.0), (2, 0.5), (3, 40.0)])  # 40: saturates to p = 1
def test_the_ece_equals_torchmetrics_multiclass_calibration_error_to_1e_6(seed, sharpness):
    classification = pytest.importorskip("torchmetrics.classification", reason="torchmetrics: the dev extra")
    logits, labels = logits_and_labels(seed, sharpness=sharpness)
    probabilities = logits.softmax(dim=1)
    theirs = classification.MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")(probabilities, labels)
    ours = expected_calibration_error(probabilities.numpy(), labels.numpy())
    assert ours == pytest.approx(float(theirs), abs=1e-6)
    if sharpness == 40.0:
        assert reliability_bins(probabilities.numpy(), labels.numpy())[-1].count > 0  # confidence exactly 1


def test_the_brier_score_and_the_bins_by_hand():
    probabilities = np.array([[0.7, 0.3] + [0.0] * 8, [0.2, 0.8] + [0.0] * 8, [1.0] + [0.0] * 9])
    labels = np.array([0, 0, 0])
    # (0.3^2 + 0.3^2), (0.8^2 + 0.8^2), 0: mean 0.4467
    assert brier_score(probabilities, labels) == pytest.approx((0.18 + 1.28 + 0.0) / 3)
    bins = [b for b in reliability_bins(probabilities, labels) if b.count]
    assert [(b.count, b.accuracy) for b in bins] == [(1, 1.0), (1, 0.0), (1, 1.0)]  # 0.7, 0.8 and exactly 1
    # |1 - 0.7| + |0 - 0.8| + |1 - 1|, each a third of the images
    assert expected_calibration_error(probabilities, labels) == pytest.approx((0.3 + 0.8) / 3)


def test_temperature_scaling_finds_how_much_too_sure_a_model_is_and_lowers_its_ece():
    logits, labels = logits_and_labels(0, n=20_000, sharpness=3.0)
    probabilities, y = logits.softmax(dim=1).numpy(), labels.numpy()
    temperature = fit_temperature(probabilities, y)
    assert temperature == pytest.approx(3.0, rel=0.05)
    calibrated = scaled(probabilities, temperature)
    assert expected_calibration_error(calibrated, y) < expected_calibration_error(probabilities, y) / 4
    assert np.allclose(calibrated, (logits / temperature).softmax(dim=1).numpy(), atol=1e-5)  # the logits' softmax
    assert (calibrated.argmax(axis=1) == probabilities.argmax(axis=1)).all()  # accuracy untouched


@pytest.mark.parametrize("sharpness", [0.04, 0.5, 3.0, 15.0, 80.0])  # 80: beyond the range, clamped to 20
def test_the_fitted_temperature_is_scipy_s_bounded_minimum_of_the_likelihood(sharpness):
    optimize = pytest.importorskip("scipy.optimize")
    logits, labels = logits_and_labels(5, n=5000, sharpness=sharpness)
    probabilities, y = logits.softmax(dim=1).numpy(), labels.numpy()
    z, rows = np.log(np.clip(probabilities.astype(np.float64), 1e-45, None)), np.arange(len(y))

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        return float((np.log(np.exp(s).sum(axis=1)) - s[rows, y]).mean())

    bounded = optimize.minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    expected = math.exp(bounded.x)
    assert fit_temperature(probabilities, y) == pytest.approx(expected, rel=1e-4)
    assert (fit_temperature(probabilities, y) == 20.0) is (sharpness == 80.0)


def test_per_class_intervals_are_the_wilson_intervals_of_each_class_s_counts():
    confusion = torch.zeros(10, 10, dtype=torch.long)
    confusion[0, 0], confusion[0, 6], confusion[6, 6], confusion[6, 0] = 900, 100, 700, 300
    counts = per_class_counts(confusion)
    assert counts["T-shirt/top"] == (900, 1000) and counts["Shirt"] == (700, 1000) and counts["Bag"] == (0, 0)
    intervals = per_class_intervals(confusion)
    assert intervals["Shirt"] == list(wilson_interval(700, 1000)) and intervals["Bag"] is None
    low, high = intervals["T-shirt/top"]
    assert 0.87 < low < 0.9 < high < 0.92 and (high - low) / 2 == pytest.approx(0.019, abs=5e-4)  # about +-1.9
    table = per_class_table({"Shirt": 0.7, "T-shirt/top": 0.9}, counts)
    shirt_low, shirt_high = wilson_interval(700, 1000)
    expected = f"  Shirt         70.0%  ({100 * shirt_low:.1f}-{100 * shirt_high:.1f}%, 1,000 images)"
    assert table.splitlines()[1] == expected  # the worst class first


def test_a_run_fits_its_temperature_on_validation_keeps_it_with_the_best_model_and_reports_both(small_config, capsys):
    result = train(small_config.replace(epochs=2, plots=True))
    out = capsys.readouterr().out
    kept = json.loads((result.output_dir / CALIBRATION_FILE).read_text())
    assert kept["fitted_on"] == "validation" and kept["checkpoint"] == result.best_checkpoint.name
    temperature = read_temperature(result.best_checkpoint)
    assert temperature == kept["temperature"] and read_temperature(result.last_checkpoint) is None  # other weights
    summary = json.loads((result.output_dir / "summary.json").read_text())
    assert summary["calibration"]["temperature"] == temperature
    test = summary["test"]["calibration"]
    assert {"ece", "brier", "ece_calibrated", "brier_calibrated"} <= set(test)
    kept_predictions = np.load(result.output_dir / "test_predictions.npz")
    probabilities, labels = kept_predictions["probabilities"], kept_predictions["labels"]
    assert test["ece"] == pytest.approx(expected_calibration_error(probabilities, labels), abs=1e-9)
    assert test["ece_calibrated"] == pytest.approx(
        expected_calibration_error(scaled(probabilities, temperature), labels), abs=1e-9
    )
    assert f"Calibration (test): ECE {test['ece']:.2%}" in out and f"temperature {temperature:.3g}" in out
    assert "95% Wilson interval" in out and (result.output_dir / "reliability.png").stat().st_size > 10_000
    assert summary["test"]["per_class_ci95"]["Trouser"][0] <= summary["test"]["per_class_accuracy"]["Trouser"]
    assert result.plot_reliability() is not None


def test_evaluate_and_predict_use_the_run_s_temperature_unless_told_not_to(small_config, tmp_path, capsys, monkeypatch):
    result = train(small_config.replace(epochs=2))
    best = result.best_checkpoint
    temperature = read_temperature(best)
    metrics = evaluate_checkpoint(best, small_config.data_dir, verify=False)
    raw = evaluate_checkpoint(best, small_config.data_dir, verify=False, calibrate=False)
    assert metrics["temperature"] == temperature and raw["temperature"] is None
    assert "ece_calibrated" in metrics["calibration"] and "ece_calibrated" not in raw["calibration"]
    assert metrics["calibration"]["ece"] == raw["calibration"]["ece"]
    capsys.readouterr()
    images = tmp_path / "images.idx"
    from conftest import write_idx

    pixels = torch.arange(2 * 28 * 28, dtype=torch.int64).reshape(2, 28, 28).remainder(256).to(torch.uint8)
    write_idx(images, pixels)
    assert main(["predict", str(best), str(images), "--json"]) == 0
    calibrated = [json.loads(line)["probability"] for line in capsys.readouterr().out.splitlines()]
    assert main(["predict", str(best), str(images), "--json", "--no-calibrate"]) == 0
    own = [json.loads(line)["probability"] for line in capsys.readouterr().out.splitlines()]
    from fmnist_ignite import load_model
    from fmnist_ignite.data.loaders import to_float_images

    with torch.no_grad():
        logits = load_model(best)(to_float_images(pixels)).float()
    assert own == pytest.approx(logits.softmax(dim=1).max(dim=1).values.tolist(), abs=1e-6)
    assert calibrated == pytest.approx((logits / temperature).softmax(dim=1).max(dim=1).values.tolist(), abs=1e-6)
    from fmnist_ignite.data import fashion_mnist

    real = fashion_mnist.load_fashion_mnist  # the command verifies the data set: not the synthetic one here
    loading = lambda d, verify=True, **kw: real(d, verify=False, **kw)  # noqa: E731
    monkeypatch.setattr("fmnist_ignite.analysis.inference.load_fashion_mnist", loading)
    assert main(["evaluate", str(best), "--data-dir", small_config.data_dir]) == 0
    said = capsys.readouterr().out
    assert f"at temperature {temperature:.3g} (fitted on validation)" in said and "95% Wilson interval" in said
    assert main(["evaluate", str(best), "--data-dir", small_config.data_dir, "--no-calibrate"]) == 0
    assert "Calibration (test): ECE " in (said := capsys.readouterr().out) and "temperature" not in said


def test_a_damaged_or_planted_calibration_file_is_one_line_never_a_silent_temperature(small_config, tmp_path):
    result = train(small_config.replace(epochs=1))
    path = result.output_dir / CALIBRATION_FILE
    kept = json.loads(path.read_text())
    for bad, said in (
        ({**kept, "temperature": 0.0}, "temperature must be a number in"),
        ({**kept, "temperature": "2"}, "temperature"),
        ([1, 2], "the file"),
    ):
        path.write_text(json.dumps(bad))
        with pytest.raises(FmnistError, match=said):
            read_temperature(result.best_checkpoint)
    path.write_text("{" * 100_000)
    with pytest.raises(FmnistError, match="calibration"):
        read_temperature(result.best_checkpoint)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(kept))
    path.unlink()
    path.symlink_to(elsewhere)
    with pytest.raises(FmnistError, match="link"):
        read_temperature(result.best_checkpoint)
    path.unlink()
    assert read_temperature(result.best_checkpoint) is None  # none kept: the model's own probabilities
    assert not math.isnan(evaluate_checkpoint(result.best_checkpoint, small_config.data_dir, verify=False)["loss"])


def test_the_temperature_is_fitted_on_the_validation_split_and_never_reads_the_test_split(small_config, monkeypatch):
    from fmnist_ignite.run import training as finish

    seen = []
    real_fit = finish.fit_temperature
    monkeypatch.setattr(finish, "fit_temperature", lambda p, y: seen.append((p, y)) or real_fit(p, y))
    result = train(small_config.replace(epochs=1))
    ((probabilities, labels),) = seen
    from fmnist_ignite import Config, get_data_loaders
    from fmnist_ignite.analysis.predictions import split_tensors

    loaders = get_data_loaders(Config(**{**small_config.__dict__, "epochs": 1}))
    validation_images, validation_labels = split_tensors(loaders["validation"])
    test_images, _ = split_tensors(loaders["test"])
    assert len(labels) == small_config.val_size == len(validation_labels) != len(test_images)
    assert (labels == validation_labels.numpy()).all()  # the validation split's labels, in its order
    assert int(validation_images[:, 0, 0].max()) == 0  # drawn from the training images (marked 0), not the test's
    assert read_temperature(result.best_checkpoint) == pytest.approx(real_fit(probabilities, labels))

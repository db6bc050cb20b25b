"""Use a saved model: score it on the test set, or classify images."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fmnist_ignite.analysis.calibration import calibration_report
from fmnist_ignite.analysis.corruptions import CorruptionResults, corruption_scores
from fmnist_ignite.analysis.predictions import PredictionCollector
from fmnist_ignite.config.settings import EVAL_BATCH_SIZE, check_data_dir
from fmnist_ignite.core.device import choose_precision, resolve_device
from fmnist_ignite.core.engines import create_evaluator
from fmnist_ignite.core.models import match_saved_layout, model_for_state_dict
from fmnist_ignite.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from fmnist_ignite.data.idx import NotIdxFile, read_idx
from fmnist_ignite.data.loaders import make_loader, to_float_images
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.calibration import read_temperature
from fmnist_ignite.files.checkpoints import load_checkpoint
from fmnist_ignite.files.layout import model_file
from fmnist_ignite.files.saved_config import saved_config
from fmnist_ignite.files.summary import recorded_precision

EIGHT_BIT_MODES = ("L", "LA", "1")  # "1": black and white, as 0 and 255
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")  # a 32-bit "I" or float "F" image has no known range: refused


def load_model(
    path: str | Path, device: torch.device | str = "cpu", model: torch.nn.Module | None = None
) -> torch.nn.Module:
    """The model in a best-model file (weights only), a training checkpoint (its ``model`` entry) or a run
    directory (its best model, as ``model_file`` finds it).

    Built-in models (mlp, cnn) are rebuilt from the weights' layout; weights of your own model are
    loaded into ``model``.

    Args:
        path: the best-model file, training checkpoint or run directory.
        device: where the model's weights go.
        model: your own model, to load the weights into; None: a built-in model rebuilt from the weights.

    Returns:
        The model with the weights loaded, on ``device``, in eval mode.

    Raises:
        FmnistError: naming the file: unreadable, weights of a model of your own with no ``model`` given, or
            weights that do not fit the model.
    """
    path = model_file(path)
    checkpoint = load_checkpoint(path, map_location=device)
    state = checkpoint["model"] if isinstance(checkpoint.get("model"), dict) else checkpoint
    if model is None and run_model(path, checkpoint) == "custom":
        raise FmnistError(
            f"{path}: the weights of a model of your own (its run says model: custom), which cannot be rebuilt "
            "from the file; score them in Python: evaluate_checkpoint(path, model=YourModel())"
        )
    try:
        model = model if model is not None else model_for_state_dict(state)
        match_saved_layout(model, state)
        model.load_state_dict(state)
    except FmnistError as exc:
        raise FmnistError(f"{path}: {exc}") from None
    except RuntimeError as exc:
        raise FmnistError(f"{path}: not weights of this model ({str(exc).splitlines()[0]})") from None
    return model.to(device).eval()


def run_model(path: str | Path, checkpoint: dict) -> str | None:
    """The ``model`` setting of the run that saved ``checkpoint``: from the checkpoint's own configuration,
    else from its run's ``config.json`` beside it (None when neither says)."""
    saved = checkpoint.get("config")
    if not isinstance(saved, dict):
        saved = saved_config(Path(path).parent) or {}
    return saved.get("model")


def evaluate_checkpoint(
    path: str | Path,
    data_dir: str = "data",
    device: str = "auto",
    batch_size: int = EVAL_BATCH_SIZE,
    verify: bool = True,
    model: torch.nn.Module | None = None,
    precision: str | None = None,
    calibrate: bool = True,
) -> dict:
    """Test-set ``accuracy``, ``loss``, ``confusion`` (10 x 10 counts) and calibration of a saved model.

    The model is scored as its run scored it: at its precision and with its test-time flips. Its run's
    temperature (``calibration.json``, fitted on validation for the weights of this file) gives the
    calibrated ECE and Brier score beside the model's own.

    Args:
        path: the best-model file, training checkpoint or run directory (as ``load_model`` takes it).
        data_dir: the data root the test set is found under (as ``load_fashion_mnist`` takes it).
        device: "auto" (the default), "cpu" or "cuda", as ``resolve_device`` takes it.
        batch_size: the images scored in a batch.
        verify: check the test files against the upstream ones.
        model: your own model, to load the weights into; None: a built-in model rebuilt from the weights.
        precision: "fp32", "bf16" or "auto"; None: the one its run trained in (its ``summary.json``), else its
            setting ("auto" when the run's ``config.json`` is not beside the file).
        calibrate: use the run's temperature (when it kept one for this file); False: the model's own
            probabilities only.

    Returns:
        The evaluator's metrics by name: ``accuracy``, ``loss``, ``count`` and ``confusion``; ``calibration``
        (``ece``, ``brier``, and with a temperature ``ece_calibrated``, ``brier_calibrated``) and
        ``temperature`` (None without one).
    """
    check_data_dir(data_dir)
    path = model_file(path)
    on = resolve_device(device)
    model = load_model(path, on, model)
    run = saved_config(Path(path).parent) or {}
    used, _ = choose_precision(precision or recorded_precision(path.parent) or run.get("precision", "auto"), on)
    test = load_fashion_mnist(data_dir, verify=verify)["test"]
    loader = make_loader(test, "tensor", batch_size, shuffle=False, device=on)
    evaluator = create_evaluator(model, on, used, confusion_matrix=True, tta=bool(run.get("tta")))
    collector = PredictionCollector().attach(evaluator)
    metrics = dict(evaluator.run(loader).metrics)
    temperature = read_temperature(Path(path)) if calibrate else None
    probabilities, labels = collector.of_split(loader)
    metrics["calibration"] = calibration_report(probabilities, labels, temperature)
    metrics["temperature"] = temperature
    return metrics


def evaluate_corruptions(
    path: str | Path,
    data_dir: str = "data",
    device: str = "auto",
    seed: int = 0,
    batch_size: int = EVAL_BATCH_SIZE,
    verify: bool = True,
    model: torch.nn.Module | None = None,
) -> CorruptionResults:
    """The test accuracy of a saved model under each corruption of ``analysis.corruptions`` at each severity,
    scored as its run scored it (its precision, its test-time flips).

    Args:
        path: the best-model file, training checkpoint or run directory (as ``load_model`` takes it).
        data_dir: the data root the test set is found under.
        device: "auto" (the default), "cpu" or "cuda", as ``resolve_device`` takes it.
        seed: the seed of the corruptions' draws: the same checkpoint and seed give the same numbers.
        batch_size: the images scored in a batch.
        verify: check the test files against the upstream ones.
        model: your own model, to load the weights into; None: a built-in model rebuilt from the weights.

    Returns:
        The clean accuracy, one score per corruption and severity (each with its 95% Wilson interval) and
        their mean; ``write(path)`` keeps them as ``corruptions.json``, ``plot_examples(path)`` draws them.
    """
    check_data_dir(data_dir)
    path = model_file(path)
    on = resolve_device(device)
    model = load_model(path, on, model)
    run = saved_config(Path(path).parent) or {}
    used, _ = choose_precision(recorded_precision(path.parent) or run.get("precision", "auto"), on)
    images, labels = load_fashion_mnist(data_dir, verify=verify)["test"]
    evaluator = create_evaluator(model, on, used, tta=bool(run.get("tta")))
    collector = PredictionCollector().attach(evaluator)

    def predicted(corrupted: torch.Tensor) -> torch.Tensor:
        evaluator.run(make_loader((corrupted, labels), "tensor", batch_size, shuffle=False, device=on))
        return torch.from_numpy(collector.gathered(len(labels))[0]).long()

    return corruption_scores(predicted, images, labels.long(), seed)


def load_images(path: str | Path) -> tuple[list[str], torch.Tensor]:
    """Names and uint8 N x 28 x 28 pixels of a 28 x 28 grayscale image file, or of every image in an IDX file.

    An image's size is checked from its header before a pixel is decoded; 16-bit pixels are scaled to
    0-255 (never clipped).

    Args:
        path: an image file (PNG, JPEG, ...) of 28 x 28 grayscale pixels, or an IDX file of 28 x 28 images.

    Returns:
        ``(names, images)``: the path for an image file, ``path[i]`` for each image of an IDX file; and their
        pixels.

    Raises:
        FmnistError: an unreadable, damaged or oversized file, in one line naming it.
    """
    path = Path(path)
    if path.is_dir():
        raise FmnistError(f"{path}: a directory; give the image files in it (for example {path}/*.png)")
    if not path.is_file():
        raise FmnistError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():  # PIL only warns between its limit and twice it: refuse there too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return [str(path)], _grayscale_pixels(path, image)
    except UnidentifiedImageError:
        pass
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FmnistError(f"{path}: image too large to open ({exc}); expected 28x28") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's errors for damaged files
        raise FmnistError(f"{path}: cannot read the image ({exc})") from None
    try:
        images = read_idx(path)
    except NotIdxFile:
        raise FmnistError(f"{path}: neither an image (PNG, JPEG, ...) nor an IDX file") from None
    if images.ndim == 2:
        images = images.unsqueeze(0)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise FmnistError(f"{path}: IDX file of shape {tuple(images.shape)}, expected N x 28 x 28 images")
    return [f"{path}[{i}]" for i in range(len(images))], images


def _grayscale_pixels(path: Path, image: Image.Image) -> torch.Tensor:
    """The 1 x 28 x 28 uint8 pixels of an opened image, decoded only once its size and mode pass."""
    if image.size != (28, 28):
        raise FmnistError(f"{path}: image is {image.size[0]}x{image.size[1]}, expected 28x28")
    if image.mode in SIXTEEN_BIT_MODES:  # 0-65535 onto 0-255, as an 8-bit export of the same image would be
        pixels = np.rint(np.asarray(image, dtype=np.float64) / 257.0).astype(np.uint8)
    elif image.mode in EIGHT_BIT_MODES:
        pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    else:
        raise FmnistError(
            f"{path}: image mode {image.mode} is not 8- or 16-bit grayscale (one channel); "
            "save it as an 8-bit grayscale PNG"
        )
    return torch.from_numpy(pixels.copy()).reshape(1, 28, 28)


def predict(
    model: torch.nn.Module, images: torch.Tensor, temperature: float | None = None, batch_size: int = EVAL_BATCH_SIZE
) -> list[tuple[str, float]]:
    """Class name and probability of the most likely class for each uint8 28 x 28 image.

    Args:
        model: the model to classify with (it is put in eval mode).
        images: uint8 N x 28 x 28 pixels, as ``load_images`` gives them.
        temperature: the logits are divided by it before the softmax (its run's, from ``calibration.json``:
            ``read_temperature(checkpoint)``); None: the model's own probabilities.
        batch_size: the images classified at a time: the memory used does not grow with N.

    Returns:
        One ``(class name, probability)`` an image, in order.
    """
    device = next(model.parameters()).device
    model.eval()
    found: list[tuple[str, float]] = []
    with torch.no_grad():
        for batch in images.split(batch_size):
            found += predicted_classes(model(to_float_images(batch).to(device)).float(), temperature)
    return found


def predicted_classes(logits: torch.Tensor, temperature: float | None = None) -> list[tuple[str, float]]:
    """Class name and probability of the most likely class for each row of N x 10 ``logits`` (divided by
    ``temperature`` first, if given)."""
    best = (logits.float() / (temperature or 1.0)).softmax(dim=1).max(dim=1)
    return [(CLASS_NAMES[i], float(p)) for p, i in zip(best.values, best.indices, strict=False)]

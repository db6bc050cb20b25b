"""Hostile and broken inputs to predict and evaluate: bounded before they are read, one line each, never a
silently wrong answer."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import IMAGE_MAGIC, synthetic_set
from PIL import Image

from fmnist_ignite import FmnistError, Net, load_images, load_model, train
from fmnist_ignite.data import MAX_IDX_BYTES, read_idx


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fmnist_ignite", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_gzip_idx_file_that_inflates_past_its_header_is_refused_while_streaming(tmp_path):
    # The header promises 10 images; the stream inflates to 50 MB of zeros (a 50 kB file).
    header = IMAGE_MAGIC.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28))
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as out:
        out.write(header)
        for _ in range(50):
            out.write(bytes(1_000_000))
    script = (
        "import resource, sys; from fmnist_ignite.data import read_idx; from fmnist_ignite import FmnistError\n"
        f"try: read_idx({str(bomb)!r})\n"
        "except FmnistError as exc: print(exc)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    baseline = subprocess.run(
        [sys.executable, "-c", script.replace(f"read_idx({str(bomb)!r})", "pass")], capture_output=True, text=True
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    message, peak_kb = proc.stdout.strip().splitlines()
    assert message == f"{bomb}: header says shape (10, 28, 28) but the file holds more data than that"
    assert int(peak_kb) - int(baseline.stdout.split()[-1]) < 20_000  # kB: it stopped after 7,841 bytes, not 50 MB


def test_an_idx_header_promising_more_than_any_data_set_is_refused_unread(tmp_path):
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(IMAGE_MAGIC.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (4_000_000, 28, 28)))
    with pytest.raises(FmnistError, match=f"not 28 x 28 images or labels of at most {MAX_IDX_BYTES:,} bytes"):
        read_idx(path)


def test_an_image_past_the_pixel_limit_is_refused_before_it_is_decoded(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40_000)  # 300 x 300 is more than twice this: PIL's bomb error
    with pytest.raises(FmnistError, match="big.png: image too large to open"):
        load_images(big)
    monkeypatch.undo()
    with pytest.raises(FmnistError, match="big.png: image is 300x300, expected 28x28"):
        load_images(big)


def test_a_png_cut_in_half_is_one_line(tmp_path):
    whole = tmp_path / "whole.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[: len(whole.read_bytes()) // 2])
    with pytest.raises(FmnistError, match=r"cut.png: cannot read the image \(image file is truncated"):
        load_images(cut)


def test_16_bit_images_are_scaled_not_clipped_and_give_the_8_bit_predictions(tmp_path):
    images, _ = synthetic_set(20, seed=3, marker=0)
    model = Net().eval()
    for i, image in enumerate(images):
        eight, sixteen = tmp_path / f"{i}-8.png", tmp_path / f"{i}-16.png"
        Image.fromarray(image.numpy()).save(eight)
        Image.fromarray(image.numpy().astype(np.uint16) * 257).save(sixteen)  # the same image, 16-bit
        assert Image.open(sixteen).mode == "I;16"
        assert torch.equal(load_images(sixteen)[1], load_images(eight)[1])
    with torch.no_grad():
        assert model(load_images(sixteen)[1].float().unsqueeze(1)).shape == (1, 10)


def test_float_and_32_bit_images_are_refused_not_guessed(tmp_path):
    path = tmp_path / "float.tiff"
    Image.fromarray(np.random.default_rng(0).random((28, 28), dtype=np.float32)).save(path)
    with pytest.raises(FmnistError, match="image mode F is not 8- or 16-bit grayscale"):
        load_images(path)


class TanhNet(Net):
    """A user's model whose layer names match the tutorial's MLP, with another activation."""

    def __init__(self):
        super().__init__()
        self.linear_relu_stack[1] = torch.nn.Tanh()
        self.linear_relu_stack[3] = torch.nn.Tanh()


def test_evaluate_and_predict_refuse_the_weights_of_a_model_of_your_own_whatever_their_names(small_config, tmp_path):
    result = train(small_config.replace(epochs=1), log=lambda line: None, model=TanhNet())
    assert json.loads((result.output_dir / "config.json").read_text())["model"] == "custom"
    for path in (result.best_checkpoint, result.last_checkpoint):
        with pytest.raises(
            FmnistError, match="model of your own .* evaluate_checkpoint\\(path, model=YourModel\\(\\)\\)"
        ):
            load_model(path)
        assert isinstance(load_model(path, model=TanhNet()), TanhNet)  # the way it says works
    png = tmp_path / "one.png"
    Image.new("L", (28, 28)).save(png)
    line = one_line_error(cli("predict", result.best_checkpoint, png))
    assert line.startswith(f"error: {result.best_checkpoint}: the weights of a model of your own")
    line = one_line_error(cli("evaluate", result.best_checkpoint, "--data-dir", small_config.data_dir))
    assert "score them in Python" in line


@pytest.mark.parametrize("damage", ["bomb", "truncated"])
def test_predict_on_a_damaged_image_is_one_line_from_the_command_line(small_config, tmp_path, damage):
    result = train(small_config.replace(epochs=1), log=lambda line: None)
    path = tmp_path / "x.png"
    if damage == "bomb":  # 20000 x 20000 pixels: PIL's own bomb limit, in a 60 kB file
        Image.new("1", (20000, 20000)).save(path)
    else:
        Image.new("L", (28, 28), 7).save(path)
        path.write_bytes(path.read_bytes()[:40])
    line = one_line_error(cli("predict", result.best_checkpoint, path))
    assert line.startswith(f"error: {path}: ")

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
from helpers import cli
from PIL import Image

from fmnist_ignite import FmnistError, Net, load_images, load_model, train
from fmnist_ignite.data.idx import MAX_IDX_BYTES, read_idx

# This process's peak resident memory in kB (VmHWM: unlike getrusage's ru_maxrss, not inherited from
# the parent that forked it).
PEAK = (
    "def peak_kb():\n    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])\n"
)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


@pytest.mark.slow  # a subprocess
def test_a_gzip_idx_file_that_inflates_past_its_header_is_refused_while_streaming(tmp_path):
    # The header promises 10 images; the stream inflates to 50 MB of zeros (a 50 kB file).
    header = IMAGE_MAGIC.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (10, 28, 28))
    bomb = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(bomb, "wb") as out:
        out.write(header)
        for _ in range(50):
            out.write(bytes(1_000_000))
    script = (
        f"{PEAK}from fmnist_ignite.data.idx import read_idx; from fmnist_ignite import FmnistError\n"
        "before = peak_kb()\n"
        f"try: read_idx({str(bomb)!r})\n"
        "except FmnistError as exc: print(exc)\n"
        "print(peak_kb() - before)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    message, grown_kb = proc.stdout.strip().splitlines()
    assert message == f"{bomb}: header says shape (10, 28, 28) but the file holds more data than that"
    assert int(grown_kb) < 20_000  # kB: it stopped after 7,841 bytes, not 50 MB


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
    for i, image in enumerate(images):
        eight, sixteen = tmp_path / f"{i}-8.png", tmp_path / f"{i}-16.png"
        Image.fromarray(image.numpy()).save(eight)
        Image.fromarray(image.numpy().astype(np.uint16) * 257).save(sixteen)  # the same image, 16-bit
        assert Image.open(sixteen).mode == "I;16"
        assert torch.equal(load_images(sixteen)[1], load_images(eight)[1])


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


@pytest.mark.slow  # a subprocess
def test_evaluate_and_predict_refuse_the_weights_of_a_model_of_your_own_whatever_their_names(small_config, tmp_path):
    result = train(small_config.replace(epochs=1), model=TanhNet())
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


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize("damage", ["bomb", "truncated"])
def test_predict_on_a_damaged_image_is_one_line_from_the_command_line(small_config, tmp_path, damage):
    result = train(small_config.replace(epochs=1))
    path = tmp_path / "x.png"
    if damage == "bomb":  # 20000 x 20000 pixels: PIL's own bomb limit, in a 60 kB file
        Image.new("1", (20000, 20000)).save(path)
    else:
        Image.new("L", (28, 28), 7).save(path)
        path.write_bytes(path.read_bytes()[:40])
    line = one_line_error(cli("predict", result.best_checkpoint, path))
    assert line.startswith(f"error: {path}: ")


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MB tmpfs: room for one epoch's checkpoints of the MLP, not two (root only)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip() or 'not root'}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_one_line_naming_the_file_and_the_newest_intact_checkpoint(tmp_path, small_disk):
    from conftest import small_config_file

    config = small_config_file(tmp_path, epochs=10, plots=False)
    out = small_disk / "run"
    proc = cli("train", "--config", config, "--output-dir", out)
    line = one_line_error(proc)
    assert line == (
        f"error: could not write {out}/training_checkpoint_2.pt: No space left on device; the checkpoints already "
        "there are intact (newest: training_checkpoint_1.pt): free some space, then continue with --resume auto"
    )
    assert json.loads((out / "summary.json").read_text())["status"] == "failed: disk full"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temporary file
    saved = torch.load(out / "training_checkpoint_1.pt", weights_only=True)
    assert saved["trainer"]["iteration"] == 10  # the end of epoch 1: 500 images in batches of 50


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda tmp: "/dev/zero", "/dev/zero: not a regular file"),
        (lambda tmp: tmp, "not a regular file"),
        (
            lambda tmp: (tmp / "big.yaml").write_text("epochs: 3\n" + "#" * (1 << 20)) and tmp / "big.yaml",
            "larger than",
        ),
        (
            lambda tmp: (
                (tmp / "laughs.yaml").write_text(
                    'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
                    + "".join(
                        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
                    )
                    + "epochs: *i\n"
                )
                and tmp / "laughs.yaml"
            ),
            "aliases (*a) are not allowed in a settings file",
        ),
    ],
    ids=["dev-zero", "directory", "over-1MiB", "billion-laughs"],
)
def test_hostile_config_files_are_refused_before_they_cost_memory(tmp_path, make, expected):
    path = make(tmp_path)
    # A peak grown by 1 MB of data past the bound, by an expanded alias or by torch would show here.
    script = (
        f"{PEAK}import sys\nfrom fmnist_ignite.cli.main import main\n"
        "before = peak_kb()\n"
        f"code = main(['train', '--config', {str(path)!r}])\n"
        "print(code, peak_kb() - before, 'torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    code, grown_kb, torch_imported = proc.stdout.split()
    assert code == "2" and len(proc.stderr.strip().splitlines()) == 1 and expected in proc.stderr, proc.stderr
    assert int(grown_kb) < 1024 * 3 and torch_imported == "False"


def test_a_worker_with_other_settings_is_refused_by_the_study_the_first_one_pinned(small_config, tmp_path):
    pytest.importorskip("optuna")
    from fmnist_ignite import tune

    space = {"lr": {"low": 1e-3, "high": 1e-1, "log": True}}
    study = {"space": space, "fixed": ("optimizer",)}
    first = small_config.replace(epochs=1, optimizer="sgd", output_dir=str(tmp_path / "study"))
    tune(first, 1, **study)
    with pytest.raises(FmnistError) as info:
        tune(first.replace(epochs=2, optimizer="adam"), 2, **study)
    assert str(info.value) == (
        "study 'fmnist' was started with other settings; give the same to join it, or name another study: "
        "epochs: 1 -> 2, optimizer: 'sgd' -> 'adam'"
    )
    assert "or name another --study: epochs: 1 -> 2" in info.value.on_command_line()
    tune(first.replace(threads=1), 2, **study)  # where and how a worker runs may differ: it joins


@pytest.mark.slow  # a subprocess
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--timeout", "-1"], "--timeout -1.0: must be at least 1 seconds"),
        (["--heartbeat", "0"], "--heartbeat 0: must be at least 1 seconds"),
    ],
)
def test_tune_flags_below_one_are_refused_as_flags(tmp_path, flags, message):
    pytest.importorskip("optuna")
    line = one_line_error(cli("tune", "--trials", "1", "--output-dir", tmp_path / "s", *flags, cwd=tmp_path))
    assert line == f"error: {message}"
    assert not (tmp_path / "s").exists()


def test_an_idx_file_of_no_images_is_one_line(tmp_path):
    path = tmp_path / "empty-idx3-ubyte"
    path.write_bytes(IMAGE_MAGIC.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (0, 28, 28)))
    with pytest.raises(FmnistError, match=r"header says shape \(0, 28, 28\): no data"):
        load_images(path)

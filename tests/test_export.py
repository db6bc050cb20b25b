"""Export to ONNX and torch.export: the exported model gives the checkpoint's logits (ONNX Runtime within
1e-4 on 1,000 images), any batch size, its preprocessing and classes in the file; predict on a .onnx gives
the checkpoint's classes; a damaged or foreign checkpoint is one line."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import real_data_dir, small_run_config, write_idx
from torch import nn

from fmnist_ignite.analysis.export import ExportFormat, export_model, read_export_metadata
from fmnist_ignite.analysis.inference import load_model
from fmnist_ignite.cli.main import main
from fmnist_ignite.data.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from fmnist_ignite.data.loaders import to_float_images
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.layout import model_file
from fmnist_ignite.run.launch import train

onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
pytest.importorskip("onnxscript", reason="the onnx extra is not installed")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A short run of each built-in model on synthetic data: model name -> run directory."""
    found = {}
    for name in ("mlp", "cnn"):
        root = tmp_path_factory.mktemp(name)
        result = train(small_run_config(root).replace(model=name, epochs=1, plots=False, threads=1))
        found[name] = result.output_dir
    return found


def images(count: int = 1000, seed: int = 0) -> torch.Tensor:
    """uint8 N x 28 x 28 images, as load_images gives them: the real test set's first ``count`` where it is
    on this machine (CI installs it), else random pixels (any image is an input the two must agree on)."""
    directory = real_data_dir()
    if directory is not None and seed == 0:
        return load_fashion_mnist(directory, verify=False)["test"][0][:count]
    return torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def onnx_run(path, x: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


@pytest.mark.slow  # a quick-tier budget: trains more than a few steps
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_onnx_runtime_gives_the_checkpoints_logits_on_1000_images(runs, name, tmp_path):
    result = export_model(runs[name], "onnx", tmp_path / f"{name}.onnx")
    assert result.source == model_file(runs[name]) and result.source.name.startswith("best_model_")
    x = to_float_images(images())
    expected = load_model(result.source)(x)
    got = onnx_run(result.path, x)
    assert got.shape == (1000, 10)
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max()
    assert torch.allclose(onnx_run(result.path, x[:1]), expected[:1], atol=1e-4, rtol=0)  # any batch size


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_pt2_reloads_with_torch_export_load_and_matches(runs, name, tmp_path):
    result = export_model(runs[name], ExportFormat.TORCH_EXPORT, tmp_path / f"{name}.pt2")
    program = torch.export.load(str(result.path))
    x = to_float_images(images(300, seed=1))
    expected = load_model(result.source)(x)
    assert torch.allclose(program.module()(x), expected, atol=1e-5, rtol=0)
    assert program.module()(x[:1]).shape == (1, 10)
    assert read_export_metadata(result.path)["source"] == result.source.name


def test_the_files_say_their_preprocessing_classes_and_temperature(runs, tmp_path):
    result = export_model(runs["mlp"], "onnx", tmp_path / "m.onnx")
    metadata = read_export_metadata(result.path)
    assert json.loads(metadata["classes"]) == list(CLASS_NAMES)
    assert "1 x 28 x 28" in metadata["input"] and "[0, 1]" in metadata["input"]
    fitted = json.loads((runs["mlp"] / "calibration.json").read_text())["temperature"]
    assert float(metadata["temperature"]) == pytest.approx(fitted, rel=1e-5)
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert given.name == "images" and given.shape[1:] == [1, 28, 28] and isinstance(given.shape[0], str)


def test_a_model_of_your_own_exports(tmp_path):
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(784, 10)

        def forward(self, x):
            return self.layer(x.flatten(1)).tanh() * 3

    model = Tiny()
    checkpoint = tmp_path / "best_model_1_neg_val_loss=-1.0.pt"
    torch.save(model.state_dict(), checkpoint)
    result = export_model(checkpoint, "onnx", model=Tiny())
    assert result.path == tmp_path / "model.onnx"
    x = to_float_images(images(50))
    assert torch.allclose(onnx_run(result.path, x), model(x), atol=1e-5, rtol=0)


def test_predict_on_the_exported_onnx_gives_the_checkpoints_classes(runs, tmp_path, capsys):
    checkpoint = model_file(runs["cnn"])
    export_model(checkpoint, "onnx", tmp_path / "cnn.onnx")
    idx = write_idx(tmp_path / "images-idx3-ubyte", images(64, seed=3))
    assert main(["predict", str(checkpoint), str(idx), "--json"]) == 0
    from_checkpoint = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["predict", str(tmp_path / "cnn.onnx"), str(idx), "--json"]) == 0
    from_onnx = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(from_onnx) == 64
    assert [p["class"] for p in from_onnx] == [p["class"] for p in from_checkpoint]
    assert [p["probability"] for p in from_onnx] == pytest.approx([p["probability"] for p in from_checkpoint], abs=1e-4)


def test_the_export_command_writes_beside_the_checkpoint(runs, capsys):
    assert main(["export", str(runs["mlp"]), "--format", "torch-export"]) == 0
    out = capsys.readouterr().out
    assert (runs["mlp"] / "model.pt2").is_file() and f"{runs['mlp'] / 'model.pt2'}" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00garbage, not a checkpoint" * 10, r"^error: .*bad\.pt: "),
        (None, r"^error: .*bad\.pt: "),  # a checkpoint of something else: a dict of no model's weights
    ],
)
def test_a_damaged_or_foreign_checkpoint_is_one_line(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weights": torch.zeros(3), "note": "not a model"}, bad)
    else:
        bad.write_bytes(content)
    assert main(["export", str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert __import__("re").match(message, err), err
    assert not (tmp_path / "model.onnx").exists()


def test_a_directory_without_a_model_and_a_linked_output_are_refused(tmp_path, runs):
    with pytest.raises(FmnistError, match="a directory without a model"):
        export_model(tmp_path)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep")
    (tmp_path / "link.onnx").symlink_to(precious)
    with pytest.raises(FmnistError, match="not a regular file"):
        export_model(runs["mlp"], "onnx", tmp_path / "link.onnx")
    assert precious.read_text() == "keep"


def test_a_foreign_onnx_file_given_to_predict_is_one_line(tmp_path, capsys):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not onnx at all")
    idx = write_idx(tmp_path / "images-idx3-ubyte", images(2))
    assert main(["predict", str(fake), str(idx)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "model.onnx" in err, err


@pytest.mark.parametrize("planted", ["99", "soon"])
def test_a_tampered_temperature_in_an_exported_file_is_one_line(runs, tmp_path, capsys, planted):
    import onnx

    path = export_model(runs["mlp"], "onnx", tmp_path / "m.onnx").path
    proto = onnx.load(str(path))
    for prop in proto.metadata_props:
        if prop.key == "temperature":
            prop.value = planted
    onnx.save(proto, str(path))
    idx = write_idx(tmp_path / "images-idx3-ubyte", images(2, seed=4))
    assert main(["predict", str(path), str(idx)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "m.onnx: temperature must be a number in [0.05, 20.0]" in err, err
    assert main(["predict", str(path), str(idx), "--no-calibrate"]) == 0  # without it, the model still serves

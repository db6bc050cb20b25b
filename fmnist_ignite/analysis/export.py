"""Export a trained model for use without this library: ONNX (through torch's dynamo exporter) or a
``torch.export`` program (``.pt2``), both with a dynamic batch dimension and the preprocessing stated in
the file; and classify with an exported ``.onnx`` through ONNX Runtime."""

from __future__ import annotations

import enum
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from fmnist_ignite import __version__
from fmnist_ignite.analysis.inference import load_model
from fmnist_ignite.data.fashion_mnist import CLASS_NAMES
from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.calibration import checked_temperature, read_temperature
from fmnist_ignite.files.durable import replace_atomically
from fmnist_ignite.files.layout import model_file

INPUT_NAME, OUTPUT_NAME = "images", "logits"
METADATA_FILE = "fmnist_ignite.json"  # in a .pt2 archive: the metadata an ONNX file keeps as metadata_props
PREPROCESSING = (
    "float32 N x 1 x 28 x 28, pixels in [0, 1] (the uint8 value / 255), a light garment on a dark background "
    "as in Fashion-MNIST; output: logits N x 10 (softmax for probabilities; divide by temperature first, "
    "if given, for calibrated ones)"
)


class ExportFormat(enum.StrEnum):
    """What ``export_model`` writes."""

    ONNX = "onnx"  # an ONNX model, through torch.onnx.export(dynamo=True)
    TORCH_EXPORT = "torch-export"  # a torch.export program, saved by torch.export.save


SUFFIXES = {ExportFormat.ONNX: ".onnx", ExportFormat.TORCH_EXPORT: ".pt2"}


@dataclass(frozen=True)
class ExportResult:
    """An exported model.

    Attributes:
        path: the file written.
        format: its format.
        source: the checkpoint its weights came from.
        metadata: what the file says of itself (input, classes, temperature, source, version).
    """

    path: Path
    format: ExportFormat
    source: Path
    metadata: dict[str, str]

    def __repr__(self) -> str:
        return f"ExportResult({self.format.value}: {str(self.path)!r}, from {self.source.name})"


def export_model(
    source: str | Path,
    format: ExportFormat | str = ExportFormat.ONNX,
    output: str | Path | None = None,
    model: torch.nn.Module | None = None,
) -> ExportResult:
    """Write the model of a checkpoint or run directory as ONNX or a ``torch.export`` program.

    The file takes float32 N x 1 x 28 x 28 images in [0, 1] for any N and gives N x 10 logits; the
    preprocessing, the class names, the run's temperature (if it fitted one) and the source are written
    into it (ONNX ``metadata_props``; a ``fmnist_ignite.json`` inside the ``.pt2``). Test-time flips
    (``--tta``) are not part of the exported model: it gives the plain logits.

    Args:
        source: a best-model file, a training checkpoint, or a run directory (its best model).
        format: "onnx" or "torch-export".
        output: the file to write; None: beside the checkpoint, ``model.onnx`` or ``model.pt2``.
        model: your own model to load the weights into (as ``load_model``); None: a built-in one.

    Returns:
        What was written, and where.

    Raises:
        FmnistError: one line: an unknown format, a checkpoint that cannot be read or is not a model's,
            an output that is a link, a missing extra, or an exporter's failure.
    """
    try:
        kind = ExportFormat(format)
    except ValueError:
        raise FmnistError(f"unknown export format {format!r}: choose one of onnx, torch-export") from None
    checkpoint = model_file(source)
    net = load_model(checkpoint, "cpu", model).float()
    target = Path(output) if output is not None else checkpoint.parent / f"model{SUFFIXES[kind]}"
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise FmnistError(f"{target}: not a regular file (a link is not followed): name another output")
    metadata = {
        "input": PREPROCESSING,
        "classes": json.dumps(list(CLASS_NAMES)),
        "source": checkpoint.name,
        "exported_by": f"fmnist-ignite {__version__}, torch {torch.__version__}",
    }
    temperature = read_temperature(checkpoint)
    if temperature is not None:
        metadata["temperature"] = f"{temperature:.6g}"
    example = torch.rand(2, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1)
    try:
        if kind == ExportFormat.ONNX:
            write_onnx(net, example, batch, metadata, target)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # torch's note on tied weights it saves once
                program = torch.export.export(net, (example,), dynamic_shapes=({0: batch},))
                replace_atomically(
                    target,
                    lambda file: torch.export.save(program, file, extra_files={METADATA_FILE: json.dumps(metadata)}),
                )
    except (ImportError, ModuleNotFoundError) as exc:
        raise FmnistError(
            f"export to ONNX needs onnx and onnxscript ({exc.name or exc}): pip install 'fmnist-ignite[onnx]'"
        ) from None
    except Exception as exc:  # the exporters' own errors (a model they cannot trace, ...): one line
        words = str(exc).strip().splitlines()
        raise FmnistError(
            f"could not export {checkpoint}: {type(exc).__name__}: {words[0][:300] if words else ''}"
        ) from None
    return ExportResult(target, kind, checkpoint, metadata)


def write_onnx(
    net: torch.nn.Module, example: torch.Tensor, batch: torch.export.Dim, metadata: dict[str, str], target: Path
) -> None:
    """The model through ``torch.onnx.export(dynamo=True)``, with ``metadata`` as its metadata_props."""
    import onnx  # noqa: F401  (the exporter needs it: a missing one is named here, not deep inside torch)
    import onnxscript  # noqa: F401

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            verbose=False,
        )
    assert program is not None  # dynamo=True always gives a program
    program.model.metadata_props.update(metadata)
    replace_atomically(target, lambda file: file.write(program.model_proto.SerializeToString()))


def read_export_metadata(path: str | Path) -> dict[str, str]:
    """The metadata ``export_model`` wrote into an ``.onnx`` or ``.pt2`` file.

    Raises:
        FmnistError: a file that is no model of its kind (damaged, or something else).
    """
    path = Path(path)
    if path.suffix == ".onnx":
        return OnnxClassifier(path).metadata
    extra = {METADATA_FILE: ""}
    try:
        torch.export.load(str(path), extra_files=extra)
        return dict(json.loads(extra[METADATA_FILE] or "{}"))
    except Exception as exc:  # torch's own errors for a damaged or foreign archive
        raise FmnistError(f"{path}: not a torch.export program ({type(exc).__name__})") from None


class OnnxClassifier:
    """An exported ``.onnx`` classifier, run by ONNX Runtime on the CPU.

    Args:
        path: the file, as ``export_model`` wrote it (or any ONNX model from N x 1 x 28 x 28 to N x 10).

    Attributes:
        metadata: what the file says of itself (``custom_metadata_map``).

    Raises:
        FmnistError: onnxruntime missing (the ``onnx`` extra), a file it cannot load, or a model of other
            inputs or outputs.
    """

    def __init__(self, path: str | Path) -> None:
        try:
            import onnxruntime
        except ImportError:
            raise FmnistError(
                "predicting with an .onnx file needs onnxruntime: pip install 'fmnist-ignite[onnx]'"
            ) from None
        self.path = Path(path)
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own errors: a damaged or foreign file
            words = str(exc).strip().splitlines()
            raise FmnistError(
                f"{path}: not an ONNX model ONNX Runtime can load ({words[0][:200] if words else ''})"
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [1, 28, 28] or len(outputs) != 1:
            raise FmnistError(f"{path}: not a Fashion-MNIST classifier (its input is not N x 1 x 28 x 28)")
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The N x 10 logits for float N x 1 x 28 x 28 ``images`` in [0, 1]."""
        (logits,) = self.session.run(None, {self.session.get_inputs()[0].name: images.float().numpy()})
        if logits.ndim != 2 or logits.shape[1] != len(CLASS_NAMES):
            raise FmnistError(f"{self.path}: not a Fashion-MNIST classifier (it gives {logits.shape[1:]} outputs)")
        return torch.from_numpy(logits)

    def temperature(self) -> float | None:
        """The temperature the file carries (its run's, fitted on validation), checked; None if none.

        Raises:
            FmnistError: a temperature outside the range a fit can give (a tampered file).
        """
        given = self.metadata.get("temperature")
        if given is None:
            return None
        try:
            number: object = float(given)
        except ValueError:
            number = given
        return checked_temperature(number, str(self.path))

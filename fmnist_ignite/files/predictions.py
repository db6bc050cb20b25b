"""A run's kept predictions (``test_predictions.npz``, a trial's ``validation_predictions/trial-NNNN.npz``):
written and read here only (the format: ``analysis.predictions``).

Read back, a file is input like any other: a regular file of at most ``MAX_PREDICTIONS_BYTES``, a zip whose
members are only the known arrays, each member's declared size checked before it is inflated (a zip bomb is
refused unread), each array's header checked against its bytes before it is allocated, no pickles, and the
arrays of the shapes, types and ranges a run writes: anything else is one line naming the file.
"""

from __future__ import annotations

import io
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from fmnist_ignite.errors import FmnistError
from fmnist_ignite.files.durable import write_durably
from fmnist_ignite.files.reading import read_bounded

PREDICTIONS_FILE = "test_predictions.npz"
VALIDATION_PREDICTIONS_FILE = "validation_predictions.npz"
MAX_PREDICTIONS_BYTES = 64 << 20  # 10,000 images: 0.4 MB inflated; the whole training set would be 3 MB
NUM_CLASSES = 10


def write_predictions(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as a compressed ``.npz`` at ``path``, durably."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]  # numpy stub: ** could fill allow_pickle (bool)
    write_durably(Path(path), buffer.getvalue())


def read_predictions(path: Path, split: str) -> dict:
    """The arrays of a predictions file of ``split``: ``predicted`` and ``labels`` (int64, N, classes 0-9),
    ``probabilities`` (float32, N x 10, when kept), ``<split>_set_sha256`` (text) and ``class_names`` (when
    kept), checked as the module says. None of it is trusted before it is checked."""
    path = Path(path)
    data = read_bounded(path, MAX_PREDICTIONS_BYTES, f"a {split} predictions file")
    if data is None:
        raise FmnistError(f"{path}: no such file")
    what = f"not a {split} predictions file of fmnist-ignite"
    sha_key = f"{split}_set_sha256"
    allowed = {"predicted", "labels", "probabilities", sha_key, "class_names"}
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise FmnistError(f"{path}: {what} (not a zip archive)") from None
    with archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        unknown = sorted(set(members) - allowed)
        if unknown or not {"predicted", "labels", sha_key} <= set(members):
            missing = sorted({"predicted", "labels", sha_key} - set(members))
            raise FmnistError(f"{path}: {what} (members {sorted(members)}; unknown {unknown}, missing {missing})")
        for info in members.values():
            if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise FmnistError(f"{path}: {what} (a member encrypted or compressed in a way numpy never writes)")
        declared = sum(info.file_size for info in members.values())
        if declared > MAX_PREDICTIONS_BYTES:
            raise FmnistError(
                f"{path}: {what} (it would inflate to {declared:,} bytes; at most {MAX_PREDICTIONS_BYTES:,})"
            )
        try:
            arrays = {name: _array(archive.read(info), info.file_size) for name, info in members.items()}
        except (ValueError, OverflowError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise FmnistError(f"{path}: {what} ({' '.join(str(exc).split())[:120]})") from None
    return _checked(arrays, path, what, sha_key)


def _array(raw: bytes, declared: int) -> np.ndarray:
    """One ``.npy`` member, its header read first: the dtype one of plain numbers or text, no objects, and the
    shape's bytes exactly what follows the header (nothing is allocated from the header's word alone)."""
    if len(raw) != declared:
        raise ValueError("a member is not the size its zip entry declares")
    stream = io.BytesIO(raw)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"npy format version {version}")
    if dtype.hasobject or dtype.kind not in "biufU":
        raise ValueError(f"an array of {dtype} (pickled objects are never loaded)")
    if any(not 0 <= n <= MAX_PREDICTIONS_BYTES for n in shape):
        raise ValueError(f"an array header says shape {shape}")
    count = math.prod(shape)
    body = raw[stream.tell() :]
    if count * dtype.itemsize != len(body):
        raise ValueError(f"an array header says {shape} of {dtype}, the member holds {len(body)} bytes")
    array = np.frombuffer(body, dtype=dtype)
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


def _checked(arrays: dict[str, np.ndarray], path: Path, what: str, sha_key: str) -> dict:
    labels, predicted = arrays["labels"], arrays["predicted"]
    for name, array in (("labels", labels), ("predicted", predicted)):
        if array.dtype.kind not in "iu" or array.ndim != 1:
            raise FmnistError(f"{path}: {what} ({name}: {array.dtype} of shape {array.shape}, expected integers, N)")
        if array.size and (int(array.min()) < 0 or int(array.max()) >= NUM_CLASSES):
            raise FmnistError(f"{path}: {what} ({name}: a class outside 0-{NUM_CLASSES - 1})")
    n = labels.size
    if n == 0:
        raise FmnistError(f"{path}: {what} (no images)")
    if predicted.shape != (n,):
        raise FmnistError(f"{path}: its predictions and labels do not match in length ({predicted.size} and {n})")
    sha = arrays[sha_key]
    if sha.dtype.kind != "U" or sha.shape != () or len(str(sha)) != 64:
        raise FmnistError(f"{path}: {what} ({sha_key}: not a SHA-256 in text)")
    loaded = {"predicted": predicted.astype(np.int64), "labels": labels.astype(np.int64), sha_key: str(sha)}
    if "probabilities" in arrays:
        probabilities = arrays["probabilities"]
        if probabilities.dtype.kind != "f" or probabilities.shape != (n, NUM_CLASSES):
            raise FmnistError(
                f"{path}: its probabilities are {probabilities.dtype} {probabilities.shape}, expected N x 10"
            )
        if not np.isfinite(probabilities).all() or probabilities.min() < 0 or probabilities.max() > 1:
            raise FmnistError(f"{path}: {what} (probabilities outside [0, 1])")
        loaded["probabilities"] = probabilities.astype(np.float32)
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.dtype.kind != "U" or names.shape != (NUM_CLASSES,):
            raise FmnistError(f"{path}: {what} (class_names: expected the ten class names)")
        loaded["class_names"] = [str(name) for name in names]
    return loaded

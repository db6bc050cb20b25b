"""IDX files (the format of MNIST and Fashion-MNIST): read with the header checked before the data, bounded."""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from fmnist_ignite.errors import FmnistError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


class NotIdxFile(FmnistError):
    """A file that does not begin as an IDX file of unsigned bytes does (its magic number)."""


@dataclass(frozen=True)
class IdxSpec:
    """What one of the four upstream files holds; sha256 is of the decompressed bytes."""

    magic: int
    shape: tuple[int, ...]
    sha256: str


MAX_IDX_BYTES = 100_000 * 28 * 28  # more images than Fashion-MNIST's 70,000: anything larger is refused unread


def read_idx(path: Path, spec: IdxSpec | None = None) -> torch.Tensor:
    """Parse an IDX file of unsigned bytes (gzipped or not) into a uint8 tensor.

    The header is checked before the data is read, and no more bytes are read (or decompressed) than it
    promises, up to ``MAX_IDX_BYTES``: a file that holds more, or a gzip bomb, is refused on the way.

    Args:
        path: the IDX file; a ``.gz`` suffix means gzipped.
        spec: what the file must hold: with it, also check the magic number, the shape and the checksum of the
            decompressed bytes; None: any IDX file of unsigned bytes (28 x 28 images or a vector) will do.

    Returns:
        The data, shaped as the header says (e.g. N x 28 x 28 images, or N labels).

    Raises:
        FmnistError: naming the file: unreadable, not an IDX file of unsigned bytes (``NotIdxFile``), a header
            out of bounds, data that does not match the header, or a file that does not match ``spec``.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as stream:
            head = stream.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 3:
                raise NotIdxFile(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
            dims = stream.read(4 * head[3])
            shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(len(dims) // 4))
            count = math.prod(shape)
            if len(shape) != head[3] or count > MAX_IDX_BYTES or (len(shape) == 3 and shape[1:] != (28, 28)):
                raise FmnistError(
                    f"{path}: header says shape {shape}: not 28 x 28 images or labels of at most "
                    f"{MAX_IDX_BYTES:,} bytes"
                )
            data = stream.read(count + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise FmnistError(f"{path}: cannot read it ({exc})") from None
    if count == 0:
        raise FmnistError(f"{path}: header says shape {shape}: no data")
    if len(data) != count:
        held = "more data than that" if len(data) > count else f"{len(data)} bytes of data"
        raise FmnistError(f"{path}: header says shape {shape} but the file holds {held}")
    if spec is not None:
        magic = int.from_bytes(head, "big")
        if magic != spec.magic:
            raise FmnistError(f"{path}: magic number {magic}, expected {spec.magic}: not this Fashion-MNIST file")
        if shape != spec.shape:
            raise FmnistError(f"{path}: shape {shape}, expected {spec.shape}: not this Fashion-MNIST file")
        if hashlib.sha256(head + dims + data).hexdigest() != spec.sha256:
            raise FmnistError(f"{path}: checksum mismatch: not the Fashion-MNIST data (delete it to use another copy)")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(shape)

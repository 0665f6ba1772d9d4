"""Binarised images for a Bernoulli decoder (``--binarize``), stated so that NLL figures can be compared.

- ``threshold``: pixel > 0.5 is 1, else 0; the same images every epoch (both splits).
- ``sample``: dynamic binarisation, as the IWAE paper trains: a training image is a fresh Bernoulli draw
  (each pixel 1 with probability its intensity) every time it is seen, i.e. once per epoch; the draw of step s
  is keyed by ``fold_in(fold_in(train_key, s), SAMPLE_STREAM)``, so a resumed run draws the same images. The
  test split is one fixed draw from ``--seed``.
"""

from __future__ import annotations

import jax
import numpy as np

BINARIZE_MODES = ("none", "threshold", "sample")
THRESHOLD = 0.5
SAMPLE_STREAM = 1  # folded into the step's key: independent of the step's reparameterisation noise
TEST_STREAM = 2  # folded into PRNGKey(seed) for the test split's fixed draw


def test_split_key(seed: int):
    """The key of the test split's fixed draw under ``--binarize sample``."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), TEST_STREAM)


def threshold(images: np.ndarray) -> np.ndarray:
    """``images > 0.5`` as float32 0/1, same shape."""
    return (np.asarray(images) > THRESHOLD).astype(np.float32)


def sample(key, images):
    """A Bernoulli draw of ``images`` (each pixel 1 with probability its value), float32 0/1, same shape."""
    return jax.random.bernoulli(key, images).astype(images.dtype)


def sample_step(step_key, batch):
    """The training batch's draw for the step whose key is ``step_key``."""
    return sample(jax.random.fold_in(step_key, SAMPLE_STREAM), batch)


def binarize_split(images: np.ndarray, mode: str, key) -> np.ndarray:
    """A split as evaluated (and, for ``threshold``, trained): unchanged, thresholded, or one fixed draw from
    ``key``."""
    if mode == "threshold":
        return threshold(images)
    if mode == "sample":
        return np.asarray(sample(key, np.asarray(images)))
    return images

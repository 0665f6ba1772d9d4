"""What ``jaxvae evaluate`` measures on a trained VAE, beyond the training loss: the ELBO in nats and the
importance-weighted estimate of log p(x) (``jaxvae.iwae``), in batches of images on the default device."""

from __future__ import annotations

from functools import partial

import jax
import numpy as np

from jaxvae.iwae import bernoulli_log_likelihood, gaussian_constant, gaussian_log_likelihood, iwae_log_px
from jaxvae.model import VAE
from jaxvae.progress import CountProgress
from jaxvae.train_step import decoder_output

IW_CHUNK = 50  # importance samples decoded together for each image
IW_IMAGES = 20  # images per dispatch: 1,000 decodes at a time


def likelihood_statement(likelihood: str, reconstruction_weight: float) -> str:
    """The distribution whose log-probability the estimates are, in words."""
    if likelihood == "bernoulli":
        return "Bernoulli decoder: log-probability of the (binary) test images under independent pixels with p = sigmoid(logits)"
    variance = 1.0 / (2.0 * reconstruction_weight)
    return (f"Gaussian decoder with the fixed variance {variance:g} per pixel that the loss {reconstruction_weight:g} * summed "
            "squared error implies: a log-density over [0, 1]^784 in nats (it can exceed 0 and is not comparable with "
            "binary-MNIST NLLs)")


def elbo_constant(likelihood: str, reconstruction_weight: float, pixels: int = 784) -> float:
    """``log p(x | z) + weight * reconstruction``: the constant the training loss leaves out (0 for Bernoulli)."""
    return 0.0 if likelihood == "bernoulli" else gaussian_constant(pixels, reconstruction_weight)


def elbo_from_terms(reconstruction: float, kl: float, likelihood: str, reconstruction_weight: float) -> float:
    """The ELBO in nats per image from the loss's mean terms (one z per image)."""
    weight = reconstruction_weight if likelihood == "gaussian" else 1.0
    return -(weight * reconstruction + kl) + elbo_constant(likelihood, reconstruction_weight)


def make_log_px(model: VAE, likelihood: str, reconstruction_weight: float, samples: int, chunk: int = IW_CHUNK):
    """``log_px(params, images (B, 28, 28, 1), key) -> (B,)``: the IWAE estimate with ``samples`` draws, jitted."""

    def encode(params, x):
        return model.apply({"params": params}, x, method=VAE.encode)

    def log_px_given_z(params, x, z):
        output = model.apply({"params": params}, z, method=decoder_output(likelihood))
        if likelihood == "bernoulli":
            return bernoulli_log_likelihood(x, output)
        return gaussian_log_likelihood(x, output, reconstruction_weight)

    @jax.jit
    def log_px(params, images, key):
        return iwae_log_px(partial(encode, params), partial(log_px_given_z, params), images, key, samples, min(chunk, samples))

    return log_px


def estimate_log_px(log_px, params, images: np.ndarray, key, batch: int = IW_IMAGES, show_progress: bool = True) -> np.ndarray:
    """``log_px`` (``make_log_px``'s) of every image ``(N,)``, ``batch`` images at a time (the last batch padded);
    batch i's draws from ``fold_in(key, i)``, so the estimate of an image depends on the key and its position only."""
    n = len(images)
    padded = np.concatenate([images, np.repeat(images[-1:], -n % batch, axis=0)])  # (whole batches, 28, 28, 1)
    progress = CountProgress("log p(x)", n, "images") if show_progress else None
    parts = []
    for i, first in enumerate(range(0, len(padded), batch)):
        parts.append(np.asarray(log_px(params, padded[first : first + batch], jax.random.fold_in(key, i))))
        if progress:
            progress.update(batch)
    if progress:
        progress.close()
    return np.concatenate(parts)[:n]

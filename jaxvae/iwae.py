"""The importance-weighted estimate of log p(x) (Burda et al.'s IWAE bound), as pure functions, and that
estimate for a trained VAE in batches of images (what ``jaxvae evaluate`` reports).

``log p(x) >= E[log (1/K) sum_k p(x, z_k) / q(z_k | x)]`` with ``z_k ~ q(z | x)``: K = 1 is the ELBO, the
bound rises with K and reaches log p(x) as K grows (at every K when q is the exact posterior). The K log
weights are reduced in chunks with a running log-sum-exp, so K = 5000 never holds more than one chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.likelihoods import get_likelihood, log_posterior, log_standard_normal
from jaxvae.model import VAE, shift_and_scale
from jaxvae.train_step import padding_index

IW_CHUNK = 50  # importance samples decoded together for each image
IW_IMAGES = 20  # images per dispatch: 1,000 decodes at a time


def iwae_log_px(encode: Callable, log_px_given_z: Callable, x, key, samples: int, chunk: int):
    """The IWAE estimate of ``log p(x)`` for each example: ``(B, ...) -> (B,)``, in nats.

    ``encode(x) -> (mean, log_var)``, each ``(B, L)``: the Gaussian q(z | x). ``log_px_given_z(x, z) -> (B,)``
    for ``z`` of shape ``(B, L)``. ``samples`` (K) draws in ``ceil(K / chunk)`` chunks of ``chunk``, the last one
    masked; chunk j's noise is ``normal(fold_in(key, j), (chunk, B, L))``.
    """
    mean, log_var = encode(x)  # (B, L)
    batch, latent = mean.shape
    repeated = jnp.broadcast_to(x, (chunk, *x.shape)).reshape(chunk * batch, *x.shape[1:])  # (chunk * B, ...)

    def chunk_log_weights(j):
        eps = jax.random.normal(jax.random.fold_in(key, j), (chunk, batch, latent), mean.dtype)
        z = shift_and_scale(eps, mean, log_var)  # (chunk, B, L)
        log_lik = log_px_given_z(repeated, z.reshape(chunk * batch, latent)).reshape(chunk, batch)
        log_w = log_lik + log_standard_normal(z) - log_posterior(eps, log_var)  # (chunk, B)
        drawn = j * chunk + jnp.arange(chunk) < samples  # the last chunk's draws beyond K are masked
        return jnp.where(drawn[:, None], log_w, -jnp.inf)

    def body(total, j):
        return jnp.logaddexp(total, jax.nn.logsumexp(chunk_log_weights(j), axis=0)), None

    chunks = -(-samples // chunk)
    total, _ = jax.lax.scan(body, jnp.full((batch,), -jnp.inf, mean.dtype), jnp.arange(chunks))
    return total - math.log(samples)


def log_px_function(model: VAE, likelihood: str, samples: int, chunk: int) -> Callable:
    """``log_px(params, images, key, reconstruction_weight) -> (B,)``, unjitted."""
    decoder = get_likelihood(likelihood)

    def encode(params, x):
        return model.apply({"params": params}, x, method=VAE.encode)

    def log_px_given_z(params, weight, x, z):
        output = model.apply({"params": params}, z, method=getattr(VAE, decoder.decoder_output))
        return decoder.log_prob(x, output, weight)

    def log_px(params, images, key, weight):
        return iwae_log_px(
            partial(encode, params), partial(log_px_given_z, params, weight), images, key, samples, min(chunk, samples)
        )

    return log_px


def make_log_px(model: VAE, likelihood: str, reconstruction_weight: float, samples: int, chunk: int = IW_CHUNK):
    """``log_px(params, images (B, 28, 28, 1), key) -> (B,)``: the IWAE estimate with ``samples`` draws, jitted.

    ``log p(x | z)`` is ``likelihood``'s (``jaxvae.likelihoods``): for the Gaussian loss, the density of
    N(decoded, 1 / (2 * reconstruction_weight)) per pixel."""
    log_px = log_px_function(model, likelihood, samples, chunk)
    return jax.jit(lambda params, images, key: log_px(params, images, key, reconstruction_weight))


def estimate_log_px(
    log_px, params, images: np.ndarray, key, batch: int = IW_IMAGES, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """``log_px`` (``make_log_px``'s) of every image ``(N,)`` (``(K, N)`` for an ensemble's, which maps members),
    ``batch`` images at a time (the last batch padded); batch i's draws from ``fold_in(key, i)``, so the estimate of
    an image depends on the key and its position only. ``progress(n)`` is told of every ``n`` images done."""
    n = len(images)
    padded = images[padding_index(n, -(-n // batch) * batch)]  # (whole batches, 28, 28, 1)
    parts = []
    for i, first in enumerate(range(0, len(padded), batch)):
        parts.append(np.asarray(log_px(params, padded[first : first + batch], jax.random.fold_in(key, i))))
        if progress:
            progress(batch)
    return np.concatenate(parts, axis=-1)[..., :n]

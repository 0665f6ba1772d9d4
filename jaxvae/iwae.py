"""The importance-weighted estimate of log p(x) (Burda et al.'s IWAE bound), as pure functions.

``log p(x) >= E[log (1/K) sum_k p(x, z_k) / q(z_k | x)]`` with ``z_k ~ q(z | x)``: K = 1 is the ELBO, the
bound rises with K and reaches log p(x) as K grows (at every K when q is the exact posterior). The K log
weights are reduced in chunks with a running log-sum-exp, so K = 5000 never holds more than one chunk.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from jaxvae.latent import shift_and_scale
from jaxvae.losses import bernoulli_nll, squared_error

LOG_2PI = math.log(2.0 * math.pi)


def log_normal(z, mean, log_var):
    """``log N(z; mean, diag(exp(log_var)))`` summed over the last axis: ``(..., L) -> (...)``."""
    return -0.5 * jnp.sum(LOG_2PI + log_var + (z - mean) ** 2 * jnp.exp(-log_var), axis=-1)


def log_standard_normal(z):
    """``log N(z; 0, I)`` summed over the last axis: ``(..., L) -> (...)``."""
    return -0.5 * jnp.sum(LOG_2PI + z**2, axis=-1)


def gaussian_log_likelihood(x, decoded, reconstruction_weight: float = 1.0):
    """``log p(x | z)`` ``(B,)`` of the Gaussian decoder that ``weight * squared error`` is the negative log of, up
    to its constant: mean ``decoded``, variance ``1 / (2 * weight)`` per pixel (0.5 for the seed's loss), so
    ``log p = -weight * SE - (D / 2) * log(pi / weight)`` with D pixels. A density: in nats, may exceed 0."""
    return -reconstruction_weight * squared_error(x, decoded) + gaussian_constant(math.prod(x.shape[1:]), reconstruction_weight)


def gaussian_constant(pixels: int, reconstruction_weight: float) -> float:
    """``-(D / 2) * log(pi / weight)``: the part of the Gaussian decoder's log p(x | z) that the loss leaves out."""
    return -0.5 * pixels * math.log(math.pi / reconstruction_weight)


def bernoulli_log_likelihood(x, logits):
    """``log p(x | z)`` ``(B,)`` of independent Bernoulli pixels with probabilities ``sigmoid(logits)``."""
    return -bernoulli_nll(x, logits)


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
        log_w = log_lik + log_standard_normal(z) - log_normal(z, mean, log_var)  # (chunk, B)
        drawn = j * chunk + jnp.arange(chunk) < samples  # the last chunk's draws beyond K are masked
        return jnp.where(drawn[:, None], log_w, -jnp.inf)

    def body(total, j):
        return jnp.logaddexp(total, jax.nn.logsumexp(chunk_log_weights(j), axis=0)), None

    chunks = -(-samples // chunk)
    total, _ = jax.lax.scan(body, jnp.full((batch,), -jnp.inf, mean.dtype), jnp.arange(chunks))
    return total - math.log(samples)

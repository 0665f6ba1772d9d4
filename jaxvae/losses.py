"""The VAE loss as pure functions: the seed's summed squared error (``train_vae_v1``) or a Bernoulli decoder's
binary cross-entropy on logits, plus the KL term. ``LIKELIHOODS`` names the two decoders."""

from __future__ import annotations

import jax.numpy as jnp
import optax

LIKELIHOODS = ("gaussian", "bernoulli")


def kl_divergence(z_mean, z_log_var):
    """Per-example KL(N(mu, sigma^2) || N(0, I)), summed over the latent axis: ``(B, L) -> (B,)``."""
    return -0.5 * jnp.sum(1.0 + z_log_var - z_mean**2 - jnp.exp(z_log_var), axis=-1)


def squared_error(x, decoded):
    """Per-example sum of squared pixel errors: ``(B, ...) -> (B,)``."""
    diff = (decoded - x).reshape(x.shape[0], -1)  # (B, pixels)
    return jnp.sum(diff**2, axis=-1)


def bernoulli_nll(x, logits):
    """Per-example binary cross-entropy of targets ``x`` in [0, 1] under ``sigmoid(logits)``, summed over pixels:
    ``(B, ...) -> (B,)``. Computed from the logits (``optax.sigmoid_binary_cross_entropy``), finite for any logit."""
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, x).reshape(x.shape[0], -1), axis=-1)  # (B, pixels) -> (B,)


def reconstruction_error(x, output, likelihood: str = "gaussian"):
    """Per-example reconstruction term ``(B,)``: ``output`` is the decoded image for ``"gaussian"`` (summed
    squared error), the decoder's logits for ``"bernoulli"`` (summed binary cross-entropy)."""
    if likelihood == "gaussian":
        return squared_error(x, output)
    if likelihood == "bernoulli":
        return bernoulli_nll(x, output)
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")


def vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight=1.0, likelihood: str = "gaussian"):
    """Return ``(loss, reconstruction, kl)`` as batch means; ``loss = weight * reconstruction + kl``.

    ``decoded`` is what the decoder gives for ``likelihood``: images in (0, 1) for ``"gaussian"`` (the seed's
    loss), logits for ``"bernoulli"``.
    """
    reconstruction = jnp.mean(reconstruction_error(x, decoded, likelihood))
    kl = jnp.mean(kl_divergence(z_mean, z_log_var))
    return reconstruction_weight * reconstruction + kl, reconstruction, kl

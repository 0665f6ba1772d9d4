"""The VAE loss with the original notebook's semantics (``train_vae_v1``), as pure functions."""

from __future__ import annotations

import jax.numpy as jnp


def kl_divergence(z_mean, z_log_var):
    """Per-example KL(N(mu, sigma^2) || N(0, I)), summed over the latent axis: ``(B, L) -> (B,)``."""
    return -0.5 * jnp.sum(1.0 + z_log_var - z_mean**2 - jnp.exp(z_log_var), axis=-1)


def squared_error(x, decoded):
    """Per-example sum of squared pixel errors: ``(B, ...) -> (B,)``."""
    diff = (decoded - x).reshape(x.shape[0], -1)  # (B, pixels)
    return jnp.sum(diff**2, axis=-1)


def vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight=1.0):
    """Return ``(loss, reconstruction, kl)`` as batch means; ``loss = weight * reconstruction + kl``."""
    reconstruction = jnp.mean(squared_error(x, decoded))
    kl = jnp.mean(kl_divergence(z_mean, z_log_var))
    return reconstruction_weight * reconstruction + kl, reconstruction, kl

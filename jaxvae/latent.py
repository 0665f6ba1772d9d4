"""The reparameterisation trick as a pure function of an explicit PRNG key."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def reparameterize(key, z_mean, z_log_var):
    """Draw ``z = mu + eps * exp(log_var / 2)`` with ``eps ~ N(0, I)`` from ``key``; shapes ``(B, latent)``."""
    return shift_and_scale(jax.random.normal(key, z_mean.shape, z_mean.dtype), z_mean, z_log_var)


def shift_and_scale(eps, z_mean, z_log_var):
    """``z = mu + eps * exp(log_var / 2)`` for given standard-normal ``eps``."""
    return z_mean + eps * jnp.exp(z_log_var / 2.0)

"""What a trained model is asked for after training: encodings, reconstructions, interpolations, samples and the
2-D manifold."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.model import VAE


@partial(jax.jit, static_argnums=0)
def _encode(model: VAE, params, x):
    return model.apply({"params": params}, x, method=VAE.encode)


@partial(jax.jit, static_argnums=0)
def _decode(model: VAE, params, z):
    return model.apply({"params": params}, z, method=VAE.decode)


def encode_posterior(model: VAE, params, images, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """``(z_mean, z_log_var)`` of every image, each ``(N, latent_dim)``, in batches: the Gaussians q(z | x)."""
    parts = [_encode(model, params, images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return tuple(np.concatenate([np.asarray(part[j]) for part in parts]) for j in (0, 1))


def encode_means(model: VAE, params, images, batch_size: int = 500) -> np.ndarray:
    """``z_mean`` of every image, ``(N, latent_dim)``, in batches."""
    return encode_posterior(model, params, images, batch_size)[0]


@partial(jax.jit, static_argnums=0)
def _reconstruct(model: VAE, params, images, key):
    return model.apply({"params": params}, images, key)[3]


def reconstruct(model: VAE, params, images, key) -> np.ndarray:
    """The model's output for ``images`` (z sampled as in training), ``(N, 28, 28, 1)``."""
    return np.asarray(_reconstruct(model, params, images, key))


def decode(model: VAE, params, z) -> np.ndarray:
    """Images ``(N, 28, 28, 1)`` in (0, 1) decoded from latents ``z`` ``(N, latent_dim)``."""
    return np.asarray(_decode(model, params, z))


def reconstruct_at_mean(model: VAE, params, images) -> np.ndarray:
    """The deterministic reconstruction: ``decode(z_mean)`` of ``images``, ``(N, 28, 28, 1)``."""
    return np.asarray(_decode(model, params, _encode(model, params, images)[0]))


def interpolate(model: VAE, params, starts, ends, steps: int) -> np.ndarray:
    """Images decoded along the straight line between the latent means of ``starts[i]`` and ``ends[i]`` (both
    ``(P, 28, 28, 1)``), ``steps`` points including both ends: ``(P, steps, 28, 28)``."""
    z0, z1 = _encode(model, params, starts)[0], _encode(model, params, ends)[0]  # (P, L) each
    t = jnp.linspace(0.0, 1.0, steps)[None, :, None]  # (1, steps, 1)
    z = (1.0 - t) * z0[:, None] + t * z1[:, None]  # (P, steps, L)
    decoded = _decode(model, params, z.reshape(-1, z.shape[-1]))  # (P * steps, 28, 28, 1)
    return np.asarray(decoded).reshape(len(starts), steps, 28, 28)


def sample_prior(model: VAE, params, key, n: int) -> np.ndarray:
    """``n`` images decoded from ``z ~ N(0, I)``, ``(n, 28, 28, 1)``."""
    z = jax.random.normal(key, (n, model.latent_dim), jnp.float32)
    return np.asarray(_decode(model, params, z))


def manifold(model: VAE, params, size: int = 20) -> np.ndarray:
    """Images decoded over a ``size x size`` grid of the 2-D latent at the normal's quantiles, ``(size, size, 28, 28)``.

    Rows go from high to low z[1], columns from low to high z[0], as in the Keras VAE example's figure.
    """
    q = np.asarray(jax.scipy.special.ndtri(jnp.linspace(0.05, 0.95, size)), np.float32)
    z = np.array([[x, y] for y in q[::-1] for x in q], np.float32)  # (size*size, 2)
    return np.asarray(_decode(model, params, z)).reshape(size, size, 28, 28)

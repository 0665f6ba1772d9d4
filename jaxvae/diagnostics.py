"""What VAE papers report beside the NLL, from the encoder's Gaussians q(z | x) = N(mean, exp(log_var)) of a split's
images: the active units (Burda et al. 2016), the KL per latent dimension, and the mutual information I(x; z) under
q (He et al. 2019, "Lagging inference networks"). Posterior collapse, a unit whose q(z_u | x) is the prior for
every x, shows in all three: activity ~0, KL ~0, and no information carried. numpy, in float64.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from jaxvae.likelihoods import LOG_2PI

ACTIVE_THRESHOLD = 0.01  # Burda et al.: unit u is active when Cov_x(E_q[z_u | x]) exceeds it
# the mutual information's pairwise densities, computed this many (image, image, unit) at a time
CHUNK_ELEMENTS = 4_000_000


def activity(means: np.ndarray) -> np.ndarray:
    """``Cov_x(E_q[z_u | x])`` per unit u: the variance over images of the posterior means, ``(N, L) -> (L,)``; 0 for
    a single image, which shows no spread."""
    return np.var(np.asarray(means, np.float64), axis=0, ddof=min(1, len(means) - 1))


def kl_per_dimension(means: np.ndarray, log_vars: np.ndarray) -> np.ndarray:
    """``KL(q(z_u | x) || N(0, 1))`` per unit, averaged over images, ``(N, L) -> (L,)``; sums to the loss's KL."""
    means, log_vars = np.asarray(means, np.float64), np.asarray(log_vars, np.float64)
    return np.mean(-0.5 * (1.0 + log_vars - means**2 - np.exp(log_vars)), axis=0)


def mutual_information(means: np.ndarray, log_vars: np.ndarray, seed: int = 0) -> float:
    """``I(x; z)`` under ``q(x, z) = p_data(x) q(z | x)`` over the N images, in nats, as He et al. estimate it:
    ``E_x[-H(q(z | x))] - E_{z ~ q(z)}[log q(z)]`` with ``q(z)`` the mixture of the N posteriors and one draw of z
    per image (``numpy`` generator of ``seed``). In expectation at most ``log N``, and 0 when every image has the same
    posterior; the one draw per image makes it noisy on few images, where it can fall below 0."""
    means, log_vars = np.asarray(means, np.float64), np.asarray(log_vars, np.float64)
    n, latent = means.shape
    negative_entropy = np.mean(-0.5 * (latent * LOG_2PI + np.sum(1.0 + log_vars, axis=1)))
    z = means + np.random.default_rng(seed).standard_normal(means.shape) * np.exp(log_vars / 2.0)  # (N, L)
    chunk = max(1, CHUNK_ELEMENTS // (n * latent))
    log_q = []
    for first in range(0, n, chunk):
        zi = z[first : first + chunk, None]  # (chunk, 1, L) against every posterior (N, L): log q(z_i | x_j)
        log_density = -0.5 * np.sum(LOG_2PI + log_vars + (zi - means) ** 2 * np.exp(-log_vars), axis=-1)
        log_q.append(logsumexp(log_density, axis=1) - math.log(n))
    return float(negative_entropy - np.mean(np.concatenate(log_q)))


def latent_diagnostics(means: np.ndarray, log_vars: np.ndarray, seed: int = 0) -> dict:
    """The figures, as JSON: active units and the threshold, each unit's activity and KL, the mutual information."""
    units, kl = activity(means), kl_per_dimension(means, log_vars)
    return {
        "active_units": int(np.sum(units > ACTIVE_THRESHOLD)),
        "active_threshold": ACTIVE_THRESHOLD,
        "activity_per_dim": units.tolist(),
        "kl_per_dim": kl.tolist(),
        "mutual_information_nats": mutual_information(means, log_vars, seed),
    }

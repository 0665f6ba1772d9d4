"""The trained-model functions of the public API (``jaxvae.inference``), by what they promise, on small_run's
parameters: each float32 result against the same formula in float64 (``in_float64``), within 1e-4 of a pixel in
(0, 1) or of a latent mean. float32 rounding through the encoder and the decoder is ~1e-6 there; an interpolation
run backwards, or a manifold upside down, moves pixels by 0.1 and more. Every test decodes 9 latents, so that one
program of each precision serves them all."""

import jax
import numpy as np
import pytest
from scipy.stats import norm

from conftest import in_float64
from jaxvae import decode, encode_means, interpolate, open_run, reconstruct_at_mean, sample_prior
from jaxvae.inference import manifold
from jaxvae.model import VAE

CLOSE = dict(rtol=0, atol=1e-4)


@pytest.fixture(scope="module")
def trained(small_run):
    return open_run(small_run)


def test_an_interpolation_runs_straight_from_the_start_to_the_end(trained, digits):
    """Point i of ``steps`` decodes ``(1 - t) z_start + t z_end`` at ``t = i / (steps - 1)``, z the latent means."""
    starts, ends = digits[:3], digits[3:6]
    paths = interpolate(trained.model, trained.params, starts, ends, 3)  # (3, 3, 28, 28)
    z = in_float64(trained, VAE.encode, digits[:6])[0]  # (6, L)
    np.testing.assert_allclose(encode_means(trained.model, trained.params, digits[:6]), z, **CLOSE)
    t = np.linspace(0.0, 1.0, 3)[None, :, None]  # (1, 3, 1)
    line = ((1 - t) * z[:3, None] + t * z[3:, None]).reshape(9, -1)  # (3 * 3, L)
    expected = in_float64(trained, VAE.decode, line).reshape(3, 3, 28, 28)
    np.testing.assert_allclose(paths, expected, **CLOSE)
    at_mean = reconstruct_at_mean(trained.model, trained.params, starts)[..., 0]  # (3, 28, 28)
    np.testing.assert_allclose(at_mean, expected[:, 0], **CLOSE)  # the first point: the start's own reconstruction


def test_the_manifold_has_high_z1_on_top_and_low_z0_on_the_left(trained):
    """Rows from high to low z[1], columns from low to high z[0], at the normal's quantiles 5% .. 95%."""
    grid = manifold(trained.model, trained.params, size=3)  # (3, 3, 28, 28)
    q = norm.ppf([0.05, 0.5, 0.95])
    z = np.array([[x, y] for y in q[::-1] for x in q])  # (9, 2), row by row
    np.testing.assert_allclose(grid, in_float64(trained, VAE.decode, z).reshape(3, 3, 28, 28), **CLOSE)


def test_prior_samples_decode_normal_draws_of_the_key(trained):
    key = jax.random.PRNGKey(3)
    z = jax.random.normal(key, (9, trained.model.latent_dim))
    samples = sample_prior(trained.model, trained.params, key, 9)
    np.testing.assert_array_equal(samples, decode(trained.model, trained.params, z))  # one program, one input
    np.testing.assert_allclose(samples, in_float64(trained, VAE.decode, z), **CLOSE)

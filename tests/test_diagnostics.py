"""The latent diagnostics on posteriors whose answers are known in closed form (float64, numpy)."""

import json
import math

import numpy as np
import pytest

from jaxvae import diagnostics
from jaxvae.diagnostics import activity, kl_per_dimension, latent_diagnostics, mutual_information
from jaxvae.likelihoods import kl_divergence


@pytest.mark.parametrize("seed", range(5))
def test_mutual_information_of_a_gaussian_channel(seed):
    """x ~ N(0, I_2) and q(z | x) = N(x, 0.25 I): I(x; z) = 2 * 0.5 log(1 + 1 / 0.25) = log 5. Every image with the
    same posterior: I = 0. Posteriors far apart and narrow, so that each z names its image: I = log N. Each within
    0.08 nats with 4,000 images: 5 standard errors of the estimate's one draw per image (log q(z | x) of a draw
    varies with variance L / 2 = 1 about its mean, the entropy: 1 / sqrt(4000) = 0.016)."""
    rng = np.random.default_rng(100 + seed)
    n, log_var = 4000, np.full((4000, 2), math.log(0.25))
    assert abs(mutual_information(rng.standard_normal((n, 2)), log_var, seed) - math.log(5.0)) <= 0.08
    assert abs(mutual_information(np.zeros((n, 2)), np.zeros((n, 2)), seed)) <= 0.08
    apart = np.arange(n, dtype=np.float64)[:, None] * np.ones((1, 2))
    assert abs(mutual_information(apart, np.full((n, 2), -10.0), seed) - math.log(n)) <= 0.08


def test_active_units_and_kl_per_dimension_by_hand():
    """Unit 0 carries the images (means spread with variance 4), unit 1 is collapsed (mean 0, log-variance 0, the
    prior: KL 0, activity 0), unit 2 moves a little (variance 1e-4 < 0.01). KL per unit by hand, and it sums to the
    loss's KL."""
    rng = np.random.default_rng(0)
    n = 1000
    means = np.stack([2.0 * rng.standard_normal(n), np.zeros(n), 0.01 * rng.standard_normal(n)], axis=1)
    log_vars = np.stack([np.full(n, math.log(0.1)), np.zeros(n), np.full(n, -0.5)], axis=1)
    units = activity(means)
    np.testing.assert_allclose(units, [np.var(means[:, 0], ddof=1), 0.0, np.var(means[:, 2], ddof=1)])
    kl = kl_per_dimension(means, log_vars)
    by_hand = [
        np.mean(0.5 * (0.1 + means[:, 0] ** 2 - 1.0 - math.log(0.1))),
        0.0,
        np.mean(0.5 * (math.exp(-0.5) + means[:, 2] ** 2 - 1.0 + 0.5)),
    ]
    np.testing.assert_allclose(kl, by_hand, rtol=1e-12)
    np.testing.assert_allclose(kl.sum(), np.mean(kl_divergence(means, log_vars)), rtol=1e-5)  # jax: float32
    figures = latent_diagnostics(means, log_vars)
    assert figures["active_units"] == 1 and figures["active_threshold"] == 0.01
    one = latent_diagnostics(means[:1], log_vars[:1])  # a single test image shows no spread, and stays valid JSON
    assert one["activity_per_dim"] == [0.0, 0.0, 0.0] and one["active_units"] == 0
    json.dumps(one, allow_nan=False)


def test_a_unit_at_the_threshold_is_not_active(monkeypatch):
    """Burda et al.'s unit is active when its activity *exceeds* the threshold. Tried at a threshold of 0.25, where
    the means -0.5, 0, 0.5 give an activity of exactly 0.25 in float64 (0.01 has no exact activity to try it at)."""
    monkeypatch.setattr(diagnostics, "ACTIVE_THRESHOLD", 0.25)
    means = np.array([[-0.5, -0.5001], [0.0, 0.0], [0.5, 0.5001]])  # activities 0.25 and just above it
    assert activity(means)[0] == 0.25 and latent_diagnostics(means, np.zeros_like(means))["active_units"] == 1

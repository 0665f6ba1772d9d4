"""The notebook's loss, computed by hand on arrays whose answer is known."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.likelihoods import kl_divergence, squared_error, vae_loss


@pytest.fixture(autouse=True)
def strict_ranks():
    """A (B,) vs (B, 1) broadcast in a loss must fail loudly."""
    with jax.numpy_rank_promotion("raise"):
        yield


def test_kl_is_zero_at_the_prior():
    assert float(jnp.abs(kl_divergence(jnp.zeros((4, 3)), jnp.zeros((4, 3)))).max()) == 0.0


def test_kl_by_hand():
    # per dim: -0.5 * (1 + lv - mu^2 - e^lv); mu=1, lv=0 -> 0.5; mu=0, lv=ln 2 -> -0.5*(ln 2 - 1) = 0.5 - ln(2)/2
    mean = jnp.array([[1.0, 0.0]])
    log_var = jnp.array([[0.0, math.log(2.0)]])
    np.testing.assert_allclose(kl_divergence(mean, log_var), [0.5 + 0.5 - math.log(2.0) / 2], rtol=1e-6)


def test_reconstruction_by_hand():
    x = jnp.zeros((2, 28, 28, 1))
    decoded = jnp.concatenate([jnp.full((1, 28, 28, 1), 0.5), jnp.ones((1, 28, 28, 1))])
    np.testing.assert_allclose(squared_error(x, decoded), [784 * 0.25, 784.0], rtol=1e-6)
    loss, reconstruction, kl = vae_loss(x, decoded, jnp.zeros((2, 2)), jnp.zeros((2, 2)))
    np.testing.assert_allclose([loss, reconstruction, kl], [(196 + 784) / 2, (196 + 784) / 2, 0.0], rtol=1e-6)


def test_reconstruction_weight():
    x = jnp.zeros((1, 28, 28, 1))
    decoded = jnp.full((1, 28, 28, 1), 0.5)
    mean, log_var = jnp.ones((1, 2)), jnp.zeros((1, 2))  # KL = 2 * 0.5 = 1
    loss, reconstruction, kl = vae_loss(x, decoded, mean, log_var, reconstruction_weight=0.5)
    np.testing.assert_allclose([loss, reconstruction, kl], [0.5 * 196 + 1.0, 196.0, 1.0], rtol=1e-6)

"""Shapes of the Flax VAE for several latent sizes, and the reparameterisation's use of its key."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import VAE, reparameterize


@pytest.mark.parametrize("latent_dim", [1, 2, 16])
def test_shapes(latent_dim, digits):
    model = VAE(latent_dim)
    variables = model.init(jax.random.PRNGKey(0), digits, jax.random.PRNGKey(1))
    encoded, z_mean, z_log_var, decoded = model.apply(variables, digits, jax.random.PRNGKey(2))
    assert encoded.shape == z_mean.shape == z_log_var.shape == (8, latent_dim)
    assert decoded.shape == (8, 28, 28, 1) and decoded.dtype == jnp.float32
    assert float(decoded.min()) > 0.0 and float(decoded.max()) < 1.0  # sigmoid output
    mean, log_var = model.apply(variables, digits, method=VAE.encode)
    np.testing.assert_array_equal(mean, z_mean)
    np.testing.assert_array_equal(log_var, z_log_var)
    assert model.apply(variables, jnp.zeros((3, latent_dim)), method=VAE.decode).shape == (3, 28, 28, 1)


def test_intermediate_shapes(digits):
    """The seed's sizes: 28 -> 14 -> 7 in the encoder, 7 -> 7 -> 13 -> 27 -> 29 -> 28 in the decoder."""
    model = VAE(2)
    variables = model.init(jax.random.PRNGKey(0), digits, jax.random.PRNGKey(1))
    _, state = model.apply(variables, digits[:1], jax.random.PRNGKey(2), mutable=["intermediates"])
    shapes = {k: v[0].shape for k, v in state["intermediates"].items()}
    assert shapes["encoder.2"] == (1, 14, 14, 64)
    assert shapes["encoder.6"] == (1, 7, 7, 64)
    assert shapes["encoder.7"] == (1, 3136)
    assert shapes["decoder.2"] == (1, 7, 7, 64)
    assert shapes["decoder.4"] == (1, 13, 13, 64)
    assert shapes["decoder.6"] == (1, 27, 27, 32)
    assert shapes["decoder.8"] == (1, 29, 29, 1)
    assert shapes["decoder.10"] == (1, 28, 28, 1)


def test_reparameterize_by_key():
    mean = jnp.array([[0.5, -1.0], [2.0, 0.0]])
    log_var = jnp.array([[0.0, np.log(4.0)], [np.log(0.25), 0.0]])
    a = reparameterize(jax.random.PRNGKey(7), mean, log_var)
    b = reparameterize(jax.random.PRNGKey(7), mean, log_var)
    c = reparameterize(jax.random.PRNGKey(8), mean, log_var)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    eps = jax.random.normal(jax.random.PRNGKey(7), mean.shape)
    # by hand: sigma = exp(log_var / 2) = [[1, 2], [0.5, 1]]
    np.testing.assert_allclose(a, mean + eps * jnp.array([[1.0, 2.0], [0.5, 1.0]]), rtol=1e-6)


def test_rejects_unknown_conv_impl(digits):
    with pytest.raises(ValueError, match="conv_impl"):
        VAE(2, conv_impl="cudnn").init(jax.random.PRNGKey(0), digits, jax.random.PRNGKey(1))

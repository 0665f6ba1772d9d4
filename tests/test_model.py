"""Shapes of the Flax VAE for several latent sizes, and the reparameterisation's use of its key."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae import VAE, reparameterize


@pytest.mark.parametrize("latent_dim", [1, 2, 16])
def test_shapes(latent_dim, digits):
    """Traced only (``jax.eval_shape``): the seed's sizes, 28 -> 14 -> 7 in the encoder, 7 -> 7 -> 13 -> 27 -> 29 -> 28
    in the decoder, for any latent size."""
    model, key = VAE(latent_dim), jax.random.PRNGKey(0)
    variables = jax.eval_shape(model.init, key, digits, key)
    outputs, state = jax.eval_shape(partial(model.apply, mutable=["intermediates"]), variables, digits, key)
    assert [a.shape for a in outputs] == [(8, latent_dim)] * 3 + [(8, 28, 28, 1)] and outputs[3].dtype == jnp.float32
    shapes = {k: v[0].shape for k, v in state["intermediates"].items()}
    encoder = [shapes[f"encoder.{i}"] for i in (0, 2, 4, 6, 7)]
    decoder = [shapes[f"decoder.{i}"] for i in (0, 2, 4, 6, 8, 10)]
    assert encoder == [(8, 28, 28, 32), (8, 14, 14, 64), (8, 7, 7, 64), (8, 7, 7, 64), (8, 3136)]
    assert decoder == [(8, 3136), (8, 7, 7, 64), (8, 13, 13, 64), (8, 27, 27, 32), (8, 29, 29, 1), (8, 28, 28, 1)]
    decoded = jax.eval_shape(partial(model.apply, method=VAE.decode), variables, jnp.zeros((3, latent_dim)))
    assert decoded.shape == (3, 28, 28, 1)


def test_encode_gives_the_heads_and_the_output_is_a_sigmoid(digits):
    model = VAE(2)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), digits, jax.random.PRNGKey(1))
    _, z_mean, z_log_var, decoded = jax.jit(model.apply)(variables, digits, jax.random.PRNGKey(2))
    assert float(decoded.min()) > 0.0 and float(decoded.max()) < 1.0  # sigmoid output
    mean, log_var = jax.jit(partial(model.apply, method=VAE.encode))(variables, digits)
    np.testing.assert_array_equal(mean, z_mean)
    np.testing.assert_array_equal(log_var, z_log_var)


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


@pytest.mark.parametrize("impl", ["cudnn", "auto"])
def test_takes_a_concrete_conv_impl(digits, impl):
    """The backend's choice (``auto``) is made outside the model, by ``jaxvae.devices.resolve_conv_impl``."""
    with pytest.raises(ValueError, match="conv_impl must be one of"):
        jax.eval_shape(VAE(2, conv_impl=impl).init, jax.random.PRNGKey(0), digits, jax.random.PRNGKey(1))

"""The micro-batched gradient is the whole batch's gradient, and the batched evaluation the whole split's metrics,
however the batches are grouped. In float64: the groupings then differ by the order of float64 sums (~1e-16
relative), so 1e-10 holds on any machine, while a wrong scale (a sum for a mean, a dropped micro-batch, a padded
row counted) is off by >= 1 %."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.likelihoods import kl_divergence, squared_error
from jaxvae.model import VAE, shift_and_scale
from jaxvae.train_step import batch_gradients, init_state, make_evaluate, make_loss_fn, make_optimizer

BATCH, LATENT = 32, 2
EVAL_IMAGES, RECONSTRUCTION_WEIGHT = 37, 0.5


@pytest.fixture
def model_and_params():
    model = VAE(LATENT)
    params = init_state(model, make_optimizer(1e-3), jax.random.PRNGKey(0)).params
    with jax.enable_x64(True):
        yield model, jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)  # the test: in x64


@pytest.mark.parametrize(
    "batch, micro_batch, concurrent, objective, samples", [(BATCH, 16, 2, "elbo", 1), (48, 16, 2, "iwae", 3)]
)
def test_micro_batches_give_the_batch_gradient(model_and_params, batch, micro_batch, concurrent, objective, samples):
    """The CPU's defaults (micro-batches of 16, two side by side) at batch 32; at batch 48 the 3 micro-batches do not
    split in twos, so they run one at a time, here of the importance-weighted bound with 3 draws per image (each
    image's draws stay together). The same gradient either way."""
    model, params = model_and_params
    rng = np.random.default_rng(0)
    x, eps = rng.random((batch, 28, 28, 1)), rng.standard_normal((batch, samples, LATENT))
    loss_fn = make_loss_fn(model, 1.0, objective=objective)
    split = lambda m: partial(batch_gradients, loss_fn, x=x, eps=eps, micro_batch=m, concurrent=concurrent)  # noqa: E731
    (whole, whole_metrics), (parts, metrics) = (jax.jit(split(m))(params) for m in (0, micro_batch))
    np.testing.assert_allclose(metrics, whole_metrics, rtol=1e-10)
    assert ["scan" in str(jax.make_jaxpr(split(m))(params)) for m in (0, micro_batch)] == [False, True]  # as asked
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(parts), jax.tree_util.tree_leaves(whole)):
        assert np.linalg.norm(a - b) <= 1e-10 * np.linalg.norm(b), jax.tree_util.keystr(path)


@partial(jax.jit, static_argnums=0)  # jitted: op by op, each float64 convolution compiles alone (~5 s more)
def _split_metrics(model, params, x, key):
    """By hand: the whole split in one call, its noise ``normal(key, (N, latent))``."""
    z_mean, z_log_var = model.apply({"params": params}, x, method=VAE.encode)
    eps = jax.random.normal(key, z_mean.shape, z_mean.dtype)
    decoded = model.apply({"params": params}, shift_and_scale(eps, z_mean, z_log_var), method=VAE.decode)
    rec, kl = jnp.mean(squared_error(x, decoded)), jnp.mean(kl_divergence(z_mean, z_log_var))
    return jnp.stack([RECONSTRUCTION_WEIGHT * rec + kl, rec, kl])


@pytest.mark.parametrize("batch, concurrent", [(5, 3)])
def test_evaluation_is_the_split_mean_however_batched(model_and_params, batch, concurrent):
    """37 images in groups of 3 batches of 5: 8 rows of padding, which must not count. The ELBO's terms by hand;
    the importance-weighted objective's (3 draws per image, ``normal(key, (N, 3, latent))``) as the training loss
    computes them for the whole split at once."""
    model, params = model_and_params
    x = np.random.default_rng(1).random((EVAL_IMAGES, 28, 28, 1))
    key = jax.random.PRNGKey(3)
    evaluate = jax.jit(make_evaluate(model, RECONSTRUCTION_WEIGHT, batch, concurrent))
    np.testing.assert_allclose(evaluate(params, x, key), _split_metrics(model, params, x, key), rtol=1e-10)
    evaluate = jax.jit(make_evaluate(model, RECONSTRUCTION_WEIGHT, batch, concurrent, objective="iwae", samples=3))
    eps = jax.random.normal(key, (EVAL_IMAGES, 3, LATENT), jnp.float64)
    whole = jax.jit(make_loss_fn(model, RECONSTRUCTION_WEIGHT, objective="iwae"))(params, x, eps)[1]
    np.testing.assert_allclose(evaluate(params, x, key), whole, rtol=1e-10)

"""The micro-batched gradient is the whole batch's gradient, and the batched evaluation the whole split's
metrics, however the batches are grouped."""

import jax
import numpy as np
import pytest

from jaxvae.likelihoods import kl_divergence, squared_error
from jaxvae.model import VAE, shift_and_scale
from jaxvae.train_step import batch_gradients, init_state, make_evaluate, make_loss_fn, make_optimizer

BATCH, LATENT = 32, 2


@pytest.fixture(scope="module")
def setup():
    model = VAE(LATENT, conv_impl="matmul")
    params = init_state(model, make_optimizer(1e-3), jax.random.PRNGKey(0)).params
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 28, 28, 1), np.float32)
    eps = rng.standard_normal((BATCH, LATENT)).astype(np.float32)
    return make_loss_fn(model, 1.0), params, x, eps


EVAL_IMAGES, RECONSTRUCTION_WEIGHT = 37, 0.5


@pytest.mark.parametrize("micro_batch, concurrent", [(8, 1), (8, 2), (8, 4), (16, 2), (8, 3)])
def test_micro_batches_give_the_batch_gradient(setup, micro_batch, concurrent):
    """(8, 3): 4 micro-batches do not split in threes, so they run one at a time; still the same gradient.

    Tolerance: the same float32 sums in another order; 1e-5 relative to each tensor's norm is ~100x float32's
    rounding of a 32-term mean, and a wrong scale (a sum instead of a mean, a dropped micro-batch) is >= 1/4.
    """
    loss_fn, params, x, eps = setup
    whole, whole_metrics = jax.jit(lambda p: batch_gradients(loss_fn, p, x, eps, 0))(params)
    parts, metrics = jax.jit(lambda p: batch_gradients(loss_fn, p, x, eps, micro_batch, concurrent))(params)
    np.testing.assert_allclose(metrics, whole_metrics, rtol=1e-5)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(parts), jax.tree_util.tree_leaves(whole)):
        assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b), jax.tree_util.keystr(path)


def _split_metrics(model, params, x, key):
    """By hand: the whole split in one call, its noise ``normal(key, (N, latent))``."""
    z_mean, z_log_var = model.apply({"params": params}, x, method=VAE.encode)
    eps = jax.random.normal(key, z_mean.shape)
    decoded = model.apply({"params": params}, shift_and_scale(eps, z_mean, z_log_var), method=VAE.decode)
    rec, kl = float(np.mean(squared_error(x, decoded))), float(np.mean(kl_divergence(z_mean, z_log_var)))
    return [RECONSTRUCTION_WEIGHT * rec + kl, rec, kl]


@pytest.mark.parametrize("batch, concurrent", [(16, 2), (500, 1), (5, 3), (37, 1)])
def test_evaluation_is_the_split_mean_however_batched(batch, concurrent):
    """37 images: (16, 2) pads 27 rows, (5, 3) pads 8, (500, 1) pads 463; padding must not count.

    Tolerance: the same float32 sums in another order, ~1e-7 relative; 1e-5 is 100x that, and a padded row
    counted (its reconstruction error is the decoded image's ~50) or a mean over the padded count is >= 2 %.
    """
    model = VAE(LATENT, conv_impl="matmul")
    params = init_state(model, make_optimizer(1e-3), jax.random.PRNGKey(0)).params
    x = np.random.default_rng(1).random((EVAL_IMAGES, 28, 28, 1), np.float32)
    key = jax.random.PRNGKey(3)
    evaluate = jax.jit(make_evaluate(model, RECONSTRUCTION_WEIGHT, batch, concurrent))
    np.testing.assert_allclose(evaluate(params, x, key), _split_metrics(model, params, x, key), rtol=1e-5)

"""``--binarize``: the threshold, the Bernoulli draws and their keys, and what the data a run sees looks like."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.data import binarize
from jaxvae.model import VAE
from jaxvae.run.config import RunConfig
from jaxvae.run.training import prepare_data
from jaxvae.train_step import TrainState, bernoulli_sample, init_state, make_loss_fn, make_optimizer, make_train_step


def test_threshold_by_hand():
    images = np.array([0.0, 0.5, 0.5000001, 1.0], np.float32)
    np.testing.assert_array_equal(binarize.threshold(images), [0.0, 0.0, 1.0, 1.0])


def test_sample_is_binary_with_the_pixel_as_probability():
    """20,000 draws of pixels 0, 0.3 and 1: exactly 0 and 1 at the ends, 0.3 within 5 standard errors (0.016)."""
    p = jnp.broadcast_to(jnp.array([0.0, 0.3, 1.0], jnp.float32), (20000, 3))
    draws = np.asarray(bernoulli_sample(jax.random.PRNGKey(0), p))
    assert set(np.unique(draws)) <= {0.0, 1.0}
    assert draws[:, 0].max() == 0.0 and draws[:, 2].min() == 1.0
    assert abs(draws[:, 1].mean() - 0.3) <= 5 * np.sqrt(0.3 * 0.7 / 20000)
    np.testing.assert_array_equal(draws, bernoulli_sample(jax.random.PRNGKey(0), p))


def test_the_step_trains_on_its_own_draw(mnist5k):
    """The sampled step's loss is the loss of the batch drawn with ``fold_in(step key, 1)``, the documented stream (so
    that a run draws what it drew before); the next step draws another. In float64, where the step and the loss
    computed apart differ by float64 rounding only (1e-10)."""
    model, optimizer = VAE(2), make_optimizer(1e-3)
    state = init_state(model, optimizer, jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(5)
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), state.params)
        batch = jnp.asarray(mnist5k.train.images[:16], jnp.float64)
        step = jax.jit(make_train_step(model, optimizer, 1.0, likelihood="bernoulli", binarize="sample"))
        loss_fn = jax.jit(make_loss_fn(model, 1.0, "bernoulli"))
        draws = []
        for s in (0, 1):
            _, metrics = step(TrainState(params, optimizer.init(params), jnp.int32(s)), batch, key)
            step_key = jax.random.fold_in(key, s)
            draws.append(bernoulli_sample(jax.random.fold_in(step_key, 1), batch))
            eps = jax.random.normal(step_key, (16, 2), jnp.float64)
            np.testing.assert_allclose(metrics, loss_fn(params, draws[-1], eps)[1], rtol=1e-10)
        assert np.mean(np.abs(draws[1] - draws[0])) > 0.01  # a fresh draw per step (so per epoch for each image)


def test_what_a_run_sees():
    base = RunConfig(train_examples=64, test_examples=32)
    plain = prepare_data(base)
    thresholded = prepare_data(dataclasses.replace(base, binarize="threshold"))
    np.testing.assert_array_equal(thresholded.train.images, binarize.threshold(plain.train.images))
    np.testing.assert_array_equal(thresholded.test.images, binarize.threshold(plain.test.images))
    sampled = prepare_data(dataclasses.replace(base, binarize="sample"))
    np.testing.assert_array_equal(sampled.train.images, plain.train.images)  # drawn step by step on the device
    assert set(np.unique(sampled.test.images)) == {0.0, 1.0}  # one fixed draw, the same at every call
    documented = bernoulli_sample(jax.random.fold_in(jax.random.PRNGKey(base.seed), 2), plain.test.images)
    np.testing.assert_array_equal(sampled.test.images, documented)  # of fold_in(PRNGKey(--seed), 2)
    np.testing.assert_array_equal(
        sampled.test.images, prepare_data(dataclasses.replace(base, binarize="sample")).test.images
    )
    other_seed = prepare_data(dataclasses.replace(base, binarize="sample", seed=1)).test.images
    assert not np.array_equal(other_seed, sampled.test.images)
    pinned = prepare_data(dataclasses.replace(base, binarize="sample", seed=1, binarize_seed=base.seed)).test.images
    np.testing.assert_array_equal(pinned, sampled.test.images)  # --binarize-seed, not --seed, draws the test split

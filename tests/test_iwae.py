"""The IWAE estimator and the importance-weighted training objective on a linear-Gaussian model whose log p(x) and
ELBO have closed forms, the objective's one-draw step against the ELBO's, and the decoders' log-likelihoods against
independent formulas.

Model: z ~ N(0, I_L), x | z ~ N(W z + b, s2 I_D), so p(x) = N(b, W W^T + s2 I). W has orthogonal columns, so the
exact posterior N(S W^T (x - b) / s2, S) with S = (I + W^T W / s2)^-1 is diagonal: a Gaussian q can equal it.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.data import load_mnist5k
from jaxvae.iwae import estimate_log_px, iwae_log_px
from jaxvae.likelihoods import LIKELIHOODS, elbo_from_terms, gaussian_constant, objective_loss, squared_error
from jaxvae.model import VAE
from jaxvae.train_step import init_state, make_optimizer, make_train_step

gaussian_log_likelihood = LIKELIHOODS["gaussian"].log_prob
bernoulli_log_likelihood = LIKELIHOODS["bernoulli"].log_prob

D, L, S2 = 6, 2, 0.3


def _model(seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(D, L)))
    w = q * rng.uniform(0.5, 2.0, size=L)  # (D, L), orthogonal columns
    b = rng.normal(size=D)
    cov = w @ w.T + S2 * np.eye(D)
    x = rng.multivariate_normal(b, cov, size=4)  # (4, D)
    return w, b, cov, x


def _exact_log_px(x, b, cov):
    d = x - b
    return -0.5 * (
        D * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1] + np.einsum("bi,ij,bj->b", d, np.linalg.inv(cov), d)
    )


def _posterior(x, w, b):
    s = np.linalg.inv(np.eye(L) + w.T @ w / S2)
    return (x - b) @ w @ s.T / S2, np.log(np.diag(s))  # (B, L), (L,)


def _functions(w, b, shift, dtype):
    def encode(x):
        mean, log_var = _posterior(np.asarray(x, np.float64), w, b)
        mean = mean + shift * np.exp(log_var / 2)  # shift in posterior standard deviations
        return jnp.asarray(mean, dtype), jnp.asarray(np.broadcast_to(log_var, mean.shape), dtype)

    def log_px_given_z(x, z):
        mu = z @ jnp.asarray(w.T, dtype) + jnp.asarray(b, dtype)
        return -0.5 * jnp.sum(math.log(2 * math.pi * S2) + (x - mu) ** 2 / S2, axis=-1)

    return encode, log_px_given_z


def _elbo(x, w, b, shift):
    """E_q[log p(x|z)] + E_q[log p(z)] + H(q) for q = N(posterior mean + shift sd, posterior variances)."""
    mean, log_var = _posterior(x, w, b)
    mean, var = mean + shift * np.exp(log_var / 2), np.exp(log_var)
    residual = np.sum((x - mean @ w.T - b) ** 2, axis=-1) + np.trace(w @ np.diag(var) @ w.T)
    expected_lik = -0.5 * (D * math.log(2 * math.pi * S2) + residual / S2)
    expected_prior = -0.5 * (L * math.log(2 * math.pi) + np.sum(mean**2, axis=-1) + var.sum())
    entropy = 0.5 * np.sum(math.log(2 * math.pi) + 1 + log_var)
    return expected_lik + expected_prior + entropy


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("samples, chunk", [(1, 1), (7, 3), (100, 64)])
def test_exact_posterior_gives_log_px_at_every_k(seed, samples, chunk):
    """Every importance weight equals p(x): float64 to 1e-9 (rounding of ~20 terms of size <= 50), float32 to
    1e-4 (the same terms at float32's 6e-8)."""
    w, b, cov, x = _model(seed)
    want = _exact_log_px(x, b, cov)
    with jax.enable_x64(True):
        got = iwae_log_px(*_functions(w, b, 0.0, jnp.float64), jnp.asarray(x), jax.random.PRNGKey(seed), samples, chunk)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    got = iwae_log_px(
        *_functions(w, b, 0.0, jnp.float32), jnp.asarray(x, jnp.float32), jax.random.PRNGKey(seed), samples, chunk
    )
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_batch_i_of_the_estimate_draws_from_fold_in_key_i():
    """``estimate_log_px`` with a stand-in estimator that returns its own draws: batch i's come from ``fold_in(key,
    i)`` (one image in two batches gets independent estimates), the last batch padded and cut back to the images."""
    key = jax.random.PRNGKey(3)
    draws = lambda params, images, k: jax.random.normal(k, (len(images),))  # noqa: E731
    got = estimate_log_px(draws, None, np.zeros((5, 28, 28, 1), np.float32), key, batch=3)
    want = np.concatenate([jax.random.normal(jax.random.fold_in(key, i), (3,)) for i in range(2)])[:5]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(5))
def test_k1_is_the_elbo_and_the_bound_rises_to_log_px(seed):
    """q off the posterior by one posterior standard deviation per latent dimension. Over 4,000 replicates of each
    x: the K = 1 mean is the closed-form ELBO within 5 standard errors, the means rise with K, and the mean of
    100 K = 5000 estimates is within 0.02 nats of log p(x) (one estimate's spread is ~0.04 here; the mean's ~0.004,
    its bias ~6e-4)."""
    w, b, cov, x = _model(seed)
    replicas = np.repeat(x, 4000, axis=0)  # (16000, D)
    with jax.enable_x64(True):
        fns = _functions(w, b, 1.0, jnp.float64)
        means, errors = [], []
        for samples in (1, 10, 100):
            est = np.asarray(iwae_log_px(*fns, jnp.asarray(replicas), jax.random.PRNGKey(seed), samples, 50)).reshape(
                4, -1
            )
            means.append(est.mean(axis=1))
            errors.append(est.std(axis=1, ddof=1) / math.sqrt(est.shape[1]))
        large = np.asarray(
            iwae_log_px(*fns, jnp.asarray(np.repeat(x, 100, axis=0)), jax.random.PRNGKey(seed + 100), 5000, 500)
        )
        large = large.reshape(4, -1).mean(axis=1)
    exact = _exact_log_px(x, b, cov)
    assert np.all(np.abs(means[0] - _elbo(x, w, b, 1.0)) <= 5 * errors[0])
    assert np.all(means[0] < means[1]) and np.all(means[1] < means[2]) and np.all(means[2] < exact + 5 * errors[2])
    assert np.all(np.abs(large - exact) <= 0.02)


def _burda_bound(x, z, mean, log_var, w, b):
    """Burda et al.'s k-sample estimate ``log (1/k) sum_j p(x, z_j) / q(z_j | x)`` in numpy float64, written from the
    densities: ``x`` (R, D), ``z`` (R, k, L), ``mean`` (R, L), ``log_var`` (L,) -> (R,)."""
    log_lik = -0.5 * np.sum(np.log(2 * np.pi * S2) + (x[:, None] - z @ w.T - b) ** 2 / S2, axis=-1)
    log_prior = -0.5 * np.sum(np.log(2 * np.pi) + z**2, axis=-1)
    log_q = -0.5 * np.sum(np.log(2 * np.pi) + log_var + (z - mean[:, None]) ** 2 / np.exp(log_var), axis=-1)
    log_w = log_lik + log_prior - log_q  # (R, k)
    top = log_w.max(axis=1)
    return top + np.log(np.mean(np.exp(log_w - top[:, None]), axis=1))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("shift", [0.0, 1.0])
def test_iwae_objective_has_the_bounds_expectation(seed, shift):
    """jaxvae's objective, ``-loss`` plus the Gaussian likelihood's constant, on the linear-Gaussian model (decoder
    ``W z + b``, loss weight 1 / (2 s2)), one image per row, 4,000 rows per x, in float64: for k = 1, 5, 50 its mean
    is Burda's estimate's mean (numpy, the same draws) within 5 standard errors of their paired difference (which has
    mean 0: its KL part is in closed form); it rises with k; for k = 1 it is the closed-form ELBO within 5 standard
    errors; with q the exact posterior (shift 0), Burda's estimate is log p(x) at every draw and the objective's
    mean is within 5 standard errors of it."""
    w, b, cov, x = _model(seed)
    weight = 1.0 / (2.0 * S2)
    mean, log_var = _posterior(x, w, b)
    mean = mean + shift * np.exp(log_var / 2)  # (4, L)
    rows = np.repeat(x, 4000, axis=0)  # (16000, D)
    row_means = np.repeat(mean, 4000, axis=0)
    exact = _exact_log_px(x, b, cov)

    def objective(x, eps, mean):  # one image's k draws -> jaxvae's estimate of the bound (its likelihood's constant)
        z = mean + eps * jnp.exp(log_var / 2)  # (k, L)
        posterior = (mean[None], log_var[None])
        terms = objective_loss(x[None], z @ w.T + b, z[None], eps[None], *posterior, weight, "gaussian", "iwae")
        return -terms[0] + gaussian_constant(D, weight)

    with jax.enable_x64(True):
        means = []
        for k in (1, 5, 50):
            eps = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (len(rows), k, L), jnp.float64))
            ours = np.asarray(jax.vmap(objective)(jnp.asarray(rows), jnp.asarray(eps), jnp.asarray(row_means)))
            z = row_means[:, None] + eps * np.exp(log_var / 2)
            theirs = _burda_bound(rows, z, row_means, log_var, w, b)
            difference = (ours - theirs).reshape(4, -1)
            error = difference.std(axis=1, ddof=1) / math.sqrt(difference.shape[1])
            assert np.all(np.abs(difference.mean(axis=1)) <= 5 * error), k
            ours = ours.reshape(4, -1)
            means.append(ours.mean(axis=1))
            spread = ours.std(axis=1, ddof=1) / math.sqrt(ours.shape[1])
            if k == 1:
                assert np.all(np.abs(means[0] - _elbo(x, w, b, shift)) <= 5 * spread)
            if shift == 0.0:
                np.testing.assert_allclose(theirs.reshape(4, -1), np.repeat(exact[:, None], 4000, axis=1), atol=1e-9)
                assert np.all(np.abs(means[-1] - exact) <= 5 * spread)
    if shift:
        assert np.all(means[0] < means[1]) and np.all(means[1] < means[2]) and np.all(means[2] < exact)


@pytest.mark.long  # ~20-35 s: two float64 training steps compiled; the k = 1 bound by hand: the tests above
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_one_draw_iwae_step_is_the_elbo_step(likelihood):
    """``--objective iwae --iw-train-samples 1`` trains as the ELBO does: three Adam steps of each from the same
    state, batch and keys, in float64 (so that the ~1e-16 rounding of another order of sums cannot grow into a
    different Adam step), agree to 1e-12 relative in every parameter and every loss term. (In float32 the Gaussian
    steps are bitwise equal on the CPU measured, the Bernoulli ones within ~1e-5: XLA fuses them differently.)"""
    model, optimizer = VAE(4), make_optimizer(1e-3)
    x = load_mnist5k().train.images[:16]
    x = (x > 0.5).astype(np.float64) if likelihood == "bernoulli" else x.astype(np.float64)
    with jax.enable_x64(True):
        start = jax.tree_util.tree_map(
            lambda a: jnp.asarray(a, jnp.float64 if a.dtype == jnp.float32 else a.dtype),
            init_state(model, optimizer, jax.random.PRNGKey(0)),
        )
        results = []
        for objective in ("elbo", "iwae"):
            step = jax.jit(make_train_step(model, optimizer, 1.0, likelihood=likelihood, objective=objective))
            state, history = start, []
            for _ in range(3):
                state, metrics = step(state, jnp.asarray(x), jax.random.PRNGKey(1))
                history.append(np.asarray(metrics))
            results.append((jax.tree_util.tree_leaves(state.params), np.array(history)))
    (elbo_params, elbo_metrics), (iwae_params, iwae_metrics) = results
    np.testing.assert_allclose(iwae_metrics, elbo_metrics, rtol=1e-12)
    for a, b in zip(iwae_params, elbo_params):
        assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b))


def test_gaussian_log_likelihood_is_the_normal_density():
    """Variance 1 / (2 w) per pixel, against jax.scipy's normal log-density summed in float64."""
    rng = np.random.default_rng(0)
    x, decoded = rng.random((3, 28, 28, 1)), rng.random((3, 28, 28, 1))
    for weight in (1.0, 0.25):
        with jax.enable_x64(True):
            want = jax.scipy.stats.norm.logpdf(x, decoded, math.sqrt(1 / (2 * weight))).reshape(3, -1).sum(-1)
            got = gaussian_log_likelihood(jnp.asarray(x), jnp.asarray(decoded), weight)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            # the training loss leaves out exactly the constant; the ELBO from the loss's terms adds it back
            np.testing.assert_allclose(
                got,
                -weight * squared_error(jnp.asarray(x), jnp.asarray(decoded)) + gaussian_constant(784, weight),
                rtol=1e-12,
            )
            rec = float(squared_error(jnp.asarray(x), jnp.asarray(decoded))[0])
            elbo = elbo_from_terms(rec, 0.25, "gaussian", weight)
            assert abs(elbo - (float(got[0]) - 0.25)) <= 1e-9 * abs(elbo)


def test_bernoulli_log_likelihood_by_hand():
    """x log p + (1 - x) log(1 - p), p = sigmoid(logit), in float64; and finite where p rounds to 0 or 1."""
    rng = np.random.default_rng(1)
    logits, x = rng.normal(0, 4, (3, 28, 28, 1)), (rng.random((3, 28, 28, 1)) > 0.5).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    want = (x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(3, -1).sum(-1)
    with jax.enable_x64(True):
        np.testing.assert_allclose(bernoulli_log_likelihood(jnp.asarray(x), jnp.asarray(logits)), want, rtol=1e-12)
    extreme = bernoulli_log_likelihood(
        jnp.ones((1, 4), jnp.float32), jnp.array([[-200.0, 200.0, 0.0, 90.0]], jnp.float32)
    )
    np.testing.assert_allclose(extreme, [-(200.0 + math.log(2.0))], rtol=1e-6)

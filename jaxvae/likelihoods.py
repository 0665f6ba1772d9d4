"""The VAE's loss terms as pure functions: the decoder's likelihood, the KL term, the prior's density, and
the training objectives they make (``OBJECTIVES``: the ELBO, and Burda et al.'s importance-weighted bound).

A likelihood is one object that owns what depends on the decoder's distribution: the decoder output its loss takes
(images or logits), the per-example reconstruction term, ``log p(x | z)`` for the IWAE estimate (with the constant
the loss leaves out) and, in words, what that is the log-probability of. ``LIKELIHOODS`` registers them by the name
``--likelihood`` takes: ``gaussian`` (the seed's summed squared error, the negative log-density of N(decoded, 1 / (2
weight)) per pixel up to a constant) and ``bernoulli`` (the summed binary cross-entropy of the logits).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

LOG_2PI = math.log(2.0 * math.pi)
OBJECTIVES = ("elbo", "iwae")


def log_standard_normal(z):
    """``log N(z; 0, I)`` summed over the last axis: ``(..., L) -> (...)``."""
    return -0.5 * jnp.sum(LOG_2PI + z**2, axis=-1)


def log_posterior(eps, z_log_var):
    """``log q(z | x) = log N(z; mean, exp(log_var))`` of ``z = mean + exp(log_var / 2) * eps``, from the noise ``eps``
    ``(..., L)`` that drew it and ``z_log_var`` broadcastable to it: ``log N(eps; 0, I) - sum(log_var) / 2``, ``(...)``.
    The same number and gradient as the density's own form, without its ``z - mean``, whose float32 rounding is
    large against a small sigma."""
    return log_standard_normal(eps) - 0.5 * jnp.sum(z_log_var, axis=-1)


def kl_divergence(z_mean, z_log_var):
    """Per-example KL(N(mu, sigma^2) || N(0, I)), summed over the latent axis: ``(B, L) -> (B,)``."""
    return -0.5 * jnp.sum(1.0 + z_log_var - z_mean**2 - jnp.exp(z_log_var), axis=-1)


def squared_error(x, decoded):
    """Per-example sum of squared pixel errors: ``(B, ...) -> (B,)``."""
    diff = (decoded - x).reshape(x.shape[0], -1)  # (B, pixels)
    return jnp.sum(diff**2, axis=-1)


def bernoulli_nll(x, logits):
    """Per-example binary cross-entropy of targets ``x`` in [0, 1] under ``sigmoid(logits)``, summed over pixels:
    ``(B, ...) -> (B,)``. Computed from the logits, finite for any logit."""
    per_pixel = optax.sigmoid_binary_cross_entropy(logits, x).reshape(x.shape[0], -1)  # (B, pixels)
    return jnp.sum(per_pixel, axis=-1)


class Likelihood:
    """A decoder distribution p(x | z). Subclasses set ``name`` and ``decoder_output`` and implement the rest."""

    name: str
    decoder_output: str  # the ``VAE`` method whose output the loss takes: "decode" or "decode_logits"

    def reconstruction_error(self, x, output):
        """The loss's per-example reconstruction term ``(B,)`` of ``output`` (what ``decoder_output`` gives)."""
        raise NotImplementedError

    def log_likelihood(self, reconstruction, reconstruction_weight: float, pixels: int):
        """``log p(x | z)`` from the reconstruction term (per example or its mean), in nats."""
        raise NotImplementedError

    def describe(self, reconstruction_weight: float) -> str:
        """The distribution whose log-probability ``log_likelihood`` is, in words."""
        raise NotImplementedError

    def check_weight(self, reconstruction_weight: float) -> None:
        """Raise ``ValueError`` if the loss with this weight implies no distribution to evaluate."""

    def log_prob(self, x, output, reconstruction_weight: float = 1.0):
        """``log p(x | z)`` per example ``(B,)``."""
        pixels = math.prod(x.shape[1:])
        return self.log_likelihood(self.reconstruction_error(x, output), reconstruction_weight, pixels)


class Gaussian(Likelihood):
    """The seed's loss: ``weight * summed squared error`` is ``-log N(x; decoded, 1 / (2 weight))`` up to its
    constant ``-(D / 2) log(pi / weight)`` for D pixels (variance 0.5 per pixel for the seed's weight 1)."""

    name = "gaussian"
    decoder_output = "decode"

    def reconstruction_error(self, x, output):
        return squared_error(x, output)

    def log_likelihood(self, reconstruction, reconstruction_weight: float, pixels: int):
        return -reconstruction_weight * reconstruction + gaussian_constant(pixels, reconstruction_weight)

    def check_weight(self, reconstruction_weight: float) -> None:
        if reconstruction_weight <= 0:
            raise ValueError("a Gaussian loss with --reconstruction-weight 0 implies no likelihood to estimate")

    def describe(self, reconstruction_weight: float) -> str:
        variance = 1.0 / (2.0 * reconstruction_weight)
        return (
            f"Gaussian decoder with the fixed variance {variance:g} per pixel that the loss "
            f"{reconstruction_weight:g} * "
            "summed squared error implies: a log-density over [0, 1]^784 in nats (it can exceed 0 and is not "
            "comparable with binary-MNIST NLLs)"
        )


class Bernoulli(Likelihood):
    """Independent Bernoulli pixels with probabilities ``sigmoid(logits)``; the weight scales training only."""

    name = "bernoulli"
    decoder_output = "decode_logits"

    def reconstruction_error(self, x, output):
        return bernoulli_nll(x, output)

    def log_likelihood(self, reconstruction, reconstruction_weight: float, pixels: int):
        return -reconstruction

    def describe(self, reconstruction_weight: float) -> str:
        return (
            "Bernoulli decoder: log-probability of the (binary) test images under independent pixels with "
            "p = sigmoid(logits)"
        )


def gaussian_constant(pixels: int, reconstruction_weight: float) -> float:
    """``-(D / 2) * log(pi / weight)``: the part of the Gaussian decoder's log p(x | z) that the loss leaves out
    (in float64 for a number; in float32 for an array, such as an ensemble's per-member weights)."""
    if isinstance(reconstruction_weight, jax.Array):
        return -0.5 * pixels * (math.log(math.pi) - jnp.log(reconstruction_weight))
    return -0.5 * pixels * math.log(math.pi / reconstruction_weight)


LIKELIHOODS: dict[str, Likelihood] = {likelihood.name: likelihood for likelihood in (Gaussian(), Bernoulli())}


def get_likelihood(likelihood: str | Likelihood) -> Likelihood:
    """The registered likelihood of this name (a ``Likelihood`` is returned as it is)."""
    if isinstance(likelihood, Likelihood):
        return likelihood
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {tuple(LIKELIHOODS)}, got {likelihood!r}")
    return LIKELIHOODS[likelihood]


def reconstruction_error(x, output, likelihood: str | Likelihood = "gaussian"):
    """Per-example reconstruction term ``(B,)`` of ``likelihood``: summed squared error of decoded images
    (gaussian) or summed binary cross-entropy of logits (bernoulli)."""
    return get_likelihood(likelihood).reconstruction_error(x, output)


def vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight=1.0, likelihood: str | Likelihood = "gaussian"):
    """Return ``(loss, reconstruction, kl)`` as batch means; ``loss = weight * reconstruction + kl``.

    ``decoded`` is what the decoder gives for ``likelihood``: images in (0, 1) for ``"gaussian"`` (the seed's
    loss), logits for ``"bernoulli"``.
    """
    reconstruction = jnp.mean(reconstruction_error(x, decoded, likelihood))
    kl = jnp.mean(kl_divergence(z_mean, z_log_var))
    return reconstruction_weight * reconstruction + kl, reconstruction, kl


def importance_weighting_gain(log_weights):
    """``log mean_j exp(w_j) - mean_j w_j`` over the last axis (k draws): ``(..., k) -> (...)``. What the k-sample
    importance-weighted bound adds to the mean of the k draws' ELBOs: >= 0 (Jensen), exactly 0 for one draw, and
    unchanged when every log weight moves by one constant (so a likelihood's constant may be left out)."""
    k = log_weights.shape[-1]
    return jax.nn.logsumexp(log_weights, axis=-1) - math.log(k) - jnp.mean(log_weights, axis=-1)


def objective_loss(
    x, output, z, eps, z_mean, z_log_var, reconstruction_weight=1.0, likelihood="gaussian", objective: str = "elbo"
):
    """``(loss, reconstruction, kl)`` as batch means, for k draws of z per image.

    ``x`` ``(B, ...)``; ``z`` ``(B, k, L)`` drawn with the standard-normal ``eps`` ``(B, k, L)``; ``output``
    ``(B * k, ...)``, the decoder's for each draw, an image's k draws together. ``"elbo"``: ``vae_loss`` over every
    draw, the mean of the k draws' ELBOs with the KL in closed form (for k = 1 the seed's loss, op for op).
    ``"iwae"``: that loss less the mean ``importance_weighting_gain`` of the log weights ``-weight * reconstruction
    + log p(z) - log q(z | x)``: the negative k-sample bound ``log mean_j exp(w_j)`` of Burda et al. (2016) with the
    same expectation, its KL part in closed form; for k = 1 the gain is 0 and the loss and its gradient are the
    ELBO's. For the Gaussian decoder the log weights leave out the likelihood's constant, as the loss does; for the
    Bernoulli decoder a weight other than 1 tempers the likelihood.
    """
    check_objective(objective)
    repeated = jnp.repeat(x, z.shape[1], axis=0)  # (B * k, ...): image b for each of its k draws
    loss, reconstruction, kl = vae_loss(repeated, output, z_mean, z_log_var, reconstruction_weight, likelihood)
    if objective == "iwae":
        per_draw = reconstruction_error(repeated, output, likelihood).reshape(z.shape[:2])  # (B, k)
        log_weights = log_importance_weights(per_draw, z, eps, z_log_var, reconstruction_weight)
        loss = loss - jnp.mean(importance_weighting_gain(log_weights))
    return loss, reconstruction, kl


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")


def log_importance_weights(reconstruction, z, eps, z_log_var, reconstruction_weight=1.0):
    """The loss's log weights ``-weight * reconstruction + log p(z) - log q(z | x)`` of k draws per image: the
    reconstruction terms ``(B, k)``, ``z`` and the noise ``eps`` that drew it ``(B, k, L)``, the posterior's
    ``z_log_var`` ``(B, L)`` -> ``(B, k)``."""
    log_q = log_posterior(eps, z_log_var[:, None])  # (B, k)
    return -reconstruction_weight * reconstruction + log_standard_normal(z) - log_q


def elbo_from_terms(
    reconstruction: float, kl: float, likelihood: str | Likelihood, reconstruction_weight: float, pixels: int = 784
) -> float:
    """The ELBO in nats per image from the loss's mean terms (one z per image): ``log p(x | z) - KL``."""
    return get_likelihood(likelihood).log_likelihood(reconstruction, reconstruction_weight, pixels) - kl

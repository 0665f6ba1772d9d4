"""The original notebook's loss (``train_vae_v1`` semantics), a Bernoulli alternative, the importance-weighted
objective of Burda et al. (2016), and a plain Adam training loop."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch.distributions import Normal


def reconstruction_error(x, output, likelihood: str = "gaussian"):
    """Per-example reconstruction term ``(B,)``: summed squared error of the decoded images, or summed binary
    cross-entropy of the decoder's logits (``likelihood="bernoulli"``, as flax/examples/vae and TensorFlow's CVAE
    train)."""
    if likelihood == "bernoulli":
        pixelwise = F.binary_cross_entropy_with_logits(output, x, reduction="none")  # (B, 1, 28, 28)
    else:
        pixelwise = F.mse_loss(output, x, reduction="none")  # (B, 1, 28, 28)
    return pixelwise.view(x.size(0), -1).sum(dim=1)


def vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight: float = 1.0, likelihood: str = "gaussian"):
    """Return ``(loss, reconstruction, kl)``, each a batch mean, as ``train_vae_v1`` computes them;
    ``likelihood="bernoulli"``: ``decoded`` is the decoder's logits."""
    kl = -0.5 * torch.sum(1 + z_log_var - z_mean**2 - torch.exp(z_log_var), dim=1)  # (B,)
    kl = kl.mean()
    reconstruction = reconstruction_error(x, decoded, likelihood).mean()
    loss = reconstruction_weight * reconstruction + kl
    return loss, reconstruction, kl


def importance_weighting_gain(log_weights):
    """``log mean_j exp(w_j) - mean_j w_j`` over the k draws (dim 1): ``(B, k) -> (B,)``."""
    return torch.logsumexp(log_weights, dim=1) - math.log(log_weights.size(1)) - log_weights.mean(dim=1)


def objective_loss(
    x, output, z, eps, z_mean, z_log_var, reconstruction_weight: float = 1.0, likelihood="gaussian", objective="elbo"
):
    """``(loss, reconstruction, kl)`` batch means for k draws ``z`` ``(B, k, L)`` per image (of the standard-normal
    ``eps``, same shape), ``output`` the decoder's for each ``(B * k, 1, 28, 28)``. ``"elbo"``: ``vae_loss`` over
    every draw. ``"iwae"``: the negative k-sample bound ``log mean_j w_j`` of Burda et al. (2016), ``w_j = p(x | z_j)
    p(z_j) / q(z_j | x)``, in the form with the same expectation whose KL part is in closed form: the ELBO loss less
    ``importance_weighting_gain``."""
    batch, k = z.shape[:2]
    repeated = x.repeat_interleave(k, dim=0)  # (B * k, 1, 28, 28)
    loss, reconstruction, kl = vae_loss(repeated, output, z_mean, z_log_var, reconstruction_weight, likelihood)
    if objective == "iwae":
        log_likelihood = -reconstruction_weight * reconstruction_error(repeated, output, likelihood).view(batch, k)
        log_prior = Normal(0.0, 1.0).log_prob(z).sum(dim=-1)  # (B, k)
        # log q(z | x) = log N(z; mean, sigma^2), written as log N(eps; 0, 1) - log sigma: no z - mean to round
        log_q = (Normal(0.0, 1.0).log_prob(eps) - z_log_var[:, None] / 2).sum(dim=-1)  # (B, k)
        loss = loss - importance_weighting_gain(log_likelihood + log_prior - log_q).mean()
    return loss, reconstruction, kl


def model_outputs(model, x, eps=None, likelihood: str = "gaussian"):
    """``(z_mean, z_log_var, draws, z, output)`` of the noise ``eps``, ``(B, L)`` or ``(B, k, L)`` for k draws per
    image (drawn here if None); ``draws`` (the noise) and ``z`` are ``(B, k, L)``, ``output`` the decoded images
    (gaussian) or the decoder's logits (bernoulli) of every draw, ``(B * k, 1, 28, 28)``."""
    features = model.encoder(x)  # (B, 3136)
    z_mean, z_log_var = model.z_mean(features), model.z_log_var(features)
    eps = torch.randn_like(z_mean) if eps is None else eps
    draws = eps.view(eps.size(0), -1, eps.size(-1))  # (B, k, L)
    z = model.reparameterize(z_mean[:, None], z_log_var[:, None], draws)  # (B, k, L)
    flat = z.reshape(-1, z.size(-1))  # (B * k, L)
    output = model.decode_logits(flat) if likelihood == "bernoulli" else model.decoder(flat)
    return z_mean, z_log_var, draws, z, output


def train_step(
    model, optimizer, x, eps=None, reconstruction_weight: float = 1.0, likelihood="gaussian", objective="elbo"
):
    """One Adam step on batch ``x`` (NCHW, [0, 1]); returns the loss terms as Python floats."""
    z_mean, z_log_var, draws, z, output = model_outputs(model, x, eps, likelihood)
    loss, reconstruction, kl = objective_loss(
        x, output, z, draws, z_mean, z_log_var, reconstruction_weight, likelihood, objective
    )
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach()), float(reconstruction.detach()), float(kl.detach())


def train_vae(
    model,
    batches: Iterable,
    lr: float = 5e-4,
    reconstruction_weight: float = 1.0,
    eps_fn: Callable[[int], torch.Tensor] | None = None,
    optimizer=None,
    likelihood: str = "gaussian",
    objective: str = "elbo",
):
    """Train ``model`` with Adam over ``batches``; return the list of per-step ``(loss, rec, kl)``.

    ``eps_fn(step)`` (0-based) supplies the reparameterisation noise, so that a run can be replayed
    against another implementation; without it the noise comes from torch's global generator.
    """
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step, x in enumerate(batches):
        eps = eps_fn(step) if eps_fn is not None else None
        history.append(train_step(model, optimizer, x, eps, reconstruction_weight, likelihood, objective))
    return history

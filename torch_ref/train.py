"""The original notebook's loss (``train_vae_v1`` semantics), a Bernoulli alternative, and a plain Adam training
loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F


def vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight: float = 1.0, likelihood: str = "gaussian"):
    """Return ``(loss, reconstruction, kl)``, each a batch mean, as ``train_vae_v1`` computes them.

    ``likelihood="bernoulli"``: ``decoded`` is the decoder's logits and the reconstruction term the summed binary
    cross-entropy (``binary_cross_entropy_with_logits``), as flax/examples/vae and TensorFlow's CVAE train.
    """
    kl = -0.5 * torch.sum(1 + z_log_var - z_mean**2 - torch.exp(z_log_var), dim=1)  # (B,)
    kl = kl.mean()
    if likelihood == "bernoulli":
        pixelwise = F.binary_cross_entropy_with_logits(decoded, x, reduction="none")  # (B, 1, 28, 28)
    else:
        pixelwise = F.mse_loss(decoded, x, reduction="none")  # (B, 1, 28, 28)
    reconstruction = pixelwise.view(x.size(0), -1).sum(dim=1).mean()
    loss = reconstruction_weight * reconstruction + kl
    return loss, reconstruction, kl


def model_outputs(model, x, eps=None, likelihood: str = "gaussian"):
    """``(z_mean, z_log_var, output)``: ``output`` is the decoded image (gaussian) or the decoder's logits
    (bernoulli)."""
    if likelihood == "bernoulli":
        features = model.encoder(x)  # (B, 3136)
        z_mean, z_log_var = model.z_mean(features), model.z_log_var(features)
        return z_mean, z_log_var, model.decode_logits(model.reparameterize(z_mean, z_log_var, eps))
    _, z_mean, z_log_var, decoded = model(x, eps)
    return z_mean, z_log_var, decoded


def train_step(model, optimizer, x, eps=None, reconstruction_weight: float = 1.0, likelihood: str = "gaussian"):
    """One Adam step on batch ``x`` (NCHW, [0, 1]); returns the loss terms as Python floats."""
    z_mean, z_log_var, output = model_outputs(model, x, eps, likelihood)
    loss, reconstruction, kl = vae_loss(x, output, z_mean, z_log_var, reconstruction_weight, likelihood)
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
):
    """Train ``model`` with Adam over ``batches``; return the list of per-step ``(loss, rec, kl)``.

    ``eps_fn(step)`` (0-based) supplies the reparameterisation noise, so that a run can be replayed
    against another implementation; without it the noise comes from torch's global generator.
    """
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step, x in enumerate(batches):
        eps = eps_fn(step) if eps_fn is not None else None
        history.append(train_step(model, optimizer, x, eps, reconstruction_weight, likelihood))
    return history

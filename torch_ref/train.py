"""The original notebook's loss (``train_vae_v1`` semantics) and a plain Adam training loop."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.nn.functional as F


def vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight: float = 1.0):
    """Return ``(loss, reconstruction, kl)``, each a batch mean, as ``train_vae_v1`` computes them."""
    kl = -0.5 * torch.sum(1 + z_log_var - z_mean**2 - torch.exp(z_log_var), dim=1)  # (B,)
    kl = kl.mean()
    pixelwise = F.mse_loss(decoded, x, reduction="none")  # (B, 1, 28, 28)
    reconstruction = pixelwise.view(x.size(0), -1).sum(dim=1).mean()
    loss = reconstruction_weight * reconstruction + kl
    return loss, reconstruction, kl


def train_step(model, optimizer, x, eps=None, reconstruction_weight: float = 1.0):
    """One Adam step on batch ``x`` (NCHW, [0, 1]); returns the loss terms as Python floats."""
    _, z_mean, z_log_var, decoded = model(x, eps)
    loss, reconstruction, kl = vae_loss(x, decoded, z_mean, z_log_var, reconstruction_weight)
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
):
    """Train ``model`` with Adam over ``batches``; return the list of per-step ``(loss, rec, kl)``.

    ``eps_fn(step)`` (0-based) supplies the reparameterisation noise, so that a run can be replayed
    against another implementation; without it the noise comes from torch's global generator.
    """
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step, x in enumerate(batches):
        eps = eps_fn(step) if eps_fn is not None else None
        history.append(train_step(model, optimizer, x, eps, reconstruction_weight))
    return history


def shuffled_batches(data: torch.Tensor, batch_size: int) -> Iterable[torch.Tensor]:
    """One epoch of ``data`` in a random order from torch's global generator, ``batch_size`` rows at a time.

    The order is drawn at the call; the last partial batch is dropped, as jaxvae's epochs drop it.
    """
    order = torch.randperm(len(data))
    return (data[order[i : i + batch_size]] for i in range(0, len(data) - batch_size + 1, batch_size))

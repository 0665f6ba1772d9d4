"""The seed notebook's VAE (STAT453 L17), with the seed's three typos mended as the original has it.

Mended: ``nn.Lienar`` -> ``nn.Linear``; ``self.z_log_var`` is called on the features; ``eps`` is drawn
on the input's device (the seed's ``.to(z_mu.get_device())`` returns -1 on CPU). The module structure is
kept, so the state-dict keys are the seed's (``encoder.0.weight`` ... ``decoder.8.bias``) and a checkpoint
saved by the notebook loads with ``strict=True``. ``latent_dim`` defaults to the seed's 2.
"""

from __future__ import annotations

import torch
from torch import nn


class Reshape(nn.Module):
    """View the input with a fixed shape (the seed's ``Reshape(-1, 64, 7, 7)``)."""

    def __init__(self, *args):
        super().__init__()
        self.shape = args

    def forward(self, x):
        return x.view(self.shape)


class Trim(nn.Module):
    """Cut the decoder's 29x29 output to 28x28 (top-left corner, as the seed does)."""

    def forward(self, x):
        return x[:, :, :28, :28]


class VAE(nn.Module):
    """Convolutional VAE for 1x28x28 images in [0, 1]; NCHW."""

    def __init__(self, latent_dim: int = 2):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, stride=(1, 1), kernel_size=(3, 3), padding=1),  # (B, 32, 28, 28)
            nn.LeakyReLU(0.01),
            nn.Conv2d(32, 64, stride=(2, 2), kernel_size=(3, 3), padding=1),  # (B, 64, 14, 14)
            nn.LeakyReLU(0.01),
            nn.Conv2d(64, 64, stride=(2, 2), kernel_size=(3, 3), padding=1),  # (B, 64, 7, 7)
            nn.LeakyReLU(0.01),
            nn.Conv2d(64, 64, stride=(1, 1), kernel_size=(3, 3), padding=1),  # (B, 64, 7, 7)
            nn.Flatten(),  # (B, 3136)
        )
        self.z_mean = nn.Linear(3136, latent_dim)
        self.z_log_var = nn.Linear(3136, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 3136),  # (B, 3136)
            Reshape(-1, 64, 7, 7),  # (B, 64, 7, 7)
            nn.ConvTranspose2d(64, 64, stride=(1, 1), kernel_size=(3, 3), padding=1),  # (B, 64, 7, 7)
            nn.LeakyReLU(0.01),
            nn.ConvTranspose2d(64, 64, stride=(2, 2), kernel_size=(3, 3), padding=1),  # (B, 64, 13, 13)
            nn.LeakyReLU(0.01),
            nn.ConvTranspose2d(64, 32, stride=(2, 2), kernel_size=(3, 3), padding=0),  # (B, 32, 27, 27)
            nn.LeakyReLU(0.01),
            nn.ConvTranspose2d(32, 1, stride=(1, 1), kernel_size=(3, 3), padding=0),  # (B, 1, 29, 29)
            Trim(),  # (B, 1, 28, 28)
            nn.Sigmoid(),
        )

    def decode_logits(self, z):
        """The decoder without its final Sigmoid: a Bernoulli decoder's logits, ``(B, 1, 28, 28)``."""
        return self.decoder[:-1](z)

    def encoding_fn(self, x):
        x = self.encoder(x)
        z_mean, z_log_var = self.z_mean(x), self.z_log_var(x)
        return self.reparameterize(z_mean, z_log_var)

    def reparameterize(self, z_mu, z_log_var, eps=None):
        """z = mu + eps * exp(log_var / 2); ``eps`` is drawn on ``z_mu``'s device unless given."""
        if eps is None:
            eps = torch.randn(z_mu.size(0), z_mu.size(1), device=z_mu.device, dtype=z_mu.dtype)
        return z_mu + eps * torch.exp(z_log_var / 2.0)

    def forward(self, x, eps=None):
        x = self.encoder(x)
        z_mean, z_log_var = self.z_mean(x), self.z_log_var(x)
        encoded = self.reparameterize(z_mean, z_log_var, eps)
        decoded = self.decoder(encoded)
        return encoded, z_mean, z_log_var, decoded

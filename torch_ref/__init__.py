"""PyTorch reference: the seed notebook's convolutional VAE and its training loop (``train_vae_v1``)."""

from torch_ref.model import VAE, Reshape, Trim
from torch_ref.train import train_vae, vae_loss

__all__ = ["VAE", "Reshape", "Trim", "train_vae", "vae_loss"]

"""jaxvae: the seed's convolutional VAE for MNIST in JAX/Flax, with a PyTorch reference and parity harness."""

from jaxvae.convert import params_from_torch, params_to_torch
from jaxvae.latent import reparameterize
from jaxvae.losses import vae_loss
from jaxvae.model import VAE

__version__ = "0.1.0"
__all__ = ["VAE", "params_from_torch", "params_to_torch", "reparameterize", "vae_loss", "__version__"]

"""jaxvae: the seed's convolutional VAE for MNIST in JAX/Flax, with a PyTorch reference and parity harness.

The names below are the library's public API (README, "Python API"); each is imported on first use, so that
``import jaxvae`` stays fast. Shapes: images ``(B, 28, 28, 1)`` float32 in [0, 1] (NHWC), latents ``(B, latent_dim)``.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # the model and its pieces
    "VAE": "jaxvae.model",
    "reparameterize": "jaxvae.model",
    "vae_loss": "jaxvae.likelihoods",
    # training: the pure step, and whole runs
    "TrainState": "jaxvae.train_step",
    "init_state": "jaxvae.train_step",
    "make_optimizer": "jaxvae.train_step",
    "make_loss_fn": "jaxvae.train_step",
    "make_train_step": "jaxvae.train_step",
    "make_evaluate": "jaxvae.train_step",
    "RunConfig": "jaxvae.run.config",
    "train": "jaxvae.run.training",
    "make_member_step": "jaxvae.train_step",
    "member_grid": "jaxvae.run.members",
    "train_ensemble": "jaxvae.run.training",
    # a trained model
    "encode_means": "jaxvae.inference",
    "decode": "jaxvae.inference",
    "reconstruct_at_mean": "jaxvae.inference",
    "interpolate": "jaxvae.inference",
    "sample_prior": "jaxvae.inference",
    "open_run": "jaxvae.run.commands",
    "make_log_px": "jaxvae.iwae",
    "estimate_log_px": "jaxvae.iwae",
    "iwae_log_px": "jaxvae.iwae",
    # data and torch
    "load_mnist5k": "jaxvae.data",
    "load_dataset": "jaxvae.data",
    "params_from_torch": "jaxvae.convert",
    "params_to_torch": "jaxvae.convert",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jaxvae' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

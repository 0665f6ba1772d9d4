"""The jaxvae side of the parity harness: ``jaxvae.model.VAE`` forward and backward, captured layer by layer.

The gradients are those of ``make_loss_fn``, the loss the training step differentiates. Each capture traces
and compiles afresh (a new ``jax.jit`` per call), so that whatever ``jaxvae`` is at call time is what runs, a
monkeypatched mutant included, and it runs compiled, as training does; a program compiled before (same code,
same shapes) comes from JAX's compilation cache. float64 runs on the CPU under ``jax.enable_x64``: float64 is
the arbiter, and the CPU computes it natively on every machine (TPUs do not).
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.convert import params_from_torch, params_to_torch
from jaxvae.model import VAE, shift_and_scale
from jaxvae.parity.capture import IMAGES, LATENT_SAMPLE, Capture
from jaxvae.train_step import make_loss_fn


@contextlib.contextmanager
def _precision(dtype, float64_device: str = "cpu"):
    """float64 with x64 enabled, on the CPU (or ``float64_device``); float32 on the default device at full matmul
    precision."""
    if np.dtype(dtype) == np.float64:
        with jax.enable_x64(True), jax.default_device(jax.devices(float64_device)[0]):
            yield
    else:
        with jax.default_matmul_precision("highest"):
            yield


def _activations(model: VAE, variables, x, eps) -> dict:
    """Every sown activation, and the images and latent sample that the first encoder and decoder layers take."""

    def forward(module, x, eps):
        z_mean, z_log_var = module.encode(x)
        draws = eps.reshape(eps.shape[0], -1, eps.shape[-1])  # (B, k, L)
        z = shift_and_scale(draws, z_mean[:, None], z_log_var[:, None]).reshape(-1, eps.shape[-1])  # (B * k, L)
        module.decode(z)
        return z

    z, state = model.apply(variables, x, eps, method=forward, mutable=["intermediates"])
    return {**{k: v[0] for k, v in state["intermediates"].items()}, IMAGES: x, LATENT_SAMPLE: z}


def jax_capture(
    state_dict,
    x_nhwc,
    eps,
    dtype,
    conv_impl: str,
    reconstruction_weight: float = 1.0,
    likelihood: str = "gaussian",
    compute_dtype: str = "float32",
    float64_device: str = "cpu",
    objective: str = "elbo",
) -> Capture:
    """Activations, loss and gradients (torch keys and layout) of jaxvae from ``state_dict``: parameters and data
    in ``dtype``, convolutions and matmuls in ``compute_dtype`` (see ``jaxvae.layers``); ``eps`` ``(B, L)``, or
    ``(B, k, L)`` for k draws per image (the decoder's activations then ``(B * k, ...)``)."""
    with _precision(dtype, float64_device):
        variables = jax.tree_util.tree_map(jnp.asarray, params_from_torch(state_dict, dtype=dtype))
        x = jnp.asarray(np.asarray(x_nhwc, dtype))
        noise = jnp.asarray(np.asarray(eps, dtype))
        model = VAE(int(noise.shape[-1]), conv_impl=conv_impl, compute_dtype=compute_dtype)
        loss_fn = make_loss_fn(model, reconstruction_weight, likelihood, objective)

        def forward_and_backward(params, x, noise):
            (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, noise)
            return _activations(model, {"params": params}, x, noise), loss, grads

        activations, loss, grads = jax.jit(forward_and_backward)(variables["params"], x, noise)
        activations = {k: np.asarray(v, np.float64) for k, v in activations.items()}
        grads = {k: np.asarray(v, np.float64) for k, v in params_to_torch(grads).items()}
        return Capture(activations, float(loss), grads)

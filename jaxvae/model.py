"""The convolutional VAE in Flax Linen, layer for layer the seed's (``torch_ref.VAE``), in NHWC.

Its layers are ``jaxvae.architecture``'s table, as submodules named like the torch state-dict keys (``encoder_0`` is
``encoder.0``). Every activation a torch ``nn.Sequential`` child returns is sown into ``"intermediates"`` under
torch's own name (the heads as ``"z_mean.out"``), for the parity harness. The reshapes a port gets wrong most easily
(flatten, unflatten, trim) are named functions, and so is the reparameterisation, of an explicit key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

from jaxvae import architecture as arch
from jaxvae.layers import CONV_IMPLS, Conv2d, ConvTranspose2d, Dense, leaky_relu

_CONV_MODULES = {"conv": Conv2d, "conv_transpose": ConvTranspose2d}


def flatten_like_torch(h):
    """``(B, 7, 7, 64) -> (B, 3136)`` in torch's NCHW order, so that the 3136-wide heads port unchanged."""
    return h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1)  # (B, 64, 7, 7) -> (B, 3136)


def unflatten_like_torch(h):
    """``(B, 3136) -> (B, 7, 7, 64)``: torch's ``Reshape(-1, 64, 7, 7)``, then NHWC."""
    height, width, channels = arch.FEATURE_MAP
    return h.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)  # (B, 64, 7, 7) -> (B, 7, 7, 64)


def trim_like_torch(h):
    """``(B, 29, 29, C) -> (B, 28, 28, C)``: the top-left 28x28, as the seed's ``Trim``."""
    height, width, _ = arch.IMAGE_SHAPE
    return h[:, :height, :width, :]


def shift_and_scale(eps, z_mean, z_log_var):
    """``z = mu + eps * exp(log_var / 2)`` for given standard-normal ``eps``; shapes ``(B, latent)``."""
    return z_mean + eps * jnp.exp(z_log_var / 2.0)


def reparameterize(key, z_mean, z_log_var):
    """Draw ``z = mu + eps * exp(log_var / 2)`` with ``eps ~ N(0, I)`` from ``key``; shapes ``(B, latent)``."""
    return shift_and_scale(jax.random.normal(key, z_mean.shape, z_mean.dtype), z_mean, z_log_var)


class VAE(nn.Module):
    """``VAE(latent_dim).apply(variables, x, key) -> (encoded, z_mean, z_log_var, decoded)``.

    ``x``: ``(B, 28, 28, 1)`` float32 in [0, 1]. ``conv_impl`` is the convolution implementation (``"xla"``,
    ``"matmul"`` or ``"pad"``; see ``jaxvae.layers``); all compute the same function, ``matmul`` the fastest on a CPU.
    ``jaxvae train --conv-impl auto`` picks one per backend (``jaxvae.devices.resolve_conv_impl``).
    ``compute_dtype`` is that of the convolutions' and matmuls' operands (``"float32"`` or ``"bfloat16"``).
    """

    latent_dim: int = 2
    conv_impl: str = "matmul"
    precision: lax.Precision | None = lax.Precision.HIGHEST
    compute_dtype: str = "float32"

    def setup(self):
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {self.conv_impl!r}")

        def conv(layer: arch.Layer):
            shape = (layer.features, arch.KERNEL_SIZE, layer.stride, layer.padding)
            numerics = (self.conv_impl, self.precision, self.compute_dtype)
            return _CONV_MODULES[layer.kind](*shape, *numerics, name=layer.flax_name)

        self.encoder_convs = [conv(layer) for layer in arch.ENCODER]
        self.z_mean = Dense(self.latent_dim, self.precision, self.compute_dtype)
        self.z_log_var = Dense(self.latent_dim, self.precision, self.compute_dtype)
        self.decoder_0 = Dense(arch.FLAT, self.precision, self.compute_dtype)
        self.decoder_convs = [conv(layer) for layer in arch.DECODER]

    def _record(self, name: str, value):
        self.sow("intermediates", name, value)
        return value

    def _convolutions(self, layers, convs, h):
        for layer, conv in zip(layers, convs):
            h = self._record(layer.name, conv(h))  # sizes: jaxvae.architecture
            if layer.leaky:
                h = self._record(layer.activation, leaky_relu(h, arch.LEAKY_SLOPE))
        return h

    def encode(self, x):
        """``(B, 28, 28, 1) -> (z_mean, z_log_var)``, each ``(B, latent_dim)``."""
        h = self._convolutions(arch.ENCODER, self.encoder_convs, x)  # (B, 7, 7, 64)
        h = self._record(arch.FLATTEN, flatten_like_torch(h))  # (B, 3136)
        z_mean = self._record("z_mean.out", self.z_mean(h))  # (B, latent_dim)
        z_log_var = self._record("z_log_var.out", self.z_log_var(h))  # (B, latent_dim)
        return z_mean, z_log_var

    def decode(self, z):
        """``(B, latent_dim) -> (B, 28, 28, 1)`` images in (0, 1): ``sigmoid(decode_logits(z))``."""
        return self._record(arch.SIGMOID, nn.sigmoid(self.decode_logits(z)))

    def decode_logits(self, z):
        """``(B, latent_dim) -> (B, 28, 28, 1)`` logits: the decoder before its sigmoid (a Bernoulli decoder's
        output)."""
        h = self._record(arch.DECODER_INPUT.name, self.decoder_0(z))  # (B, 3136)
        h = self._record(arch.UNFLATTEN, unflatten_like_torch(h))  # (B, 7, 7, 64)
        h = self._convolutions(arch.DECODER, self.decoder_convs, h)  # (B, 29, 29, 1)
        return self._record(arch.TRIM, trim_like_torch(h))  # (B, 28, 28, 1)

    def __call__(self, x, key):
        z_mean, z_log_var = self.encode(x)
        encoded = reparameterize(key, z_mean, z_log_var)
        decoded = self.decode(encoded)
        return encoded, z_mean, z_log_var, decoded

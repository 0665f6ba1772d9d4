"""The convolutional VAE in Flax Linen, layer for layer the seed's (``torch_ref.VAE``), in NHWC.

Submodule names follow the torch state-dict keys (``encoder_0`` is ``encoder.0``, ``decoder_8`` is
``decoder.8``), and every activation that a torch ``nn.Sequential`` child returns is sown into the
``"intermediates"`` collection under torch's own name (``"encoder.0"``, ..., ``"decoder.10"``; the heads as
``"z_mean.out"``), so that the parity harness can compare them one by one. The three reshapes that a port gets
wrong most easily (flatten, unflatten, trim) are named functions.
"""

from __future__ import annotations

from flax import linen as nn
from jax import lax

from jaxvae.latent import reparameterize
from jaxvae.layers import Conv2d, ConvTranspose2d, Dense, leaky_relu, resolve_conv_impl

IMAGE_SHAPE = (28, 28, 1)
LEAKY_SLOPE = 0.01

# (name, features, stride, padding) of the seed's convolutions, in order.
ENCODER_CONVS = (("encoder_0", 32, 1, 1), ("encoder_2", 64, 2, 1), ("encoder_4", 64, 2, 1), ("encoder_6", 64, 1, 1))
DECODER_CONVS = (("decoder_2", 64, 1, 1), ("decoder_4", 64, 2, 1), ("decoder_6", 32, 2, 0), ("decoder_8", 1, 1, 0))


def _index(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def flatten_like_torch(h):
    """``(B, 7, 7, 64) -> (B, 3136)`` in torch's NCHW order, so that the 3136-wide heads port unchanged."""
    return h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1)  # (B, 64, 7, 7) -> (B, 3136)


def unflatten_like_torch(h):
    """``(B, 3136) -> (B, 7, 7, 64)``: torch's ``Reshape(-1, 64, 7, 7)``, then NHWC."""
    return h.reshape(-1, 64, 7, 7).transpose(0, 2, 3, 1)  # (B, 64, 7, 7) -> (B, 7, 7, 64)


def trim_like_torch(h):
    """``(B, 29, 29, C) -> (B, 28, 28, C)``: the top-left 28x28, as the seed's ``Trim``."""
    return h[:, :28, :28, :]


class VAE(nn.Module):
    """``VAE(latent_dim).apply(variables, x, key) -> (encoded, z_mean, z_log_var, decoded)``.

    ``x``: ``(B, 28, 28, 1)`` float32 in [0, 1]. ``conv_impl`` picks the convolution implementation
    (``"auto"``, ``"xla"`` or ``"matmul"``; see ``jaxvae.layers``); all compute the same function.
    """

    latent_dim: int = 2
    conv_impl: str = "auto"
    precision: lax.Precision | None = lax.Precision.HIGHEST

    def setup(self):
        impl = resolve_conv_impl(self.conv_impl)
        self.encoder_convs = [
            Conv2d(f, 3, s, p, impl, self.precision, name=name) for name, f, s, p in ENCODER_CONVS
        ]
        self.z_mean = Dense(self.latent_dim, self.precision)
        self.z_log_var = Dense(self.latent_dim, self.precision)
        self.decoder_0 = Dense(7 * 7 * 64, self.precision)
        self.decoder_convs = [
            ConvTranspose2d(f, 3, s, p, impl, self.precision, name=name) for name, f, s, p in DECODER_CONVS
        ]

    def _record(self, index: int, prefix: str, value):
        self.sow("intermediates", f"{prefix}.{index}", value)
        return value

    def encode(self, x):
        """``(B, 28, 28, 1) -> (z_mean, z_log_var)``, each ``(B, latent_dim)``."""
        h = x
        for conv in self.encoder_convs:
            i = _index(conv.name)
            h = self._record(i, "encoder", conv(h))  # (B, 28, 28, 32) / (B, 14, 14, 64) / (B, 7, 7, 64)
            if i < 6:
                h = self._record(i + 1, "encoder", leaky_relu(h, LEAKY_SLOPE))
        h = self._record(7, "encoder", flatten_like_torch(h))  # (B, 3136)
        z_mean = self.z_mean(h)  # (B, latent_dim)
        z_log_var = self.z_log_var(h)  # (B, latent_dim)
        self.sow("intermediates", "z_mean.out", z_mean)
        self.sow("intermediates", "z_log_var.out", z_log_var)
        return z_mean, z_log_var

    def decode(self, z):
        """``(B, latent_dim) -> (B, 28, 28, 1)`` images in (0, 1): ``sigmoid(decode_logits(z))``."""
        return self._record(10, "decoder", nn.sigmoid(self.decode_logits(z)))

    def decode_logits(self, z):
        """``(B, latent_dim) -> (B, 28, 28, 1)`` logits: the decoder before its sigmoid (a Bernoulli decoder's output)."""
        h = self._record(0, "decoder", self.decoder_0(z))  # (B, 3136)
        h = self._record(1, "decoder", unflatten_like_torch(h))  # (B, 7, 7, 64)
        for conv in self.decoder_convs:
            i = _index(conv.name)
            h = self._record(i, "decoder", conv(h))  # (B, 7, 7, 64) / (B, 13, 13, 64) / (B, 27, 27, 32) / (B, 29, 29, 1)
            if i < 8:
                h = self._record(i + 1, "decoder", leaky_relu(h, LEAKY_SLOPE))
        return self._record(9, "decoder", trim_like_torch(h))  # (B, 28, 28, 1)

    def __call__(self, x, key):
        z_mean, z_log_var = self.encode(x)
        encoded = reparameterize(key, z_mean, z_log_var)
        decoded = self.decode(encoded)
        return encoded, z_mean, z_log_var, decoded

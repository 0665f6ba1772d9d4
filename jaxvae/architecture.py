"""The seed's VAE as one table: every layer with parameters, in torch's order, under torch's module name. The Flax
module (``jaxvae.model``), the weight bridge (``jaxvae.convert``) and the parity capture (``jaxvae.parity.capture``)
read it; nothing else states the architecture (torch_ref's is the seed's own code, checked against it by the parity
suite). torch's children without parameters have names too: a LeakyReLU is the child after its layer
(``Layer.activation``), the flatten ``encoder.7``, the unflatten ``decoder.1``, the trim ``decoder.9``, the sigmoid
``decoder.10``. Sizes: 28 -> 28 -> 14 -> 7 -> 7 in the encoder; 7 -> 7 -> 13 -> 27 -> 29, trimmed to 28, in the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_SHAPE = (28, 28, 1)  # NHWC without the batch
KERNEL_SIZE = 3
LEAKY_SLOPE = 0.01
FEATURE_MAP = (7, 7, 64)  # the encoder's last map and the decoder's first, NHWC
FLAT = 7 * 7 * 64  # 3136: the features of the linear heads
LATENT = None  # in a ``Layer``: the latent size, a parameter of the model

FLATTEN, UNFLATTEN, TRIM, SIGMOID = "encoder.7", "decoder.1", "decoder.9", "decoder.10"


@dataclass(frozen=True)
class Layer:
    """One layer with parameters: torch's module name, its kind, its input and output features (``LATENT``
    for the latent size), stride and padding (convolutions), and whether a LeakyReLU follows it."""

    name: str
    kind: str
    in_features: int | None
    features: int | None
    stride: int = 1
    padding: int = 0
    leaky: bool = False

    @property
    def flax_name(self) -> str:
        """The Flax submodule's name: ``"encoder.2"`` -> ``"encoder_2"``; the heads keep theirs."""
        return self.name.replace(".", "_")

    @property
    def activation(self) -> str | None:
        """torch's name of the LeakyReLU after this layer (the next ``nn.Sequential`` child), if any."""
        if not self.leaky:
            return None
        prefix, index = self.name.rsplit(".", 1)
        return f"{prefix}.{int(index) + 1}"

    def sizes(self, latent_dim: int) -> tuple[int, int]:
        """``(in, out)`` features with the latent size filled in."""
        return (
            latent_dim if self.in_features is LATENT else self.in_features,
            latent_dim if self.features is LATENT else self.features,
        )

    def torch_weight_shape(self, latent_dim: int) -> tuple[int, ...]:
        """torch's weight shape: Conv2d ``(out, in, k, k)``, ConvTranspose2d ``(in, out, k, k)``,
        Linear ``(out, in)``."""
        c_in, c_out = self.sizes(latent_dim)
        k = KERNEL_SIZE
        return {"conv": (c_out, c_in, k, k), "conv_transpose": (c_in, c_out, k, k), "linear": (c_out, c_in)}[self.kind]


ENCODER = (
    Layer("encoder.0", "conv", 1, 32, stride=1, padding=1, leaky=True),  # (B, 28, 28, 32)
    Layer("encoder.2", "conv", 32, 64, stride=2, padding=1, leaky=True),  # (B, 14, 14, 64)
    Layer("encoder.4", "conv", 64, 64, stride=2, padding=1, leaky=True),  # (B, 7, 7, 64)
    Layer("encoder.6", "conv", 64, 64, stride=1, padding=1),  # (B, 7, 7, 64)
)
HEADS = (Layer("z_mean", "linear", FLAT, LATENT), Layer("z_log_var", "linear", FLAT, LATENT))  # (B, latent) each
DECODER_INPUT = Layer("decoder.0", "linear", LATENT, FLAT)  # (B, 3136)
DECODER = (
    Layer("decoder.2", "conv_transpose", 64, 64, stride=1, padding=1, leaky=True),  # (B, 7, 7, 64)
    Layer("decoder.4", "conv_transpose", 64, 64, stride=2, padding=1, leaky=True),  # (B, 13, 13, 64)
    Layer("decoder.6", "conv_transpose", 64, 32, stride=2, padding=0, leaky=True),  # (B, 27, 27, 32)
    Layer("decoder.8", "conv_transpose", 32, 1, stride=1, padding=0),  # (B, 29, 29, 1)
)
LAYERS = (*ENCODER, *HEADS, DECODER_INPUT, *DECODER)

# Each LeakyReLU's torch name -> the layer whose output (its pre-activation) feeds it.
KINKS = {layer.activation: layer.name for layer in LAYERS if layer.leaky}

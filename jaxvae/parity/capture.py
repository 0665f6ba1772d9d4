"""What one side of a parity comparison computed: every activation, the loss, every parameter's gradient.

Both sides (``jaxvae.parity.jax_side``, ``jaxvae.parity.torch_side``) fill a ``Capture`` in the same layout, so
that the comparison (``jaxvae.parity.method``) needs to know neither framework: activations are NHWC numpy arrays
keyed by
torch's module names (``"encoder.0"`` ... ``"decoder.10"``, the heads as ``"z_mean.out"``), gradients are
numpy arrays keyed and laid out as torch's state dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jaxvae import architecture as arch
from jaxvae.architecture import KINKS  # each LeakyReLU's torch name -> the layer output it takes

IMAGES, LATENT_SAMPLE = "x", "z"  # a capture's extra activations: the input images and the decoder's input


def _input_of(layer: arch.Layer) -> str:
    """The activation a layer with parameters takes: the previous ``nn.Sequential`` child's, the flatten's for
    the heads, the latent sample for the decoder's first layer, the images for the encoder's."""
    if layer in arch.HEADS:
        return arch.FLATTEN
    if layer == arch.DECODER_INPUT:
        return LATENT_SAMPLE
    prefix, index = layer.name.rsplit(".", 1)
    return IMAGES if prefix == "encoder" and index == "0" else f"{prefix}.{int(index) - 1}"


LAYER_INPUTS = {layer.name: _input_of(layer) for layer in arch.LAYERS}  # torch module name -> its input's name


@dataclass
class KinkStats:
    """Per LeakyReLU pre-activation: how many elements lie within the rounding zone of the kink, and at how many
    of them the reference followed the compared side's branch instead of its own (a "flip")."""

    near: dict[str, int] = field(default_factory=dict)
    flips: dict[str, int] = field(default_factory=dict)

    def total_near(self) -> int:
        return sum(self.near.values())

    def total_flips(self) -> int:
        return sum(self.flips.values())


@dataclass
class Capture:
    """One forward and backward pass: ``activations`` (NHWC, float64 copies), ``loss``, ``grads`` (torch layout)."""

    activations: dict[str, np.ndarray]
    loss: float
    grads: dict[str, np.ndarray]
    kinks: KinkStats | None = None  # set on a reference that was matched to a compared side's branches

    def positive(self) -> dict[str, np.ndarray]:
        """Which branch each LeakyReLU took, per element: ``pre-activation > 0`` (NHWC), keyed by pre-activation."""
        return {pre: self.activations[pre] > 0 for pre in KINKS.values() if pre in self.activations}


def to_nhwc(value: np.ndarray) -> np.ndarray:
    """torch NCHW activations -> NHWC; other ranks unchanged."""
    return value.transpose(0, 2, 3, 1) if value.ndim == 4 else value


def to_nchw(value: np.ndarray) -> np.ndarray:
    """NHWC -> torch NCHW; other ranks unchanged."""
    return value.transpose(0, 3, 1, 2) if value.ndim == 4 else value

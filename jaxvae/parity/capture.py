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

from jaxvae.architecture import KINKS  # each LeakyReLU's torch name -> the layer output it takes


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

"""Initialisers that reproduce torch's defaults for Linear, Conv2d and ConvTranspose2d.

torch draws weights with ``kaiming_uniform_(a=sqrt(5))`` and biases from U(-1/sqrt(fan_in), ...): both are
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), with torch's fan_in = ``weight.size(1) * k * k``. That is
``in * k * k`` for Conv2d, ``in`` for Linear, and ``out * k * k`` for ConvTranspose2d (weight (in, out, k, k)).
"""

from __future__ import annotations

import math

import jax


def torch_bound(fan_in: int) -> float:
    """Half-width of torch's default uniform initialisation for a layer of this fan_in."""
    return 1.0 / math.sqrt(fan_in)


def torch_uniform(fan_in: int):
    """A Flax initialiser drawing U(-1/sqrt(fan_in), 1/sqrt(fan_in)) of any shape."""
    bound = torch_bound(fan_in)

    def init(key, shape, dtype=jax.numpy.float32):
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init

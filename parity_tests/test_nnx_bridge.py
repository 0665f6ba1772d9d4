"""An NNX user's VAE (``examples/nnx_bridge.py``: ``flax.nnx.bridge.ToNNX`` around the Linen module) is the Linen
module: the example runs, moves weights to and from a torch state dict, and its NNX module computes what the Linen
module computes from the same parameters, bit for bit, op by op as both run here (the Linen module against
torch_ref: the parity suite)."""

import runpy
from pathlib import Path

import numpy as np
import pytest

from jaxvae import VAE, params_from_torch
from torch_ref import VAE as TorchVAE

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nnx_bridge.py"


@pytest.mark.long  # ~25 s: the example as a user runs it, op by op (eager)
def test_the_example_is_the_linen_module(real_digits):
    example = runpy.run_path(str(EXAMPLE))
    model, state_dict = example["model"], example["state_dict"]
    assert example["decoded"].shape == (8, 28, 28, 1) and set(state_dict) == set(TorchVAE(2).state_dict())
    params = params_from_torch(state_dict)["params"]  # the NNX module's weights, through the torch state dict
    z_mean, z_log_var = model.encode(real_digits)
    linen_mean, linen_log_var = VAE(2).apply({"params": params}, real_digits, method=VAE.encode)
    np.testing.assert_array_equal(z_mean, linen_mean)
    np.testing.assert_array_equal(z_log_var, linen_log_var)
    np.testing.assert_array_equal(model.decode(z_mean), VAE(2).apply({"params": params}, z_mean, method=VAE.decode))

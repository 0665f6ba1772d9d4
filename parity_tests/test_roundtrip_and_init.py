"""A torch state dict's round trip through jaxvae, and initialisation within torch's bounds with torch's spread."""

import jax
import numpy as np
import pytest
import torch

from jaxvae import VAE, params_from_torch, params_to_torch
from jaxvae.architecture import LAYERS
from jaxvae.layers import torch_bound
from torch_ref import VAE as TorchVAE


@pytest.mark.parametrize("latent_dim, dtype", [(2, torch.float32), (16, torch.float32), (2, torch.bfloat16)])
def test_torch_to_jax_to_torch_is_exact(latent_dim, dtype):
    """torch_ref's own state dict, through jaxvae's parameters, loads back into torch_ref (strict) bit for bit (the
    keys' and shapes' checks, and the numpy round trip: tests/test_convert.py); one in bfloat16, which numpy cannot
    hold, comes back as float32, exactly."""
    torch.manual_seed(1)
    model = TorchVAE(latent_dim).to(dtype)
    back = params_to_torch(params_from_torch(model.state_dict()))
    fresh = TorchVAE(latent_dim)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value.float()), key


def test_initialisation_matches_torch():
    """Both defaults are the seed's model (the same shapes); every weight and bias lies in torch's U(-b, b),
    b = 1/sqrt(fan_in), and its std matches torch's draw."""
    variables = jax.jit(VAE().init)(jax.random.PRNGKey(0), np.zeros((1, 28, 28, 1), np.float32), jax.random.PRNGKey(1))
    torch.manual_seed(0)
    reference = TorchVAE().state_dict()
    assert jax.tree_util.tree_map(np.shape, params_from_torch(reference)) == jax.tree_util.tree_map(np.shape, variables)
    for layer in LAYERS:
        name = layer.name
        weight = reference[f"{name}.weight"]
        fan_in = weight.shape[1] * (weight[0, 0].numel() if weight.dim() == 4 else 1)
        bound = torch_bound(fan_in)
        for leaf, torch_key in (("kernel", "weight"), ("bias", "bias")):
            ours = np.asarray(variables["params"][layer.flax_name][leaf])
            theirs = reference[f"{name}.{torch_key}"].numpy()
            assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound, (name, leaf)
            if ours.size >= 256:  # the std of U(-b, b) is b/sqrt(3); 256 draws estimate it within ~7% (3 sigma)
                for draw in (ours, theirs):
                    assert abs(draw.std() / (bound / np.sqrt(3)) - 1) < 0.15, (name, leaf)
                assert abs(ours.std() / theirs.std() - 1) < 0.15, (name, leaf)

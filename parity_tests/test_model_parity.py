"""The whole model against torch_ref from the same weights on real digits: activations, outputs, loss, gradients.

Tolerances (issue 2, float32): activations and encoder/decoder outputs max abs diff <= 1e-5 (at scale one;
see jaxvae.parity), the loss relative <= 1e-6, each parameter's gradient relative <= 1e-5.
"""

import jax
import numpy as np
import pytest
import torch

from jaxvae import VAE, params_from_torch, vae_loss
from jaxvae.parity import run_parity
from parity_tests.conftest import IMPLS
from torch_ref import VAE as TorchVAE
from torch_ref.train import vae_loss as torch_vae_loss


def torch_model(latent_dim, seed=0):
    torch.manual_seed(seed)
    return TorchVAE(latent_dim)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("latent_dim", [2, 16])
@pytest.mark.parametrize("batch", [1, 32])
def test_every_activation_loss_and_gradient(impl, latent_dim, batch, real_digits):
    model = torch_model(latent_dim)
    x = real_digits[:batch]
    eps = np.asarray(jax.random.normal(jax.random.PRNGKey(batch), (batch, latent_dim)))
    result = run_parity(model, x, eps, impl)
    failures = [r for rows in result.values() for r in rows if not r.passed]
    assert not failures, failures
    names = [r.name for r in result["activations"]]
    assert names[:8] == [f"encoder.{i}" for i in range(8)] and names[-1] == "decoder.10"
    assert len(result["gradients"]) == 22


@pytest.mark.parametrize("impl", IMPLS)
def test_encode_and_decode_outputs(impl, real_digits):
    """The public methods, used as a user would: encode, then decode the same z in both frameworks."""
    model = torch_model(2, seed=3)
    variables = params_from_torch(model.state_dict())
    vae = VAE(2, conv_impl=impl)
    z_mean, z_log_var = vae.apply(variables, real_digits, method=VAE.encode)
    xt = torch.from_numpy(real_digits.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        features = model.encoder(xt)
        np.testing.assert_allclose(z_mean, model.z_mean(features).numpy(), atol=1e-5, rtol=0)
        np.testing.assert_allclose(z_log_var, model.z_log_var(features).numpy(), atol=1e-5, rtol=0)
        z = np.random.default_rng(0).standard_normal((32, 2)).astype(np.float32)
        decoded_t = model.decoder(torch.from_numpy(z)).numpy().transpose(0, 2, 3, 1)
    decoded = vae.apply(variables, z, method=VAE.decode)
    np.testing.assert_allclose(decoded, decoded_t, atol=1e-5, rtol=0)
    loss = vae_loss(real_digits, decoded, z_mean, z_log_var)[0]
    loss_t = torch_vae_loss(xt, torch.from_numpy(decoded_t.transpose(0, 3, 1, 2).copy()), torch.from_numpy(np.array(z_mean)), torch.from_numpy(np.array(z_log_var)))[0]
    assert abs(float(loss) - float(loss_t)) <= 1e-6 * abs(float(loss_t))

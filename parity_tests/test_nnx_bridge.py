"""An NNX user's VAE (``examples/nnx_bridge.py``: ``flax.nnx.bridge.ToNNX`` around the Linen module) computes what
the Linen module computes, bit for bit, and so what torch_ref computes, within the float32 bound."""

import runpy
from pathlib import Path

import jax
import numpy as np
import torch
from flax import nnx

from jaxvae import VAE, params_from_torch
from torch_ref import VAE as TorchVAE

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nnx_bridge.py"


def test_the_example_runs():
    namespace = runpy.run_path(str(EXAMPLE))
    assert namespace["decoded"].shape == (8, 28, 28, 1)
    assert set(namespace["state_dict"]) == set(TorchVAE(2).state_dict())


def test_nnx_module_is_the_linen_module_and_torch_ref(real_digits):
    """torch_ref's weights in the NNX module: encode and decode equal Linen's exactly (the same program), and
    torch_ref's to 1e-5 at scale one (float32 through nine layers, no kink in the outputs: see
    test_model_parity.test_encode_and_decode_outputs)."""
    torch.manual_seed(2)
    reference = TorchVAE(2)
    params = params_from_torch(reference.state_dict())["params"]
    model = nnx.bridge.ToNNX(VAE(2), rngs=nnx.Rngs(0)).lazy_init(real_digits, jax.random.PRNGKey(0))
    state = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(state, params)
    nnx.update(model, state)
    z_mean, z_log_var = model.encode(real_digits)
    linen_mean, linen_log_var = VAE(2).apply({"params": params}, real_digits, method=VAE.encode)
    np.testing.assert_array_equal(z_mean, linen_mean)
    np.testing.assert_array_equal(z_log_var, linen_log_var)
    np.testing.assert_array_equal(model.decode(z_mean), VAE(2).apply({"params": params}, z_mean, method=VAE.decode))
    with torch.no_grad():
        features = reference.encoder(torch.from_numpy(real_digits.transpose(0, 3, 1, 2).copy()))
        np.testing.assert_allclose(z_mean, reference.z_mean(features).numpy(), atol=1e-5, rtol=0)
        decoded = reference.decoder(torch.from_numpy(np.array(z_mean))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(model.decode(z_mean), decoded, atol=1e-5, rtol=0)

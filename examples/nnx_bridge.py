"""jaxvae's VAE as a Flax NNX module, through ``flax.nnx.bridge.ToNNX``: for a codebase written in NNX.

    python examples/nnx_bridge.py

The Linen module is wrapped, initialised lazily from a sample batch, and then used the NNX way: its methods are
called on the module itself, its parameters are NNX state. The state converts to and from the Linen parameter
tree, so the weight bridge to torch_ref works on it unchanged (``parity_tests/test_nnx_bridge.py`` runs this
file and checks the NNX module against the Linen one and torch_ref).
"""

import jax
import numpy as np
from flax import nnx

from jaxvae import VAE, load_mnist5k, params_from_torch, params_to_torch

images = load_mnist5k().test.images[:8]  # (8, 28, 28, 1)
model = nnx.bridge.ToNNX(VAE(latent_dim=2), rngs=nnx.Rngs(0)).lazy_init(images, jax.random.PRNGKey(1))

z_mean, z_log_var = model.encode(images)  # (8, 2) each: VAE.encode, called on the NNX module
decoded = model.decode(z_mean)  # (8, 28, 28, 1)

params = nnx.to_pure_dict(nnx.state(model, nnx.Param))  # the Linen parameter tree: VAE.apply takes it
state_dict = params_to_torch(params)  # torch_ref.VAE(2).load_state_dict(...) takes this

state = nnx.state(model, nnx.Param)  # and back: weights from a torch state dict into the NNX module
nnx.replace_by_pure_dict(state, params_from_torch(state_dict)["params"])
nnx.update(model, state)
print("NNX VAE:", {k: np.shape(v) for k, v in state_dict.items() if k.startswith("z_mean")}, decoded.shape)

"""20 Adam steps from shared weights, on the same real batches and the same eps, in both frameworks.

Tolerances:
- in float64 (both frameworks): the loss at every step and every final parameter agree to <= 1e-4 relative
  (issue 2); float64 rounding (~1e-16) leaves Adam nothing to amplify, so this bound has ample room;
- in float32, the loss at every step agrees with torch's to <= 1e-4 relative (issue 2);
- final parameters: Adam's first step is about ``lr * sign(g)``, so elements whose gradient is below float32
  noise (~1e-8 here) flip at random, and 20 steps amplify that. torch float32 itself ends 1.5e-2 (norm,
  encoder.4.weight) from torch float64 on this run; no float32 implementation can agree to 1e-4. So each
  final parameter of jaxvae must be as close to the float64 answer as torch float32's is: distance
  <= 2 x torch float32's distance + a floor of 1% of one Adam step per element (1e-2 x lr x sqrt(size)).
  The floor is for tensors that float32 noise barely moves, where one sample of torch's distance is no
  yardstick: z_mean.bias (2 elements) ends 6.5e-4 lr per element from float64 in torch float32 and
  2.3e-3 lr in the matmul forms. A semantic error (wrong bias correction, eps, a swapped kernel) moves
  parameters by ~lr per step everywhere, 100x the floor at the first step, and fails by orders of magnitude.
"""

import jax
import numpy as np
import pytest
import torch

from jaxvae import params_from_torch, params_to_torch
from jaxvae.train_step import TrainState, make_optimizer, make_train_step
from jaxvae.model import VAE
from parity_tests.conftest import IMPLS
from torch_ref import VAE as TorchVAE
from torch_ref.train import train_vae

STEPS, BATCH, LATENT, LR = 20, 32, 2, 5e-4


def torch_run(images, eps, dtype):
    torch.manual_seed(0)
    model = TorchVAE(LATENT).to(dtype)
    start = params_from_torch(model.state_dict())["params"]
    batches = [torch.from_numpy(b.transpose(0, 3, 1, 2).copy()).to(dtype) for b in images]
    history = train_vae(model, batches, lr=LR, eps_fn=lambda s: torch.from_numpy(eps[s]).to(dtype))
    return start, [h[0] for h in history], {k: v.double().numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def reference(mnist5k):
    """The same 20 steps in torch float32 and float64, with the eps jaxvae's steps draw."""
    images = np.asarray(mnist5k.train.images[: STEPS * BATCH]).reshape(STEPS, BATCH, 28, 28, 1)
    train_key = jax.random.PRNGKey(42)
    eps = [np.array(jax.random.normal(jax.random.fold_in(train_key, s), (BATCH, LATENT))) for s in range(STEPS)]
    start, losses32, final32 = torch_run(images, eps, torch.float32)
    _, _, final64 = torch_run(images, eps, torch.float64)
    return images, train_key, start, losses32, final32, final64


@pytest.mark.parametrize("impl, micro_batch, concurrent", [(impl, 0, 1) for impl in IMPLS] + [("matmul", 8, 1), ("matmul", 8, 2)])
def test_adam_trajectory(impl, micro_batch, concurrent, reference):
    """Every implementation of the step: each conv implementation, gradients in micro-batches, two at a time."""
    images, train_key, params, torch_losses, final32, final64 = reference
    vae = VAE(LATENT, conv_impl=impl)
    optimizer = make_optimizer(LR)
    step = jax.jit(make_train_step(vae, optimizer, 1.0, micro_batch, concurrent))
    state = TrainState(params, optimizer.init(params), jax.numpy.zeros((), jax.numpy.int32))
    jax_losses = []
    for b in images:
        state, metrics = step(state, b, train_key)
        jax_losses.append(float(metrics[0]))

    np.testing.assert_allclose(jax_losses, torch_losses, rtol=1e-4, atol=0)
    assert torch_losses[-1] < torch_losses[0] - 20  # it really trained
    final = params_to_torch({"params": state.params})
    for key, exact in final64.items():
        ours = np.linalg.norm(final[key] - exact)
        theirs = np.linalg.norm(final32[key] - exact)
        assert ours <= 2 * theirs + 1e-2 * LR * np.sqrt(exact.size), (key, ours, theirs)


def test_adam_trajectory_float64(mnist5k):
    """The issue's bound, literally: losses and final parameters within 1e-4 relative, in double precision."""
    images = np.asarray(mnist5k.train.images[: STEPS * BATCH], np.float64).reshape(STEPS, BATCH, 28, 28, 1)
    train_key = jax.random.PRNGKey(7)
    with jax.enable_x64(True):
        eps = [np.array(jax.random.normal(jax.random.fold_in(train_key, s), (BATCH, LATENT), jax.numpy.float64)) for s in range(STEPS)]
        torch.manual_seed(0)
        model = TorchVAE(LATENT).double()
        params = jax.tree_util.tree_map(jax.numpy.asarray, params_from_torch(model.state_dict(), dtype=np.float64)["params"])
        batches = [torch.from_numpy(b.transpose(0, 3, 1, 2).copy()) for b in images]
        torch_losses = [h[0] for h in train_vae(model, batches, lr=LR, eps_fn=lambda s: torch.from_numpy(eps[s]))]
        optimizer = make_optimizer(LR)
        step = jax.jit(make_train_step(VAE(LATENT, conv_impl="matmul"), optimizer, 1.0))
        state = TrainState(params, optimizer.init(params), jax.numpy.zeros((), jax.numpy.int32))
        jax_losses = []
        for b in images:
            state, metrics = step(state, jax.numpy.asarray(b), train_key)
            jax_losses.append(float(metrics[0]))
        assert state.params["decoder_6"]["kernel"].dtype == jax.numpy.float64
        final = params_to_torch({"params": state.params})
    np.testing.assert_allclose(jax_losses, torch_losses, rtol=1e-4, atol=0)
    for key, value in model.state_dict().items():
        want = value.numpy()
        assert np.max(np.abs(final[key].astype(np.float64) - want)) <= 1e-4 * np.max(np.abs(want)), key

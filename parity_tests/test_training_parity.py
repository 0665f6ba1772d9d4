"""20 Adam steps from shared weights on the same real batches, through jaxvae's step.

float64 is the arbiter (docs/parity.md):
- **float64 trajectory**: jaxvae's jitted step in float64 against torch_ref's ``train_vae`` in float64, same
  noise: the loss at every step and every final parameter within 1e-4 relative (the bound the port was held to; both
  frameworks do the same math to ~1e-16 rounding: we measured 2.7e-16 on losses and 4.6e-13 on parameters).
- **float32, step by step**: at each step s, jaxvae's float32 step starts from the float64 trajectory's state
  (rounded to float32) and its loss must equal torch_ref's float64 loss of that state, batch and noise within
  ``F32_LOSS_RTOL`` (2e-6), the single-pass float32 bound; measured <= 6.8e-8. Nothing accumulates between
  steps, so the bound is as tight
  at step 20 as at step 1 and no seed or CPU can move it.

Free-running float32 steps are not compared: Adam turns a rounding difference in a near-zero gradient into a whole
step (lr), so no bound holds on every machine. The weights after the 20 steps are held to the harness too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxvae import params_from_torch, params_to_torch
from jaxvae.model import VAE
from jaxvae.parity.check import parity_inputs
from jaxvae.parity.method import F32_LOSS_RTOL, run_parity
from jaxvae.train_step import TrainState, make_optimizer, make_train_step
from torch_ref import VAE as TorchVAE
from torch_ref.train import train_vae, vae_loss

pytestmark = pytest.mark.xdist_group("training_parity")  # one worker computes the module's fixtures

STEPS, BATCH, LATENT, LR = 20, 32, 2, 5e-4
# (conv_impl, micro_batch, concurrent): the CPU's form and micro-batches, two side by side; the sweep tier adds each
# form whole and micro-batched. (Every form's gradients against torch's: the harness; micro-batches against the
# whole batch: tests/test_train_step.py.)
SWEPT = [("xla", 0, 1), ("xla", 8, 2), ("matmul", 0, 1), ("matmul", 8, 1), ("pad", 0, 1)]
IMPLEMENTATIONS = [("matmul", 8, 2), *[pytest.param(impl, marks=pytest.mark.long) for impl in SWEPT]]


def noise(train_key, step, dtype):
    """The noise jaxvae's step ``step`` draws (``fold_in(train_key, step)``, in the batch's dtype)."""
    with jax.enable_x64(dtype == np.float64):
        return np.array(jax.random.normal(jax.random.fold_in(train_key, step), (BATCH, LATENT), dtype))


def torch_model(state_dict, dtype=torch.float64):
    model = TorchVAE(LATENT)
    model.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state_dict.items()}, strict=True)
    return model.to(dtype)


def nchw(images):
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).double()


@pytest.fixture(scope="session")
def reference(mnist5k):
    """torch_ref's 20 float64 steps, with the float64 noise jaxvae's float64 step draws."""
    images = np.asarray(mnist5k.train.images[: STEPS * BATCH], np.float64).reshape(STEPS, BATCH, 28, 28, 1)
    train_key = jax.random.PRNGKey(7)
    torch.manual_seed(0)
    start = {k: v.numpy() for k, v in TorchVAE(LATENT).state_dict().items()}
    model = torch_model(start)
    history = train_vae(
        model, [nchw(b) for b in images], lr=LR, eps_fn=lambda s: torch.from_numpy(noise(train_key, s, np.float64))
    )
    final = {k: v.numpy() for k, v in model.state_dict().items()}
    return images, train_key, start, np.array([h[0] for h in history]), final


def jax_step(impl, micro_batch, concurrent):
    optimizer = make_optimizer(LR)
    return optimizer, jax.jit(make_train_step(VAE(LATENT, conv_impl=impl), optimizer, 1.0, micro_batch, concurrent))


def float64_states(reference, impl, micro_batch, concurrent):
    """jaxvae's float64 trajectory: the state before each step, the losses, the final parameters (torch keys)."""
    images, train_key, start, _, _ = reference
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(jnp.asarray, params_from_torch(start, dtype=np.float64)["params"])
        optimizer, step = jax_step(impl, micro_batch, concurrent)
        state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
        states, losses = [], []
        for batch in images:
            states.append(jax.tree_util.tree_map(np.asarray, state))
            state, metrics = step(state, jnp.asarray(batch), train_key)
            losses.append(float(metrics[0]))
        assert state.params["decoder_6"]["kernel"].dtype == jnp.float64
        return states, np.array(losses), params_to_torch({"params": state.params})


@pytest.fixture(scope="session", params=IMPLEMENTATIONS, ids=lambda p: "{}-micro{}-x{}".format(*p))
def trajectory(request, reference):
    return request.param, float64_states(reference, *request.param)


def test_float64_trajectory(trajectory, reference):
    """The port's bound, in double precision: losses and final parameters within 1e-4 relative."""
    _, (_, losses, final) = trajectory
    _, _, _, torch_losses, torch_final = reference
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-4, atol=0)
    assert torch_losses[-1] < torch_losses[0] - 20  # it really trained
    for key, want in torch_final.items():
        assert np.max(np.abs(final[key] - want)) <= 1e-4 * np.max(np.abs(want)), key


def torch_loss(params_torch, batch, eps) -> float:
    """torch_ref's float64 loss of one batch with the given parameters and noise."""
    model = torch_model(params_torch)
    with torch.no_grad():
        x = nchw(batch)
        _, z_mean, z_log_var, decoded = model(x, torch.from_numpy(np.asarray(eps, np.float64)))
        return float(vae_loss(x, decoded, z_mean, z_log_var)[0])


def test_float32_steps_from_the_float64_states(trajectory, reference):
    """Each float32 step from the float64 state before it: its loss within the single-pass float32 bound."""
    (impl, micro_batch, concurrent), (states, _, _) = trajectory
    images, train_key, _, _, _ = reference
    _, step = jax_step(impl, micro_batch, concurrent)
    errors = []
    for s, (state64, batch) in enumerate(zip(states, images)):
        state = jax.tree_util.tree_map(
            lambda a: jnp.asarray(a, jnp.int32 if a.dtype.kind == "i" else jnp.float32), state64
        )
        _, metrics = step(state, jnp.asarray(batch, jnp.float32), train_key)
        want = torch_loss(params_to_torch({"params": state64.params}), batch, noise(train_key, s, np.float32))
        errors.append(abs(float(metrics[0]) - want) / want)
    assert max(errors) <= F32_LOSS_RTOL, [f"{e:.1e}" for e in errors]


def test_trained_weights_pass(reference):
    """The weights after torch_ref's 20 steps pass the harness as its initial ones do (the matmul form)."""
    _, _, _, _, final = reference
    x, eps = parity_inputs(8, LATENT, 11)
    report = run_parity({k: np.asarray(v, np.float32) for k, v in final.items()}, x, eps, ["matmul"])
    assert report.passed, [(v.label, [(r.name, r.rel) for r in v.rows if not r.passed]) for v in report.verdicts()]

"""20 Adam steps from shared weights on the same real batches, through jaxvae's step and torch_ref's.

float64 is the arbiter (docs/parity.md):
- **float64 trajectory**: jaxvae's jitted step in float64 against torch_ref's ``train_vae`` in float64, same
  noise: the loss at every step and every final parameter within 1e-4 relative (the bound the port was held to; both
  frameworks do the same math to ~1e-16 rounding: we measured 2.7e-16 on losses and 4.6e-13 on parameters).
- **float32, step by step**: at each step s, jaxvae's float32 step starts from the float64 trajectory's state
  (rounded to float32) and its loss must equal torch_ref's float64 loss of that state, batch and noise within
  ``F32_LOSS_RTOL`` (2e-6), the single-pass float32 bound; measured <= 6.8e-8. Nothing accumulates between
  steps, so the bound is as tight at step 20 as at step 1 and no seed or CPU can move it.

Free-running float32 steps are not compared: Adam turns a rounding difference in a near-zero gradient into a whole
step (lr), so no bound holds on every machine. The weights after the 20 steps are held to the harness too.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxvae import params_from_torch, params_to_torch
from jaxvae.data import binarize, load_mnist5k
from jaxvae.model import VAE
from jaxvae.parity.check import parity_inputs
from jaxvae.parity.method import F32_LOSS_RTOL, run_parity
from jaxvae.train_step import TrainState, make_optimizer, make_train_step
from torch_ref import VAE as TorchVAE
from torch_ref.train import model_outputs, train_vae, vae_loss

STEPS, BATCH, LATENT, LR = 20, 32, 2, 5e-4
# (likelihood, conv_impl, micro_batch, concurrent): the CPU's form and micro-batches, two side by side; the long tier
# adds each form whole and micro-batched, and the Bernoulli loss on thresholded digits. (Every form's gradients
# against torch's: the harness; micro-batches against the whole batch: tests/test_train_step.py.)
SWEPT = [("xla", 0, 1), ("xla", 8, 2), ("matmul", 0, 1), ("matmul", 8, 1), ("pad", 0, 1)]
CASES = [("gaussian", "matmul", 8, 2), *[pytest.param(("gaussian", *i), marks=pytest.mark.long) for i in SWEPT]]
CASES += [pytest.param(("bernoulli", "matmul", 8, 2), marks=pytest.mark.long)]


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


@functools.cache
def reference(likelihood: str):
    """torch_ref's 20 float64 steps (the Bernoulli loss on thresholded digits), with the float64 noise jaxvae's
    float64 step draws: the batches, the train key, the starting and final weights, the losses."""
    images = np.asarray(load_mnist5k().train.images[: STEPS * BATCH], np.float64).reshape(STEPS, BATCH, 28, 28, 1)
    images = binarize.threshold(images).astype(np.float64) if likelihood == "bernoulli" else images
    train_key = jax.random.PRNGKey(7)
    torch.manual_seed(0)
    start = {k: v.numpy() for k, v in TorchVAE(LATENT).state_dict().items()}
    model, eps = torch_model(start), lambda s: torch.from_numpy(noise(train_key, s, np.float64))
    history = train_vae(model, [nchw(b) for b in images], lr=LR, eps_fn=eps, likelihood=likelihood)
    final = {k: v.numpy() for k, v in model.state_dict().items()}
    return images, train_key, start, final, np.array([h[0] for h in history])


def jax_step(likelihood, impl, micro_batch, concurrent):
    optimizer, model = make_optimizer(LR), VAE(LATENT, conv_impl=impl)
    return optimizer, jax.jit(make_train_step(model, optimizer, 1.0, micro_batch, concurrent, likelihood=likelihood))


@pytest.fixture(scope="session", params=CASES, ids=lambda p: "{}-{}-micro{}-x{}".format(*p))
def trajectory(request):
    """A case, its reference, and jaxvae's float64 trajectory: the state before each step, the losses, the final
    parameters (torch keys)."""
    images, train_key, start, _, _ = reference(request.param[0])
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(jnp.asarray, params_from_torch(start, dtype=np.float64)["params"])
        optimizer, step = jax_step(*request.param)
        state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
        states, losses = [], []
        for batch in images:
            states.append(jax.tree_util.tree_map(np.asarray, state))
            state, metrics = step(state, jnp.asarray(batch), train_key)
            losses.append(float(metrics[0]))
        assert state.params["decoder_6"]["kernel"].dtype == jnp.float64
        return request.param, states, np.array(losses), params_to_torch({"params": state.params})


def test_float64_trajectory(trajectory):
    """The port's bound, in double precision: losses and final parameters within 1e-4 relative."""
    (likelihood, *_), _, losses, final = trajectory
    *_, torch_final, torch_losses = reference(likelihood)
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-4, atol=0)
    assert torch_losses[-1] < torch_losses[0] - 20  # it really trained
    for key, want in torch_final.items():
        assert np.max(np.abs(final[key] - want)) <= 1e-4 * np.max(np.abs(want)), key


def test_float32_steps_from_the_float64_states(trajectory):
    """Each float32 step from the float64 state before it: its loss within the single-pass float32 bound of
    torch_ref's float64 loss of that state, batch and noise."""
    case, states, _, _ = trajectory
    images, train_key, *_ = reference(case[0])
    _, step = jax_step(*case)
    as32 = lambda a: jnp.asarray(a, jnp.int32 if a.dtype.kind == "i" else jnp.float32)  # noqa: E731
    errors = []
    for s, (state64, batch) in enumerate(zip(states, images)):
        _, metrics = step(jax.tree_util.tree_map(as32, state64), jnp.asarray(batch, jnp.float32), train_key)
        model, x = torch_model(params_to_torch({"params": state64.params})), nchw(batch)
        with torch.no_grad():
            eps = torch.from_numpy(np.asarray(noise(train_key, s, np.float32), np.float64))
            z_mean, z_log_var, _, _, output = model_outputs(model, x, eps, case[0])
            want = float(vae_loss(x, output, z_mean, z_log_var, 1.0, case[0])[0])
        errors.append(abs(float(metrics[0]) - want) / want)
    assert max(errors) <= F32_LOSS_RTOL, [f"{e:.1e}" for e in errors]


def test_trained_weights_pass():
    """The weights after torch_ref's 20 steps pass the harness as its initial ones do (the matmul form)."""
    *_, final, _ = reference("gaussian")
    x, eps = parity_inputs(8, LATENT, 11)
    report = run_parity({k: np.asarray(v, np.float32) for k, v in final.items()}, x, eps, ["matmul"])
    assert report.passed, [(v.label, [(r.name, r.rel) for r in v.rows if not r.passed]) for v in report.verdicts()]

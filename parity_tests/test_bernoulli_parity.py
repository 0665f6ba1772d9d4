"""``--likelihood bernoulli`` against torch_ref's Bernoulli loss (``binary_cross_entropy_with_logits``).

- The harness (docs/parity.md) with the Bernoulli loss: every activation up to the logits, the loss and every
  gradient pass on continuous and on binarised digits (here one case of each; 20 seeds of both in
  scripts/parity_sweep.py); wrong Bernoulli losses fail it.
- A float64 trajectory: 10 Adam steps of jaxvae's jitted step and of ``torch_ref.train.train_vae`` on the same
  thresholded batches and noise agree to 1e-9 relative (both frameworks in double; measured ~1e-13).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from jaxvae import params_from_torch, params_to_torch
from jaxvae.data import binarize
from jaxvae.model import VAE
from jaxvae.parity.check import parity_inputs, parity_weights, sweep_case
from jaxvae.parity.method import EXACT_RTOL, run_parity
from jaxvae.train_step import TrainState, make_optimizer, make_train_step
from torch_ref import VAE as TorchVAE
from torch_ref.train import train_vae

ROWS = 8 + 10 + 2 + 1 + 22  # activations up to the logits (torch computes no Sigmoid), heads, loss, gradients


def test_no_false_alarms_on_thresholded_digits():
    """Binary digits at the mutants' shapes (latent 2, batch 8), seed 0, one implementation; the unmutated case
    below, with continuous digits, another (the likelihood is the same code for every implementation, each of which
    the Gaussian cases compare). scripts/parity_sweep.py runs docs/parity.md's two Bernoulli cases (latent 2 batch
    32, latent 16 batch 8 thresholded) at 20 seeds, every implementation."""
    result = sweep_case(2, 8, range(1), "bernoulli", binary=True, conv_impls=["pad"])  # all three: below
    assert result["rows"] == [ROWS]
    assert not result["failed"], result


def _mean_over_pixels(monkeypatch):
    """The binary cross-entropy averaged over pixels instead of summed (Keras' default ``binary_crossentropy``)."""
    import jaxvae.likelihoods as likelihoods

    monkeypatch.setattr(
        likelihoods,
        "bernoulli_nll",
        lambda x, logits: jnp.mean(optax.sigmoid_binary_cross_entropy(logits, x).reshape(x.shape[0], -1), axis=-1),
    )


def _sigmoid_twice(monkeypatch):
    """The loss fed the decoder's probabilities as if they were logits."""
    from jaxvae.likelihoods import Bernoulli

    monkeypatch.setattr(Bernoulli, "decoder_output", "decode")


def _targets_and_logits_swapped(monkeypatch):
    import jaxvae.likelihoods as likelihoods

    monkeypatch.setattr(
        likelihoods,
        "bernoulli_nll",
        lambda x, logits: jnp.sum(optax.sigmoid_binary_cross_entropy(x, logits).reshape(x.shape[0], -1), axis=-1),
    )


def test_the_unmutated_case_passes():
    x, eps = parity_inputs(8, 2, 4)
    assert run_parity(parity_weights(None, 2, 4), x, eps, ["xla"], likelihood="bernoulli").passed


@pytest.mark.parametrize(
    "mutant, impl",
    [(_mean_over_pixels, "xla"), (_sigmoid_twice, "xla"), (_targets_and_logits_swapped, "xla")],
    ids=lambda m: getattr(m, "__name__", m),
)
def test_wrong_bernoulli_losses_fail(mutant, impl, monkeypatch):
    """A loss is no implementation's code: each mutant runs on the unmutated case's implementation (a mutated capture
    compiles afresh)."""
    x, eps = parity_inputs(8, 2, 4)
    state = parity_weights(None, 2, 4)  # this case passes unmutated: test_the_unmutated_case_passes
    mutant(monkeypatch)
    report = run_parity(state, x, eps, [impl], likelihood="bernoulli", runs=("float64", "float32"))
    for impl, runs in report.by_impl.items():
        worst = max((r.rel for r in runs["float64"].rows), default=np.inf)
        assert worst > 1e3 * EXACT_RTOL, (impl, worst)
        assert not runs["float32"].passed, impl


@pytest.mark.long  # the Gaussian loss's trajectory runs in the README's test command (test_training_parity.py)
def test_float64_trajectory(mnist5k):
    steps, batch, latent, lr = 10, 32, 2, 5e-4
    images = (
        binarize.threshold(mnist5k.train.images[: steps * batch]).astype(np.float64).reshape(steps, batch, 28, 28, 1)
    )
    train_key = jax.random.PRNGKey(3)
    with jax.enable_x64(True):
        noise = [
            np.asarray(jax.random.normal(jax.random.fold_in(train_key, s), (batch, latent), jnp.float64))
            for s in range(steps)
        ]
    torch.manual_seed(1)
    model = TorchVAE(latent).double()
    start = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    nchw = [torch.from_numpy(np.ascontiguousarray(b.transpose(0, 3, 1, 2))) for b in images]
    want = np.array(
        [
            h[0]
            for h in train_vae(
                model, nchw, lr=lr, eps_fn=lambda s: torch.from_numpy(noise[s].copy()), likelihood="bernoulli"
            )
        ]
    )
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(jnp.asarray, params_from_torch(start, dtype=np.float64)["params"])
        optimizer = make_optimizer(lr)
        step = jax.jit(make_train_step(VAE(latent, conv_impl="matmul"), optimizer, 1.0, 8, 2, likelihood="bernoulli"))
        state = TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
        got = []
        for b in images:
            state, metrics = step(state, jnp.asarray(b), train_key)
            got.append(float(metrics[0]))
        final = params_to_torch({"params": state.params})
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)
    assert want[-1] < want[0] - 50  # it trained
    for key, value in model.state_dict().items():
        assert np.max(np.abs(final[key] - value.numpy())) <= 1e-9 * np.max(np.abs(value.numpy())), key

"""``--likelihood bernoulli`` against torch_ref's Bernoulli loss (``binary_cross_entropy_with_logits``).

- The harness (docs/parity.md) with the Bernoulli loss: every activation up to the logits, the loss and every
  gradient pass on continuous and on binarised digits (here one case of each; 20 seeds of both in
  scripts/parity_sweep.py); wrong Bernoulli losses fail it.
- Its float64 trajectory: parity_tests/test_training_parity.py (the long tier).
"""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvae.parity.check import parity_inputs, parity_weights, sweep_case
from jaxvae.parity.method import EXACT_RTOL, run_parity

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


@pytest.mark.parametrize("objective, samples", [("elbo", 1), ("iwae", 3)])
def test_the_unmutated_case_passes(objective, samples):
    """The ELBO, and the importance-weighted bound with 3 draws per image."""
    x, eps = parity_inputs(8, 2, 4, samples=samples)
    report = run_parity(parity_weights(None, 2, 4), x, eps, ["xla"], likelihood="bernoulli", objective=objective)
    assert report.passed


@pytest.mark.parametrize(
    "mutant, impl",
    [
        (_mean_over_pixels, "xla"),
        (_sigmoid_twice, "xla"),
        pytest.param(_targets_and_logits_swapped, "xla", marks=pytest.mark.long),  # the loss mistaken like the first
    ],
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

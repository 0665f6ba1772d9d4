"""The whole model against torch_ref: the harness passes the correct port, at every shape.

``run_parity`` gives three verdicts (jaxvae float64 exact, jaxvae float32 and torch float32 against float64) for
each convolution implementation; tolerances and their grounds are in ``jaxvae.parity`` and docs/parity.md.
"""

import pytest

from jaxvae.parity.check import sweep_case

SEEDS = range(1)  # the suite's subset; scripts/parity_sweep.py runs 20 seeds of every case (docs/parity.md)
ROWS = 8 + 11 + 2 + 1 + 22  # encoder/decoder children, 2 heads, loss, 11 layers' weight and bias
# The suite's subset: the smallest and largest shapes, one implementation each; the sweep script compares all three
# at 20 seeds of both batch sizes and latent sizes. (test_mutants.py runs all three at batch 8, latent 2; the GPU's
# parity runs at the default batch 32.) Batch 32, latent 2, seed 0 is the case whose unmatched float32 comparison
# failed on AVX-512 CPUs (a kink flip; docs/parity.md).
IMPL_OF_CASE = {(32, 2): "xla", (1, 16): "pad"}


@pytest.mark.parametrize("batch, latent_dim", list(IMPL_OF_CASE))
def test_no_false_alarms(latent_dim, batch):
    """Weights, digits and noise all drawn from each seed; the float64, float32 and bfloat16 verdicts."""
    result = sweep_case(latent_dim, batch, SEEDS, conv_impls=[IMPL_OF_CASE[batch, latent_dim]])
    assert result["rows"] == [ROWS]
    assert not result["failed"], result

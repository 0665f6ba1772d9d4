"""No misses: every deliberately wrong port (``parity_tests.mutants``), applied at test time, fails the harness.

Each mutant must fail the float64 exact verdict (where any semantic difference shows by orders of magnitude)
and, except a 1e-6 change of the weights, which float32 cannot resolve by design, the float32 verdict too.
"""

import numpy as np
import pytest

from jaxvae.parity.check import parity_inputs, parity_weights
from jaxvae.parity.method import EXACT_RTOL, run_parity
from parity_tests.mutants import JAX_MUTANTS, TORCH_MUTANTS

LATENT, BATCH, SEED = 2, 8, 4


@pytest.fixture(scope="module")
def case():
    x, eps = parity_inputs(BATCH, LATENT, SEED)
    return parity_weights(None, LATENT, SEED), x, eps


def test_the_unmutated_case_passes(case):
    assert run_parity(*case).passed


@pytest.mark.parametrize("mutant", TORCH_MUTANTS + JAX_MUTANTS, ids=lambda m: m.__name__)
def test_mutant_fails(mutant, case, monkeypatch):
    mutant(monkeypatch)
    report = run_parity(*case)
    assert not report.passed
    for impl, (exact, single) in report.by_impl.items():
        assert not exact.passed, (impl, "float64 missed", mutant.__name__)
        worst = max((r.rel for r in exact.rows), default=np.inf)
        assert exact.error or worst > 1e3 * EXACT_RTOL, (impl, worst)  # fails by orders of magnitude
        if mutant.__name__ != "torch_weight_off_by_1e6":
            assert not single.passed, (impl, "float32 missed", mutant.__name__)

"""How far each deliberately wrong port (``parity_tests.mutants``) lands from the float64 reference.

    python scripts/mutant_table.py

For every mutant, applied as the suite applies it, prints the worst relative error over every tensor of the
float64, float32 and bfloat16 verdicts (batch 8, latent 2, seed 4: the suite's mutant case; the xla form, the
pad form for its own mutant) and which verdicts still passed. docs/parity.md's mutant tables come from here.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # parity_tests is not installed

from _pytest.monkeypatch import MonkeyPatch  # noqa: E402

from jaxvae.parity.check import parity_inputs, parity_weights  # noqa: E402
from jaxvae.parity.method import run_parity  # noqa: E402
from parity_tests.mutants import BFLOAT16_MUTANTS, JAX_MUTANTS, TORCH_MUTANTS  # noqa: E402


def worst(verdict) -> float:
    return float("inf") if verdict.error else max((r.rel for r in verdict.rows), default=float("inf"))


def main() -> int:
    x, eps = parity_inputs(8, 2, 4)
    state = parity_weights(None, 2, 4)
    print(f"{'mutant':<36} {'impl':<6} {'f64':>8} {'f32':>8} {'bf16':>8}  passed")
    for mutant in TORCH_MUTANTS + JAX_MUTANTS + BFLOAT16_MUTANTS:
        impl = "pad" if "pad_form" in mutant.__name__ else "xla"
        patch = MonkeyPatch()
        mutant(patch)
        try:
            runs = run_parity(state, x, eps, [impl]).by_impl[impl]
        finally:
            patch.undo()
        cells = " ".join(f"{worst(runs[name]):8.1e}" for name in ("float64", "float32", "bfloat16"))
        print(f"{mutant.__name__:<36} {impl:<6} {cells}  {[name for name, v in runs.items() if v.passed]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

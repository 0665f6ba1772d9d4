"""The verdicts do not move when the kernels do: the harness under other XLA and torch kernels at once.

``scripts/parity_sweep.py`` runs the comparison in a fresh process under the setting "all alternatives": XLA
capped at AVX2 with XNNPACK and YNNPACK off, ATen at its portable default ISA, torch's oneDNN off, one torch
thread; one case (latent 2, batch 32), the "pad" implementation (XLA's convolutions and the heads' dots). The
full sweep, setting by setting, over both latent sizes and more seeds, is in docs/parity.md.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "parity_sweep.py"


@pytest.mark.long  # a sweep over kernel settings, each in a process of its own
def test_all_alternative_kernels_pass(tmp_path):
    command = [sys.executable, str(SCRIPT), "--seeds", "1", "--cases", "gaussian latent 2 batch 32"]
    command += ["--settings", "all alternatives", "--impls", "pad", "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    ((case,),) = json.loads((tmp_path / "summary.json").read_text())["settings"].values()
    assert case["case"] == "gaussian latent 2 batch 32" and not case["failed"]
    assert case["aten"] == "DEFAULT"  # the switch took effect in the worker

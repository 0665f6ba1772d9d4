"""The verdicts do not move when the kernels do: the harness under other XLA and torch kernels at once.

``scripts/parity_kernels.py`` runs the comparison in a fresh process under the setting "all alternatives": XLA
capped at AVX2 with XNNPACK and YNNPACK off, ATen at its portable default ISA, torch's oneDNN off, one torch
thread; one case (latent 2, batch 32), the "pad" implementation (XLA's convolutions and the heads' dots). The
full sweep, setting by setting, over both latent sizes and
more seeds, is in docs/parity.md.
"""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "parity_kernels.py"


def test_all_alternative_kernels_pass(tmp_path):
    command = [
        sys.executable,
        str(SCRIPT),
        "--seeds",
        "1",
        "--latents",
        "2",
        "--batches",
        "32",
        "--settings",
        "all alternatives",
        "--impls",
        "pad",  # XLA's convolutions and dots, the cheapest to compile; the script's default is all three
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    (setting,) = json.loads((tmp_path / "summary.json").read_text())["settings"]
    assert setting["cases"] == 1 and setting["passed"] == 1
    assert setting["aten_capability"] == "DEFAULT"  # the switch took effect in the worker

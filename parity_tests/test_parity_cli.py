"""``jaxvae parity``: every verdict per tensor, exit 0 exactly when the port is right (bad files and flags: rows of
tests/test_refusals.py). The cases are the suite's other parity cases, so that their compiled captures are shared."""

import json
import os
import subprocess
import sys

import torch

from jaxvae.cli import main
from parity_tests.mutants import BATCH, SEED
from torch_ref import VAE as TorchVAE

# Loaded by Python at start-up from PYTHONPATH: torch_ref's Trim takes the wrong 28x28, in the CLI's own process.
MUTATED_TORCH_REF = """
import torch_ref.model
torch_ref.model.Trim.forward = lambda self, x: x[:, :, 1:, 1:]
"""
CASE = ["--batch-size", str(BATCH), "--seed", str(SEED)]  # the mutants' case, which passes unmutated


def run_here(capsys, *args) -> tuple[int, str, str]:
    """``jaxvae parity ARGS`` in this process (no interpreter start-up): exit status, stdout, stderr."""
    status = main(["parity", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_tables(capsys):
    status, out, err = run_here(capsys, *CASE)
    assert status == 0, out + err
    assert "[xla]" in out and "[matmul]" in out and "[pad]" in out and out.rstrip().endswith("all passed")
    assert all(column in out for column in ("f64 exact", "f32 jaxvae", "bf16 jaxvae", "f32 torch", "near", "flips"))
    assert "within float32 rounding" in out and "grad decoder.8.bias" in out and "decoder.6" in out


def test_json_report_at_batch_one_from_saved_weights(tmp_path, capsys):
    torch.manual_seed(5)
    path = tmp_path / "vae16.pt"
    torch.save(TorchVAE(16).state_dict(), path)
    status, out, err = run_here(capsys, "--json", "--torch-weights", path, "--batch-size", "1", "--conv-impl", "pad")
    assert status == 0, out + err
    report = json.loads(out)
    assert (
        report["passed"]
        and report["batch_size"] == 1
        and report["latent_dim"] == 16
        and list(report["impls"]) == ["pad"]
    )
    assert report["weights"] == f"from {path}"
    exact = report["impls"]["pad"]["float64"]
    assert exact["passed"] and max(r["rel"] for r in exact["rows"]) <= report["tolerances"]["float64"]["activations"]
    assert set(exact["kinks"]["near"]) == {"encoder.0", "encoder.2", "encoder.4", "decoder.2", "decoder.4", "decoder.6"}


def test_a_mutated_torch_ref_fails_with_exit_1(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(MUTATED_TORCH_REF)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    command = [sys.executable, "-m", "jaxvae.cli", "parity", *CASE, "--conv-impl", "matmul"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SOME FAILED" in result.stdout and "FAIL (f64 exact, f32 jaxvae, bf16 jaxvae)" in result.stdout
    assert "Traceback" not in result.stderr

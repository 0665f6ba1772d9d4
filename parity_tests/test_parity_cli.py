"""``jaxvae parity``: every verdict per tensor, exit 0 exactly when the port is right (bad files and flags: rows of
tests/test_refusals.py). The cases are the suite's other parity cases, so that their compiled captures are shared."""

import json

import torch

from jaxvae.run.cli import main
from parity_tests.mutants import BATCH, SEED, torch_trim_wrong_corner
from torch_ref import VAE as TorchVAE

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


def test_a_mutated_torch_ref_fails_with_exit_1(capsys, monkeypatch):
    torch_trim_wrong_corner(monkeypatch)  # torch_ref's Trim takes the wrong 28x28
    status, out, err = run_here(capsys, *CASE, "--conv-impl", "matmul")
    assert status == 1, out + err
    assert "SOME FAILED" in out and "FAIL (f64 exact, f32 jaxvae, bf16 jaxvae)" in out

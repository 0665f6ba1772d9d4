"""``jaxvae parity``: both verdicts per tensor, exit 0 exactly when the port is right, one-line errors for bad files."""

import json
import os
import subprocess
import sys

import torch

from jaxvae.cli import main
from torch_ref import VAE as TorchVAE

# Loaded by Python at start-up from PYTHONPATH: torch_ref's Trim takes the wrong 28x28, in the CLI's own process.
MUTATED_TORCH_REF = """
import torch_ref.model
torch_ref.model.Trim.forward = lambda self, x: x[:, :, 1:, 1:]
"""


def run_here(capsys, *args) -> tuple[int, str, str]:
    """``jaxvae parity ARGS`` in this process (no interpreter start-up): exit status, stdout, stderr."""
    status = main(["parity", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def run(*args, env=None):
    """``jaxvae parity ARGS`` in a process of its own (to see its stderr whole, or to mutate torch_ref there)."""
    return subprocess.run(
        [sys.executable, "-m", "jaxvae.cli", "parity", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_defaults_pass_with_both_verdicts():
    """batch 32, latent 2, seed 0, both implementations: a case that an unmatched float32 comparison failed on
    AVX-512 CPUs (a kink flip; docs/parity.md)."""
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "[xla]" in out and "[matmul]" in out and "[pad]" in out and out.rstrip().endswith("all passed")
    assert all(column in out for column in ("f64 exact", "f32 jaxvae", "bf16 jaxvae", "f32 torch", "near", "flips"))
    assert "within float32 rounding" in out and "grad decoder.8.bias" in out and "decoder.6" in out


def test_json_report_at_batch_one(capsys):
    status, out, err = run_here(
        capsys, "--json", "--batch-size", "1", "--latent-dim", "16", "--seed", "5", "--conv-impl", "xla"
    )
    assert status == 0, out + err
    report = json.loads(out)
    assert (
        report["passed"]
        and report["batch_size"] == 1
        and report["latent_dim"] == 16
        and list(report["impls"]) == ["xla"]
    )
    exact = report["impls"]["xla"]["float64"]
    assert exact["passed"] and max(r["rel"] for r in exact["rows"]) <= report["tolerances"]["float64"]["activations"]
    assert set(exact["kinks"]["near"]) == {"encoder.0", "encoder.2", "encoder.4", "decoder.2", "decoder.4", "decoder.6"}


def test_a_mutated_torch_ref_fails_with_exit_1(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(MUTATED_TORCH_REF)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    result = run("--batch-size", "8", "--seed", "4", "--conv-impl", "matmul", env=env)  # test_mutants.py's case
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SOME FAILED" in result.stdout and "FAIL (f64 exact, f32 jaxvae, bf16 jaxvae)" in result.stdout
    assert "Traceback" not in result.stderr


def test_saved_torch_weights(tmp_path, capsys):
    torch.manual_seed(5)
    path = tmp_path / "vae16.pt"
    torch.save(TorchVAE(16).state_dict(), path)
    status, out, err = run_here(capsys, "--torch-weights", path, "--batch-size", "1", "--conv-impl", "matmul")
    assert status == 0, out + err
    assert "latent 16" in out and f"from {path}" in out


def test_bad_weight_files_and_flags(tmp_path, capsys):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    result = run("--torch-weights", garbage)  # in its own process: the whole of stderr is the one line
    assert result.returncode == 2 and "not a loadable torch state dict" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    partial = tmp_path / "partial.pt"
    state = TorchVAE(2).state_dict()
    del state["decoder.8.bias"]
    torch.save(state, partial)
    status, _, err = run_here(capsys, "--torch-weights", partial)
    assert status == 2 and "decoder.8.bias" in err
    for flags, message in (
        (["--batch-size", "0"], "--batch-size must be between 1 and 1000"),
        (["--latent-dim", "0"], "--latent-dim must be an integer in 1..4096"),
    ):
        status, _, err = run_here(capsys, *flags)
        assert status == 2 and message in err and len(err.strip().splitlines()) == 1

"""``jaxvae parity``: the per-layer table, exit 0 when all pass, one-line errors for bad weight files."""

import subprocess
import sys

import torch

from torch_ref import VAE as TorchVAE


def run(*args):
    return subprocess.run([sys.executable, "-m", "jaxvae.cli", "parity", *map(str, args)], capture_output=True, text=True, timeout=600)


def test_random_weights_pass():
    """The command's defaults (batch 32, seed 0): the case where a pre-activation lands on 0.0 in the matmul
    forms, so LeakyReLU's derivative at the kink must be torch's."""
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[xla] activations" in result.stdout and "[matmul] gradients" in result.stdout
    assert "decoder.6" in result.stdout and "all passed" in result.stdout


def test_saved_torch_weights(tmp_path):
    torch.manual_seed(5)
    path = tmp_path / "vae16.pt"
    torch.save(TorchVAE(16).state_dict(), path)
    result = run("--torch-weights", path, "--batch-size", "2", "--conv-impl", "matmul")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "latent 16" in result.stdout


def test_bad_weight_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    result = run("--torch-weights", garbage)
    assert result.returncode == 2 and "not a loadable torch state dict" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    partial = tmp_path / "partial.pt"
    state = TorchVAE(2).state_dict()
    del state["decoder.8.bias"]
    torch.save(state, partial)
    result = run("--torch-weights", partial)
    assert result.returncode == 2 and "decoder.8.bias" in result.stderr

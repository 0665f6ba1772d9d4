"""``jaxvae evaluate``: the ELBO, the reconstruction at z = mean and the IWAE estimate of a trained run, in nats,
for both likelihoods; bad flags are one line. The estimator itself is tested in tests/test_iwae.py."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from jaxvae.cli import main
from jaxvae.run.commands import evaluate_run

SMALL = ["--train-examples", "256", "--test-examples", "60", "--batch-size", "32", "--epochs", "2"]


@pytest.fixture(scope="module", params=["gaussian", "bernoulli"])
def run(request, tmp_path_factory, small_run):
    """A 2-epoch run of each likelihood: the suite's shared Gaussian run, and a Bernoulli one on thresholded digits."""
    if request.param == "gaussian":
        return small_run, "gaussian"
    out = tmp_path_factory.mktemp("runs") / request.param
    assert main(["train", "--out", str(out), *SMALL, "--likelihood", "bernoulli", "--binarize", "threshold"]) == 0
    return out, request.param


def test_the_report(run):
    out, likelihood = run
    result = evaluate_run(out, iw_samples=64, test_examples=40)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert result["likelihood"] == likelihood and result["test_images"] == 40 and result["iw_samples"] == 64
    assert likelihood.capitalize() in result["likelihood_is"]
    # the ELBO is the loss's negative plus the Gaussian's constant (1e-6: float32 sums of ~800 nats)
    constant = -392 * math.log(math.pi) if likelihood == "gaussian" else 0.0
    assert abs(result["elbo_nats"] - (constant - result["loss"])) <= 1e-6 * abs(result["elbo_nats"])
    # log p(x) >= ELBO in expectation; a 64-sample IWAE estimate sits far above a one-sample ELBO at this stage of
    # training (measured: 20-40 nats), its standard error ~1-3 nats
    assert result["log_px_nats"] > result["elbo_nats"] and result["nll_nats"] == -result["log_px_nats"]
    assert 0 < result["log_px_standard_error"] < 20
    # the deterministic reconstruction: the same at every call, and no worse than a sampled one here
    again = evaluate_run(out, iw_samples=64, test_examples=40, seed=1)
    assert again["reconstruction_at_mean"] == result["reconstruction_at_mean"]
    assert again["log_px_nats"] != result["log_px_nats"]  # other importance samples
    assert result["reconstruction_at_mean"] < result["reconstruction"] * 1.05
    assert logged["split"] == "test" and np.isfinite(result["loss"])


def test_same_seed_same_estimate(run):
    out, _ = run
    first, second = (evaluate_run(out, iw_samples=7, test_examples=25) for _ in range(2))
    assert first["log_px_nats"] == second["log_px_nats"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--iw-samples", "0"], "--iw-samples must be at least 1"),
        (["--test-examples", "0"], "--test-examples must be at least 1"),
        (["--iw-samples", "many"], "invalid int value"),
    ],
)
def test_bad_flags_are_one_line(run, flags, message):
    out, _ = run
    result = subprocess.run(
        [sys.executable, "-m", "jaxvae.cli", "evaluate", "--run", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1

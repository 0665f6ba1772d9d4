"""``jaxvae evaluate``: the ELBO, the reconstruction at z = mean and the IWAE estimate of a trained run, in nats,
for both likelihoods, and of every member of an ensemble at once. The estimator itself is tested in
tests/test_iwae.py; bad flags are rows of tests/test_refusals.py."""

import json
import math
import shutil
import time

import numpy as np
import pytest

from conftest import in_float64, train_small
from jaxvae.model import VAE
from jaxvae.run.cli import main
from jaxvae.run.commands import evaluate_run, open_run
from jaxvae.run.training import prepare_data

IW = 20  # importance samples: one value for the whole suite, so the estimator compiles once


@pytest.fixture(scope="session", params=["gaussian", pytest.param("bernoulli", marks=pytest.mark.long)])
def run(request, tmp_path_factory, small_run):
    """A 2-epoch run of each likelihood: the suite's shared Gaussian run, and a Bernoulli one on thresholded digits."""
    if request.param == "gaussian":
        return small_run, "gaussian"
    out = tmp_path_factory.mktemp("runs") / request.param
    return train_small(out, "--likelihood", "bernoulli", "--binarize", "threshold"), request.param


def test_the_report(run):
    out, likelihood = run
    started = time.perf_counter()
    result = evaluate_run(out, iw_samples=IW)
    assert 0 < result["iw_seconds"] < time.perf_counter() - started  # the estimate's part of the call
    assert result["likelihood"] == likelihood and result["test_images"] == 100 and result["iw_samples"] == IW
    assert likelihood.capitalize() in result["likelihood_is"]
    # weight 1: the Gaussian of variance 1 / (2 weight) = 0.5 per pixel
    assert ("variance 0.5 per pixel" in result["likelihood_is"]) == (likelihood == "gaussian")
    # the ELBO is the loss's negative plus the Gaussian's constant (1e-6: float32 sums of ~800 nats)
    constant = -392 * math.log(math.pi) if likelihood == "gaussian" else 0.0
    assert abs(result["elbo_nats"] - (constant - result["loss"])) <= 1e-6 * abs(result["elbo_nats"])
    # log p(x) >= ELBO in expectation; a 20-sample IWAE estimate sits far above a one-sample ELBO at this stage of
    # training (measured: 20-40 nats), its standard error ~1-3 nats
    assert result["log_px_nats"] > result["elbo_nats"] and result["nll_nats"] == -result["log_px_nats"]
    assert 0 < result["log_px_standard_error"] < 20
    # the KL per latent unit (float64, of the encoder's means and variances) sums to the sampled terms' KL (float32)
    assert abs(sum(result["kl_per_dim"]) - result["kl"]) <= 1e-5 * result["kl"] and result["active_units"] <= 2
    # the reconstruction at z = mean: the loss's term of decode(the encoder's mean), by hand in float64 (1e-4: float32
    # rounding through the network and the sums is ~1e-6 of it; a sampled z moves it by percents)
    trained = open_run(out)
    images = prepare_data(trained.config).test.images
    z = in_float64(trained, VAE.encode, images)[0]
    if likelihood == "gaussian":
        per_image = ((in_float64(trained, VAE.decode, z) - images) ** 2).sum(axis=(1, 2, 3))
    else:  # binary cross-entropy of the logits l: softplus(l) - x l
        logits = in_float64(trained, VAE.decode_logits, z)
        per_image = (np.logaddexp(0, logits) - images * logits).sum(axis=(1, 2, 3))
    assert result["reconstruction_at_mean"] == pytest.approx(per_image.mean(), rel=1e-4)
    # another seed, other draws (the same seed, the same estimate: the next test); the loss's figures do not depend
    # on the estimator's seed
    other = evaluate_run(out, iw_samples=IW, seed=1)
    assert other["log_px_nats"] != result["log_px_nats"] and other["loss"] == result["loss"]
    assert other["reconstruction_at_mean"] == result["reconstruction_at_mean"]


def test_the_standard_error_of_two_images_by_hand(small_run):
    """Of two images, the estimate's standard error (sample sd over sqrt(N)) is half their distance. The first
    image's estimate is the one a one-image evaluation gives (it depends on the key and its position only), the
    second's twice the mean less it. 1e-3 nats: float32 sums and means of ~550 nats round by a few 6e-5."""
    alone = evaluate_run(small_run, iw_samples=IW, test_examples=1)
    assert alone["log_px_standard_error"] is None  # one image has no spread
    first = alone["log_px_nats"]
    both = evaluate_run(small_run, iw_samples=IW, test_examples=2)
    second = 2 * both["log_px_nats"] - first
    assert both["log_px_standard_error"] == pytest.approx(abs(first - second) / 2, abs=1e-3)
    assert abs(first - second) > 0.1  # their draws differ: the test can tell the sample sd from the population's


def test_a_run_trained_on_more_devices_than_this_machine_has_is_evaluated_on_its_own(small_run, tmp_path):
    """Evaluation runs on every device visible here, whatever ``--devices`` the run trained with."""
    run = shutil.copytree(small_run, tmp_path / "four_devices")
    (run / "config.json").write_text(json.dumps({**json.loads((run / "config.json").read_text()), "devices": 4}))
    here, there = (evaluate_run(r, iw_samples=IW, test_examples=1) for r in (small_run, run))
    assert {**here, "iw_seconds": None} == {**there, "iw_seconds": None}


def test_an_ensemble_evaluated_at_once_is_each_member_evaluated_alone(ensemble_run, capsys):
    """Members one at a time (the suite ensemble's grouping): a member's figures are its own folder's, and each
    setting's mean over seeds is their mean. The same float32 sums in another fusion (a member inside ``lax.map``,
    or alone) may round differently (jax 0.10 gives identical figures, 0.12 not): an a priori bound of 784 pixels
    x 6e-8 = 5e-5 of each image's log p(x), so of their mean; the standard error (~2 nats) moves by at most that
    0.03 nats (of ~550) over sqrt(N - 1) = 10, 1.5e-3 of itself. 2e-3 holds on any CPU and
    still tells the members apart: they differ by 5 % and more."""
    assert main(["evaluate", "--run", str(ensemble_run), "--iw-samples", str(IW)]) == 0
    together = json.loads(capsys.readouterr().out)
    names = json.loads((ensemble_run / "ensemble.json").read_text())["members"]
    assert list(together["members"]) == names
    name = "seed7_lr0.001_rw0.5"  # every per-member value other than the first member's
    assert main(["evaluate", "--run", str(ensemble_run / "members" / name), "--iw-samples", str(IW)]) == 0
    alone = json.loads(capsys.readouterr().out)
    mine = together["members"][name]
    assert mine.keys() == alone.keys()
    for key, value in alone.items():
        if key != "iw_seconds":
            assert mine[key] == (pytest.approx(value, rel=2e-3) if isinstance(value, float) else value), key
    setting = next(s for s in together["settings"] if s["reconstruction_weight"] == 0.5 and s["lr"] == 0.001)
    values = [together["members"][f"seed{s}_lr0.001_rw0.5"]["log_px_nats"] for s in (123, 7)]
    assert setting["evaluation"]["log_px_nats"]["mean"] == pytest.approx(np.mean(values), rel=1e-12)

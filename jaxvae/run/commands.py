"""What ``jaxvae evaluate``, ``sample`` and ``export`` do with a run folder, as library functions the CLI calls."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.errors import UserError
from jaxvae.run import files, plots
from jaxvae.run.config import check_value
from jaxvae.run.saved_run import open_run

MAX_SAMPLES = 1024  # a 32 x 32 grid: one matplotlib figure of that many images is already ~100 MB to draw
DEFAULT_IW_SAMPLES = 250  # mnist5k's 1,000 test images in about a minute on a 2-core CPU (~5,000 decodes/s; README)


def _check_output_file(path: Path, flag: str) -> None:
    """An output file must be new and writable; checked before anything is loaded or computed."""
    if path.exists():
        raise UserError(f"{path} already exists; choose another file name (nothing was written)")
    files.check_writable(path, flag, folder=False)
    if not path.parent.exists():
        raise UserError(f"{path.parent} does not exist; create it or choose another path")


def _check_iw_flags(iw_samples: int, test_examples: int | None) -> None:
    if iw_samples < 1:
        raise UserError(f"--iw-samples must be at least 1, got {iw_samples}")
    check_value("test_examples", test_examples)


def _evaluated_config(config, test_examples: int | None):
    """The run's settings for evaluation: every visible device, and the test images asked for; refuses a run
    whose loss is not a likelihood (``likelihood.check_weight``)."""
    from jaxvae.likelihoods import get_likelihood

    try:
        get_likelihood(config.likelihood).check_weight(config.reconstruction_weight)
    except ValueError as exc:
        raise UserError(f"this run cannot be evaluated: {exc}") from None
    return dataclasses.replace(config, devices=0, test_examples=test_examples or config.test_examples)


def _record(config, epoch: int, dataset, sampled, reconstruction_at_mean, estimates, iw_samples, seconds, seed) -> dict:
    """One run's (or member's) figures: ``sampled`` loss terms (3,), the reconstruction at z = mean, the IWAE
    ``estimates`` (N,) of log p(x)."""
    from jaxvae.likelihoods import elbo_from_terms, get_likelihood
    from jaxvae.train_step import METRIC_NAMES

    likelihood = get_likelihood(config.likelihood)
    terms = dict(zip(METRIC_NAMES, np.asarray(sampled).tolist()))
    return {
        "epoch": epoch,
        "test_images": len(dataset.test),
        "data": dataset.source,
        "likelihood": config.likelihood,
        "likelihood_is": likelihood.describe(config.reconstruction_weight),
        **terms,
        "reconstruction_at_mean": float(reconstruction_at_mean),
        "elbo_nats": elbo_from_terms(terms["reconstruction"], terms["kl"], likelihood, config.reconstruction_weight),
        "iw_samples": iw_samples,
        "log_px_nats": float(np.mean(estimates)),
        "nll_nats": float(-np.mean(estimates)),
        "log_px_standard_error": float(np.std(estimates, ddof=1) / np.sqrt(len(estimates)))
        if len(estimates) > 1
        else None,
        "iw_seconds": seconds,
        "iw_seed": seed,
    }


def evaluate_run(
    run_dir: Path, iw_samples: int = DEFAULT_IW_SAMPLES, test_examples: int | None = None, seed: int = 0
) -> dict:
    """The run's latest checkpoint on its test split (or its first ``test_examples`` images): the loss terms with
    z sampled (as training reports them), the reconstruction at z = mean, the ELBO and the IWAE estimate of
    log p(x) with ``iw_samples`` draws per image, in nats per image; the likelihood they belong to, stated.
    An ensemble's folder: every member in one vmapped pass (``evaluate_ensemble``)."""
    from jaxvae.devices import put_replicated, to_host
    from jaxvae.iwae import estimate_log_px, make_log_px
    from jaxvae.run.trainer import RunKeys, RunSetup
    from jaxvae.run.training import evaluate_epoch, prepare_data

    _check_iw_flags(iw_samples, test_examples)
    if (run_dir / files.ENSEMBLE).is_file():
        return evaluate_ensemble(run_dir, iw_samples, test_examples, seed)
    run = open_run(run_dir)
    config = _evaluated_config(run.config, test_examples)
    dataset = prepare_data(config)
    setup = RunSetup.build(config)
    test, params = setup.place_test(dataset.test.images), put_replicated(run.params, setup.mesh)

    def evaluation(at_mean: bool):
        compiled = jax.jit(setup.evaluation(at_mean), static_argnums=3)
        return lambda params, test, key: to_host(compiled(params, test.images, key, test.count))

    sampled = evaluate_epoch(evaluation(False), params, test, RunKeys.from_seed(config.seed), run.epoch)
    mean_terms = evaluation(True)(params, test, jax.random.PRNGKey(0))
    started = time.perf_counter()
    log_px = make_log_px(run.model, config.likelihood, config.reconstruction_weight, iw_samples)
    estimates = estimate_log_px(log_px, run.params, dataset.test.images, jax.random.PRNGKey(seed))
    seconds = time.perf_counter() - started
    return _record(config, run.epoch, dataset, sampled, mean_terms[1], estimates, iw_samples, seconds, seed)


EVALUATED = ("loss", "reconstruction", "kl", "reconstruction_at_mean", "elbo_nats", "log_px_nats", "nll_nats")


def evaluate_ensemble(run_dir: Path, iw_samples: int, test_examples: int | None, seed: int) -> dict:
    """``evaluate_run`` of every member of the ensemble in ``run_dir``, in one vmapped pass each (loss terms, z at
    the mean, IWAE): ``{"members": {name: its figures}, "settings": mean ± sd over seeds of each setting}``. Each
    member's figures are those ``evaluate_run`` gives its own folder, up to the order of float32 sums."""
    from jaxvae.devices import put_replicated, to_host
    from jaxvae.iwae import estimate_log_px, make_members_log_px
    from jaxvae.run.ensemble import EnsembleSetup, stack_trees
    from jaxvae.run.ensemble_report import summarize_settings
    from jaxvae.run.members import Member
    from jaxvae.run.training import prepare_data

    saved = files.read_json(run_dir / files.ENSEMBLE, "give an ensemble folder written by jaxvae train")
    names = saved["members"]
    runs = [open_run(run_dir / files.MEMBERS / name) for name in names]
    epochs = {run.epoch for run in runs}
    if len(epochs) > 1:
        raise UserError(
            f"the members of {run_dir} stopped at different epochs ({sorted(epochs)}); finish the ensemble with "
            "jaxvae train --resume, or evaluate a member's folder on its own"
        )
    members = [Member(name, _evaluated_config(run.config, test_examples)) for name, run in zip(names, runs)]
    dataset = prepare_data(members[0].config)
    setup = EnsembleSetup.build(members, saved.get("member_group", 0))
    test = setup.place_test(dataset.test.images)
    stacked = stack_trees([run.params for run in runs])
    params = put_replicated(stacked, setup.mesh)

    def evaluation(at_mean: bool, keys):
        compiled = jax.jit(setup.evaluation(at_mean), static_argnums=3)
        return to_host(compiled(params, test.images, keys, test.count))  # (K, 3)

    epoch = runs[0].epoch
    sampled = evaluation(False, setup.member_keys().eval_key(epoch))
    mean_terms = evaluation(True, jnp.stack([jax.random.PRNGKey(0)] * len(runs)))  # z = mean: the key is unused
    started = time.perf_counter()
    weights = [m.config.reconstruction_weight for m in members]
    log_px = make_members_log_px(setup.model, setup.config.likelihood, weights, iw_samples, setup.backend.member_group)
    estimates = estimate_log_px(log_px, stacked, dataset.test.images, jax.random.PRNGKey(seed))  # (K, N)
    seconds = time.perf_counter() - started
    records = [
        _record(m.config, epoch, dataset, sampled[k], mean_terms[k, 1], estimates[k], iw_samples, seconds, seed)
        for k, m in enumerate(members)
    ]
    return {
        "members": dict(zip(names, records)),
        "settings": summarize_settings(members, [{"evaluation": r} for r in records], EVALUATED),
    }


def sample_run(run_dir: Path, n: int, out: Path, seed: int) -> Path:
    """A PNG grid of ``n`` images decoded from the prior."""
    from jaxvae.inference import sample_prior

    if not 1 <= n <= MAX_SAMPLES:
        raise UserError(f"-n must be an integer in 1..{MAX_SAMPLES} (one picture of a grid of images), got {n}")
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out} must name a .png file")
    _check_output_file(out, "--out")
    run = open_run(run_dir)
    images = sample_prior(run.model, run.params, jax.random.PRNGKey(seed), n)
    return plots.image_grid(images, out, columns=min(8, n))


def export_run(run_dir: Path, to: Path) -> Path:
    """The run's latest parameters as a state dict that ``torch_ref.VAE`` loads with ``strict=True``."""
    import torch

    from jaxvae.convert import params_to_torch
    from torch_ref import VAE as TorchVAE

    _check_output_file(to, "--to")
    run = open_run(run_dir)
    state = {k: torch.from_numpy(np.array(v)) for k, v in params_to_torch(run.params).items()}
    TorchVAE(run.config.latent_dim).load_state_dict(state, strict=True)  # proves it loads before writing
    tmp = to.with_name(to.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(to)
    return to

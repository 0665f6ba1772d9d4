"""What ``jaxvae evaluate``, ``sample`` and ``export`` do with a run folder, as library functions the CLI calls."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from jaxvae.devices import first_local_device, resolve_conv_impl, to_host
from jaxvae.diagnostics import latent_diagnostics
from jaxvae.errors import UserError
from jaxvae.inference import encode_posterior, sample_prior
from jaxvae.iwae import estimate_log_px
from jaxvae.likelihoods import elbo_from_terms, get_likelihood
from jaxvae.model import VAE
from jaxvae.run import files, plots
from jaxvae.run.checkpoint import Checkpoints
from jaxvae.run.config import RunConfig, check_value, load_config
from jaxvae.run.engine import RunSetup, stack_members
from jaxvae.run.members import Member
from jaxvae.run.progress import Progress
from jaxvae.run.report import summarize_settings
from jaxvae.run.training import prepare_data
from jaxvae.train_step import METRIC_NAMES, abstract_state, make_optimizer

GIVE_A_RUN = "give a run folder written by jaxvae train"
MAX_SAMPLES = 1024  # a 32 x 32 grid: one matplotlib figure of that many images is already ~100 MB to draw
DEFAULT_IW_SAMPLES = 250  # mnist5k's 1,000 test images in about a minute on a 2-core CPU (~5,000 decodes/s; README)
EVALUATED = (
    *("loss", "reconstruction", "kl", "reconstruction_at_mean", "elbo_nats", "log_px_nats", "nll_nats"),
    *("active_units", "mutual_information_nats"),
)


def read_config(run_dir: Path) -> RunConfig:
    """The settings of the run folder ``run_dir``."""
    if not run_dir.is_dir():
        raise UserError(f"--run {run_dir} is not a folder; {GIVE_A_RUN}")
    if (run_dir / files.ENSEMBLE).is_file():
        raise UserError(f"--run {run_dir} is an ensemble; give one member's run folder in {run_dir / files.MEMBERS}")
    return load_config(run_dir / files.CONFIG, GIVE_A_RUN)


def latest_state(run_dir: Path, latent_dim: int, like):
    """The state of the run's latest checkpoint, as ``like`` (shapes and shardings), and its epoch."""
    with Checkpoints(run_dir / files.CHECKPOINTS) as checkpoints:
        return checkpoints.restore_latest(latent_dim, like)


class SavedRun(NamedTuple):
    config: RunConfig
    model: VAE
    params: dict
    epoch: int


def open_run(run_dir: str | Path) -> SavedRun:
    """A run folder's settings (``RunConfig``) and ``VAE``, its latest checkpoint's parameters (on the first local
    device) and that checkpoint's epoch, as ``SavedRun(config, model, params, epoch)``."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    model = VAE(config.latent_dim, conv_impl=resolve_conv_impl(config.conv_impl), compute_dtype=config.compute_dtype)
    like = abstract_state(model, make_optimizer(config.lr), first_local_device())
    state, epoch = latest_state(run_dir, config.latent_dim, like)
    return SavedRun(config, model, state.params, epoch)


def _check_output_file(path: Path, flag: str) -> None:
    """An output file must be new and writable; checked before anything is loaded or computed."""
    if path.exists():
        raise UserError(f"{path} already exists; choose another file name (nothing was written)")
    files.check_writable(path, flag, folder=False)
    if not path.parent.exists():
        raise UserError(f"{path.parent} does not exist; create it or choose another path")


def _evaluated_config(config: RunConfig, test_examples: int | None) -> RunConfig:
    """The run's settings for evaluation: every visible device, and the test images asked for; refuses a run
    whose loss is not a likelihood (``likelihood.check_weight``)."""
    try:
        get_likelihood(config.likelihood).check_weight(config.reconstruction_weight)
    except ValueError as exc:
        raise UserError(f"this run cannot be evaluated: {exc}") from None
    return dataclasses.replace(config, devices=0, test_examples=test_examples or config.test_examples)


def _record(config, epoch, dataset, sampled, reconstruction_at_mean, estimates, iw_samples, seconds, seed, latent):
    """One member's figures: ``sampled`` loss terms (3,), the reconstruction at z = mean, the IWAE ``estimates``
    (N,) of log p(x), the ``latent`` units' diagnostics."""
    likelihood = get_likelihood(config.likelihood)
    terms = dict(zip(METRIC_NAMES, np.asarray(sampled).tolist()))
    standard_error = float(np.std(estimates, ddof=1) / np.sqrt(len(estimates))) if len(estimates) > 1 else None
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
        "log_px_standard_error": standard_error,
        "iw_seconds": seconds,
        "iw_seed": seed,
        **latent,
    }


def evaluate_run(
    run_dir: Path, iw_samples: int = DEFAULT_IW_SAMPLES, test_examples: int | None = None, seed: int = 0
) -> dict:
    """The latest checkpoint on its test split (or its first ``test_examples`` images): the loss terms with z
    sampled (as training reports them), the reconstruction at z = mean, the ELBO and the IWAE estimate of log p(x)
    with ``iw_samples`` draws per image, in nats per image; the likelihood they belong to, stated; the latent units'
    diagnostics (``jaxvae.diagnostics``: active units, KL and activity per unit, mutual information). An ensemble's
    folder: every member at once, ``{"members": {name: its figures}, "settings": mean ± sd over seeds of each
    setting}``; a member's figures are those its own folder gives, up to the order of float32 sums."""
    if iw_samples < 1:
        raise UserError(f"--iw-samples must be at least 1, got {iw_samples}")
    check_value("test_examples", test_examples)
    check_value("seed", seed)
    ensemble = (run_dir / files.ENSEMBLE).is_file()
    names = files.read_ensemble(run_dir, GIVE_A_RUN)["members"] if ensemble else [run_dir.name]
    paths = [run_dir / files.MEMBERS / name for name in names] if ensemble else [run_dir]
    members = [Member(n, _evaluated_config(read_config(p), test_examples)) for n, p in zip(names, paths)]
    setup = RunSetup.build(members)
    restored = [latest_state(p, m.config.latent_dim, setup.state_target()) for p, m in zip(paths, members)]
    epochs = sorted({epoch for _, epoch in restored})
    if len(epochs) > 1:
        raise UserError(
            f"the members of {run_dir} stopped at different epochs ({epochs}); finish the ensemble with "
            "jaxvae train --resume, or evaluate a member's folder on its own"
        )
    params, epoch = stack_members(*[state.params for state, _ in restored]), epochs[0]
    dataset = prepare_data(members[0].config)
    test, keys, constants = setup.place_test(dataset.test.images), setup.keys(), setup.constants()
    args = (params, test.images, keys.eval, constants, setup.int32(epoch), test.count)
    sampled, at_mean = (to_host(jax.jit(setup.evaluation(m), static_argnums=5)(*args)) for m in (False, True))  # (K, 3)
    started = time.perf_counter()
    with Progress("log p(x)", len(dataset.test), "images") as progress:
        key, log_px = jax.random.PRNGKey(seed), setup.log_px(iw_samples)
        estimates = estimate_log_px(log_px, params, dataset.test.images, key, progress=progress.update)  # (K, N)
    seconds = time.perf_counter() - started
    posteriors = [encode_posterior(setup.model, member, dataset.test.images) for member in setup.unstack(params)]
    latents = [latent_diagnostics(*posterior, seed) for posterior in posteriors]
    iw = (iw_samples, seconds, seed)
    records = [
        _record(m.config, epoch, dataset, sampled[k], at_mean[k, 1], estimates[k], *iw, latents[k])
        for k, m in enumerate(members)
    ]
    if not ensemble:
        return records[0]
    return {
        "members": dict(zip(names, records)),
        "settings": summarize_settings(members, [{"evaluation": r} for r in records], EVALUATED),
    }


def sample_run(run_dir: Path, n: int, out: Path, seed: int) -> Path:
    """A PNG grid of ``n`` images decoded from the prior."""
    if not 1 <= n <= MAX_SAMPLES:
        raise UserError(f"-n must be an integer in 1..{MAX_SAMPLES} (one picture of a grid of images), got {n}")
    check_value("seed", seed)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out} must name a .png file")
    _check_output_file(out, "--out")
    run = open_run(run_dir)
    return plots.image_grid(sample_prior(run.model, run.params, jax.random.PRNGKey(seed), n), out, columns=min(8, n))


def export_run(run_dir: Path, to: Path) -> Path:
    """The run's latest parameters as a state dict that ``torch_ref.VAE`` loads with ``strict=True``."""
    import torch  # optional: only export and the parity harness need it

    from jaxvae.convert import params_to_torch
    from torch_ref import VAE as TorchVAE

    _check_output_file(to, "--to")
    run = open_run(run_dir)
    state = {k: torch.from_numpy(np.array(v)) for k, v in params_to_torch(run.params).items()}
    TorchVAE(run.model.latent_dim).load_state_dict(state, strict=True)  # proves it loads before writing
    saved = io.BytesIO()
    torch.save(state, saved)
    files.write_atomically(to, saved.getvalue())  # torch's own writer reports a full disk as a RuntimeError
    return to

"""What ``jaxvae evaluate``, ``sample``, ``export`` and ``parity`` do, as library functions the CLI calls."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxvae import plots
from jaxvae.errors import UserError
from jaxvae.parallel import to_host
from jaxvae.saved_run import open_run


DEFAULT_IW_SAMPLES = 250  # mnist5k's 1,000 test images in about a minute on a 2-core CPU (~5,000 decodes/s; README)


def _refuse_overwrite(path: Path) -> None:
    if path.exists():
        raise UserError(f"{path} already exists; choose another file name (nothing was written)")
    if not path.parent.exists():
        raise UserError(f"{path.parent} does not exist; create it or choose another path")


def evaluate_run(run_dir: Path, iw_samples: int = DEFAULT_IW_SAMPLES, test_examples: int | None = None, seed: int = 0) -> dict:
    """The run's latest checkpoint on its test split (or its first ``test_examples`` images): the loss terms with
    z sampled (as training reports them), the reconstruction at z = mean, the ELBO and the IWAE estimate of
    log p(x) with ``iw_samples`` draws per image, in nats per image; the likelihood they belong to, stated."""
    from jaxvae.evaluation import elbo_from_terms, estimate_log_px, likelihood_statement, make_log_px
    from jaxvae.parallel import put_replicated
    from jaxvae.train_step import METRIC_NAMES, make_evaluate
    from jaxvae.training import RunKeys, Trainer, evaluate_epoch, prepare_data

    if iw_samples < 1:
        raise UserError(f"--iw-samples must be at least 1, got {iw_samples}")
    if test_examples is not None and test_examples < 1:
        raise UserError(f"--test-examples must be at least 1, got {test_examples}")
    run = open_run(run_dir)
    config = dataclasses.replace(run.config, devices=0, test_examples=test_examples or run.config.test_examples)
    if config.likelihood == "gaussian" and config.reconstruction_weight <= 0:
        raise UserError("this run was trained with --reconstruction-weight 0: its loss implies no likelihood to estimate")
    dataset = prepare_data(config)
    trainer = Trainer(config, len(dataset.train))
    test = trainer.place_test(dataset.test.images)
    params = put_replicated(run.params, trainer.mesh)
    sampled = dict(zip(METRIC_NAMES, evaluate_epoch(trainer, params, test, RunKeys.from_seed(config.seed), run.epoch).tolist()))
    at_mean = make_evaluate(trainer.model, config.reconstruction_weight, trainer.eval_batch, trainer.concurrent, trainer.mesh,
                            config.likelihood, at_mean=True)
    mean_terms = to_host(jax.jit(at_mean, static_argnums=3)(params, test[0], jax.random.PRNGKey(0), test[1]))
    started = time.perf_counter()
    log_px = make_log_px(run.model, config.likelihood, config.reconstruction_weight, iw_samples)
    estimates = estimate_log_px(log_px, run.params, dataset.test.images, jax.random.PRNGKey(seed))
    return {
        "epoch": run.epoch, "test_images": len(dataset.test), "data": dataset.source,
        "likelihood": config.likelihood, "likelihood_is": likelihood_statement(config.likelihood, config.reconstruction_weight),
        **sampled,
        "reconstruction_at_mean": float(mean_terms[1]),
        "elbo_nats": elbo_from_terms(sampled["reconstruction"], sampled["kl"], config.likelihood, config.reconstruction_weight),
        "iw_samples": iw_samples,
        "log_px_nats": float(np.mean(estimates)),
        "nll_nats": float(-np.mean(estimates)),
        "log_px_standard_error": float(np.std(estimates, ddof=1) / np.sqrt(len(estimates))) if len(estimates) > 1 else None,
        "iw_seconds": time.perf_counter() - started,
        "iw_seed": seed,
    }


def sample_run(run_dir: Path, n: int, out: Path, seed: int) -> Path:
    """A PNG grid of ``n`` images decoded from the prior."""
    from jaxvae.inference import sample_prior

    if n < 1:
        raise UserError(f"-n must be at least 1, got {n}")
    if out.suffix.lower() != ".png":
        raise UserError(f"--out {out} must name a .png file")
    _refuse_overwrite(out)
    run = open_run(run_dir)
    images = sample_prior(run.model, run.params, jax.random.PRNGKey(seed), n)
    return plots.image_grid(images, out, columns=min(8, n))


def export_run(run_dir: Path, to: Path) -> Path:
    """The run's latest parameters as a state dict that ``torch_ref.VAE`` loads with ``strict=True``."""
    import torch

    from jaxvae.convert import params_to_torch
    from torch_ref import VAE as TorchVAE

    _refuse_overwrite(to)
    run = open_run(run_dir)
    state = {k: torch.from_numpy(np.array(v)) for k, v in params_to_torch(run.params).items()}
    TorchVAE(run.config.latent_dim).load_state_dict(state, strict=True)  # proves it loads before writing
    tmp = to.with_name(to.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(to)
    return to


def load_torch_weights(path: Path) -> dict:
    """A seed-style state dict from a file saved with ``torch.save`` (loaded with ``weights_only=True``)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"--torch-weights {path} does not exist") from None
    except Exception as exc:  # pickle, zip and torch errors for damaged files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"--torch-weights {path} is not a loadable torch state dict ({type(exc).__name__}: {first_line})") from None
    if not isinstance(state, dict):
        raise UserError(f"--torch-weights {path} holds a {type(state).__name__}, not a state dict; save model.state_dict()")
    return state


def parity_inputs(batch_size: int, latent_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` real test digits of mnist5k drawn by ``seed``, and standard-normal noise from ``PRNGKey(seed)``."""
    from jaxvae.data import load_mnist5k

    test = load_mnist5k().test.images
    if not 1 <= batch_size <= len(test):
        raise UserError(f"--batch-size must be between 1 and {len(test)} (the test digits), got {batch_size}")
    x = test[np.sort(np.random.default_rng(seed).choice(len(test), batch_size, replace=False))]
    return x, np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (batch_size, latent_dim)))


def parity_weights(torch_weights: Path | None, latent_dim: int, seed: int) -> dict:
    """The state dict to compare from: a file's (checked against the seed's VAE), or torch_ref's init at ``seed``."""
    import torch

    from jaxvae.convert import WeightMismatchError, infer_latent_dim, params_from_torch
    from torch_ref import VAE as TorchVAE

    if torch_weights is None:
        if latent_dim < 1:
            raise UserError(f"--latent-dim must be at least 1, got {latent_dim}")
        torch.manual_seed(seed)
        return {k: v.numpy() for k, v in TorchVAE(latent_dim).state_dict().items()}
    state = load_torch_weights(torch_weights)
    try:
        params_from_torch(state)  # names a missing, extra or mis-shaped entry
        TorchVAE(infer_latent_dim(state)).load_state_dict(state, strict=True)
    except (WeightMismatchError, RuntimeError) as exc:
        raise UserError(f"--torch-weights {torch_weights} does not fit the seed's VAE: {str(exc).splitlines()[0]}") from None
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def parity_check(torch_weights: Path | None, latent_dim: int, batch_size: int, seed: int, conv_impls: list[str],
                 as_json: bool = False, likelihood: str = "gaussian") -> tuple[str, bool]:
    """Both verdicts per tensor for each implementation (a table, or JSON); and whether the port passed."""
    import json

    from jaxvae.convert import infer_latent_dim
    from jaxvae.parity import run_parity
    from jaxvae.parity_report import format_report, report_json

    state = parity_weights(torch_weights, latent_dim, seed)
    latent_dim = infer_latent_dim(state)
    x, eps = parity_inputs(batch_size, latent_dim, seed)
    report = run_parity(state, x, eps, conv_impls, likelihood)
    weights = f"from {torch_weights}" if torch_weights else f"random (torch_ref's initialisation, seed {seed})"
    if as_json:
        header = {"latent_dim": latent_dim, "batch_size": batch_size, "seed": seed, "weights": weights, "likelihood": likelihood}
        return json.dumps(report_json(header, report)), report.passed
    tf32 = "; TF32 off for this comparison (torch's default allows it)" if report.torch_device == "cuda" else ""
    header = (f"parity: jaxvae vs torch_ref, latent {latent_dim}, batch {batch_size} real MNIST test digits (seed {seed}), "
              f"weights {weights}; {likelihood} loss; torch float32 on {report.torch_device}{tf32}; float64 on the CPU")
    return format_report(header, report), report.passed

"""What ``jaxvae evaluate``, ``sample``, ``export`` and ``parity`` do, as library functions the CLI calls."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxvae import plots
from jaxvae.errors import UserError
from jaxvae.saved_run import open_run


def _refuse_overwrite(path: Path) -> None:
    if path.exists():
        raise UserError(f"{path} already exists; choose another file name (nothing was written)")
    if not path.parent.exists():
        raise UserError(f"{path.parent} does not exist; create it or choose another path")


def evaluate_run(run_dir: Path) -> dict:
    """Test-split loss, reconstruction and KL of the run's latest checkpoint."""
    from jaxvae.parallel import put_replicated
    from jaxvae.train_step import METRIC_NAMES
    from jaxvae.training import RunKeys, Trainer, evaluate_epoch, prepare_data

    run = open_run(run_dir)
    config = dataclasses.replace(run.config, devices=0)  # every visible device, whatever the run trained on
    dataset = prepare_data(config)
    trainer = Trainer(config, len(dataset.train))
    test = trainer.place_test(dataset.test.images)
    params = put_replicated(run.params, trainer.mesh)
    metrics = evaluate_epoch(trainer, params, test, RunKeys.from_seed(config.seed), run.epoch)
    return {"epoch": run.epoch, "test_images": len(dataset.test), **dict(zip(METRIC_NAMES, metrics.tolist()))}


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
                 as_json: bool = False) -> tuple[str, bool]:
    """Both verdicts per tensor for each implementation (a table, or JSON); and whether the port passed."""
    import json

    from jaxvae.convert import infer_latent_dim
    from jaxvae.parity import run_parity
    from jaxvae.parity_report import format_report, report_json

    state = parity_weights(torch_weights, latent_dim, seed)
    latent_dim = infer_latent_dim(state)
    x, eps = parity_inputs(batch_size, latent_dim, seed)
    report = run_parity(state, x, eps, conv_impls)
    weights = f"from {torch_weights}" if torch_weights else f"random (torch_ref's initialisation, seed {seed})"
    if as_json:
        header = {"latent_dim": latent_dim, "batch_size": batch_size, "seed": seed, "weights": weights}
        return json.dumps(report_json(header, report)), report.passed
    tf32 = "; TF32 off for this comparison (torch's default allows it)" if report.torch_device == "cuda" else ""
    header = (f"parity: jaxvae vs torch_ref, latent {latent_dim}, batch {batch_size} real MNIST test digits (seed {seed}), "
              f"weights {weights}; torch float32 on {report.torch_device}{tf32}; float64 on the CPU")
    return format_report(header, report), report.passed

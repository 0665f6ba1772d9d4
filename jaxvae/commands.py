"""What ``jaxvae evaluate``, ``sample``, ``export`` and ``parity`` do, as library functions the CLI calls."""

from __future__ import annotations

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
    from jaxvae.train_step import METRIC_NAMES
    from jaxvae.training import RunKeys, Trainer, evaluate_epoch, prepare_data

    run = open_run(run_dir)
    dataset = prepare_data(run.config)
    trainer = Trainer(run.config, len(dataset.train))
    test_images = jax.device_put(dataset.test.images)
    metrics = evaluate_epoch(trainer, run.params, test_images, RunKeys.from_seed(run.config.seed), run.epoch)
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


def parity_check(torch_weights: Path | None, latent_dim: int, batch_size: int, seed: int, conv_impls: list[str]) -> tuple[str, bool]:
    """The per-layer, loss and gradient tables for each implementation; and whether all passed."""
    import torch

    from jaxvae.convert import WeightMismatchError, infer_latent_dim, params_from_torch
    from jaxvae.data import load_mnist5k
    from jaxvae.parity import format_table, run_parity
    from torch_ref import VAE as TorchVAE

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    torch.manual_seed(seed)
    if torch_weights is not None:
        state = load_torch_weights(torch_weights)
        try:
            latent_dim = infer_latent_dim(state)
            params_from_torch(state)  # names a missing, extra or mis-shaped entry
            model = TorchVAE(latent_dim)
            model.load_state_dict(state, strict=True)
        except (WeightMismatchError, RuntimeError) as exc:
            raise UserError(f"--torch-weights {torch_weights} does not fit the seed's VAE: {str(exc).splitlines()[0]}") from None
    else:
        model = TorchVAE(latent_dim)
    model.eval()
    x = load_mnist5k().test.images[:batch_size]
    eps = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (len(x), latent_dim)))
    sections, ok = [f"parity: jaxvae vs torch_ref, latent {latent_dim}, batch {len(x)} real MNIST digits, "
                    f"weights {'from ' + str(torch_weights) if torch_weights else 'random (seed ' + str(seed) + ')'}"], True
    for impl in conv_impls:
        for part, rows in run_parity(model, x, eps, impl).items():
            sections.append(format_table(f"[{impl}] {part}", rows))
            ok &= all(r.passed for r in rows)
    sections.append("all passed" if ok else "SOME FAILED")
    return "\n".join(sections), ok

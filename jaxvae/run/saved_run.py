"""Opening a finished (or interrupted) run folder: its settings, model and latest parameters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
from jax.sharding import SingleDeviceSharding

from jaxvae.errors import UserError
from jaxvae.model import VAE
from jaxvae.run import files
from jaxvae.run.checkpoint import Checkpoints
from jaxvae.run.config import RunConfig
from jaxvae.train_step import abstract_state, make_optimizer


@dataclass
class SavedRun:
    config: RunConfig
    model: VAE
    params: dict
    epoch: int


def open_run(run_dir: Path) -> SavedRun:
    """The run's config and the parameters of its latest checkpoint, on the first local device."""
    if not run_dir.is_dir():
        raise UserError(f"--run {run_dir} is not a folder; give a run folder written by jaxvae train")
    config = RunConfig.from_json(files.read_json(run_dir / files.CONFIG, "give a run folder written by jaxvae train"))
    model = VAE(config.latent_dim, conv_impl=config.conv_impl, compute_dtype=config.compute_dtype)
    like = abstract_state(model, make_optimizer(config.lr), SingleDeviceSharding(jax.local_devices()[0]))
    with Checkpoints(run_dir / files.CHECKPOINTS) as checkpoints:
        state, epoch = checkpoints.restore_latest(config.latent_dim, like)
    return SavedRun(config, model, state.params, epoch)

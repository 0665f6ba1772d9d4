"""Opening a finished (or interrupted) run folder: its settings, model and latest parameters."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax

from jaxvae import checkpoint, run_files
from jaxvae.config import RunConfig
from jaxvae.errors import UserError
from jaxvae.model import VAE
from jaxvae.train_step import init_state, make_optimizer


@dataclass
class SavedRun:
    config: RunConfig
    model: VAE
    params: dict
    epoch: int


def open_run(run_dir: Path) -> SavedRun:
    """The run's config and the parameters of its latest checkpoint."""
    if not run_dir.is_dir():
        raise UserError(f"--run {run_dir} is not a folder; give a run folder written by jaxvae train")
    config = RunConfig.from_json(run_files.read_json(run_dir / run_files.CONFIG, "give a run folder written by jaxvae train"))
    model = VAE(config.latent_dim, conv_impl=config.conv_impl)
    like = init_state(model, make_optimizer(config.lr), jax.random.PRNGKey(0))
    state, epoch = checkpoint.restore_latest(run_dir / run_files.CHECKPOINTS, config.latent_dim, like)
    return SavedRun(config, model, state.params, epoch)

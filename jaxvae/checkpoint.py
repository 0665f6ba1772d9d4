"""Orbax checkpoints of a run's training state, one per finished epoch.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a crash mid-write
leaves the previous checkpoint as it was. Over several processes every process takes part in each save and
restore (one checkpoint, on a file system they share); a restored state has the shardings of the ``like`` state. Each checkpoint holds the state and a small JSON record
(epoch, step, latent size) that is read first, so that a mismatch is reported before arrays are restored.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvae.errors import UserError
from jaxvae.parallel import to_host
from jaxvae.train_step import TrainState

KEEP = 2


def _manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=True, enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory.absolute(), options=options)


def save(directory: Path, epoch: int, state: TrainState, meta: dict) -> None:
    """Write the state after ``epoch`` (1-based) and its record; keeps the last ``KEEP``."""
    with _manager(directory) as manager:
        tree = {"params": state.params, "opt_state": state.opt_state, "step": state.step}
        manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)))
        manager.wait_until_finished()


def latest_epoch(directory: Path) -> int | None:
    """The last finished epoch with a checkpoint, or None."""
    if not directory.is_dir():
        return None
    with _manager(directory) as manager:
        return manager.latest_step()


def read_meta(directory: Path, epoch: int) -> dict:
    """The JSON record of one checkpoint."""
    try:
        with _manager(directory) as manager:
            return dict(manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
    except Exception as exc:  # orbax raises many types for a damaged folder
        raise UserError(f"checkpoint {directory / str(epoch)} is damaged ({type(exc).__name__}); delete that folder to resume from the one before, or start a new --out") from None


def restore(directory: Path, epoch: int, like: TrainState) -> TrainState:
    """The state saved after ``epoch``, with the structure, shapes and dtypes of ``like``."""
    tree = {"params": like.params, "opt_state": like.opt_state, "step": like.step}
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)
    try:
        with _manager(directory) as manager:
            restored = manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    except Exception as exc:
        raise UserError(f"checkpoint {directory / str(epoch)} is damaged or does not fit this model ({type(exc).__name__}); start a new --out") from None
    for leaf in jax.tree_util.tree_leaves(to_host(restored)):
        if not np.all(np.isfinite(leaf)):
            raise UserError(f"checkpoint {directory / str(epoch)} holds non-finite values; start a new --out")
    return TrainState(restored["params"], restored["opt_state"], restored["step"])


def restore_latest(directory: Path, latent_dim: int, like: TrainState) -> tuple[TrainState, int]:
    """The state of the last checkpoint in ``directory`` and its epoch; checks the latent size first."""
    epoch = latest_epoch(directory)
    if epoch is None:
        raise UserError(f"{directory} holds no checkpoint yet; train at least one epoch (without --resume) first")
    saved = read_meta(directory, epoch).get("latent_dim")
    if saved != latent_dim:
        raise UserError(f"checkpoint {directory / str(epoch)} has latent size {saved}, not {latent_dim}; use a run of this latent size")
    return restore(directory, epoch, like), epoch

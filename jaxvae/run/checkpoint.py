"""Orbax checkpoints of a run's training state, one per finished epoch, through one ``CheckpointManager``.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a crash mid-write leaves the
previous one as it was. Over several processes every process takes part in each save and restore (one checkpoint,
on a shared file system); a restored state has the shardings of its target. Each checkpoint holds the state and a
JSON record (epoch, step, latent size), read first, so that a mismatch is reported before arrays are restored.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvae.devices import to_host
from jaxvae.errors import UserError
from jaxvae.train_step import TrainState

KEEP = 2


def _tree(state: TrainState) -> dict:
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


def restore_target(state: TrainState) -> dict:
    """What a restore fills in: shapes, dtypes and shardings of ``state``'s leaves (arrays or ``ShapeDtypeStruct``s)."""
    return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _tree(state))


class Checkpoints:
    """The checkpoints in ``directory``, through one Orbax manager (created on first use, closed by ``close``)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._manager: ocp.CheckpointManager | None = None

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def manager(self) -> ocp.CheckpointManager:
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(max_to_keep=KEEP, create=True, enable_async_checkpointing=False)
            self._manager = ocp.CheckpointManager(self.directory.absolute(), options=options)
        return self._manager

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def save(self, epoch: int, state: TrainState, meta: dict) -> None:
        """Write the state after ``epoch`` (1-based) and its record; keeps the last ``KEEP``."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(_tree(state)), meta=ocp.args.JsonSave(meta))
        self.manager.save(epoch, args=args)
        self.manager.wait_until_finished()

    def latest_epoch(self) -> int | None:
        """The last finished epoch with a checkpoint, or None."""
        if not self.directory.is_dir():
            return None
        return self.manager.latest_step()

    def read_meta(self, epoch: int) -> dict:
        """The JSON record of one checkpoint."""
        try:
            return dict(self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
        except Exception as exc:  # orbax raises many types for a damaged folder
            raise UserError(
                f"checkpoint {self.directory / str(epoch)} is damaged ({type(exc).__name__}); delete that "
                "folder to resume from the one before, or start a new --out"
            ) from None

    def restore(self, epoch: int, like: TrainState) -> TrainState:
        """The state saved after ``epoch``, with the structure, shapes, dtypes and shardings of ``like``."""
        args = ocp.args.Composite(state=ocp.args.StandardRestore(restore_target(like)))
        try:
            restored = self.manager.restore(epoch, args=args)["state"]
        except Exception as exc:
            raise UserError(
                f"checkpoint {self.directory / str(epoch)} is damaged or does not fit this model "
                f"({type(exc).__name__}); start a new --out"
            ) from None
        for leaf in jax.tree_util.tree_leaves(to_host(restored)):
            if not np.all(np.isfinite(leaf)):
                raise UserError(f"checkpoint {self.directory / str(epoch)} holds non-finite values; start a new --out")
        return TrainState(restored["params"], restored["opt_state"], restored["step"])

    def restore_checked(self, epoch: int, latent_dim: int, like: TrainState) -> TrainState:
        """The state saved after ``epoch``; checks that it is there and its latent size first, from its JSON record."""
        if epoch not in self.manager.all_steps():
            raise UserError(
                f"{self.directory} no longer holds epoch {epoch}, where the other members stopped; start a new --out"
            )
        saved = self.read_meta(epoch).get("latent_dim")
        if saved != latent_dim:
            raise UserError(
                f"checkpoint {self.directory / str(epoch)} has latent size {saved}, not {latent_dim}; use a "
                "run of this latent size"
            )
        return self.restore(epoch, like)

    def restore_latest(self, latent_dim: int, like: TrainState) -> tuple[TrainState, int]:
        """The state of the last checkpoint and its epoch; checks the latent size first."""
        epoch = self.latest_epoch()
        if epoch is None:
            raise UserError(
                f"{self.directory} holds no checkpoint yet; train at least one epoch (without --resume) first"
            )
        return self.restore_checked(epoch, latent_dim, like), epoch


def latest_epoch(directory: Path) -> int | None:
    """The last finished epoch with a checkpoint in ``directory``, or None."""
    with Checkpoints(directory) as checkpoints:
        return checkpoints.latest_epoch()


def read_meta(directory: Path, epoch: int) -> dict:
    with Checkpoints(directory) as checkpoints:
        return checkpoints.read_meta(epoch)


def restore(directory: Path, epoch: int, like: TrainState) -> TrainState:
    with Checkpoints(directory) as checkpoints:
        return checkpoints.restore(epoch, like)

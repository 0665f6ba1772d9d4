"""Orbax checkpoints of a run's training state, one per finished epoch, through one ``CheckpointManager``.

Orbax writes each checkpoint into a temporary folder and renames it when complete, so a crash mid-write leaves the
previous one as it was. Over several processes every process takes part in each save and restore (one checkpoint,
on a shared file system); a restored state has the shardings of its target. Each checkpoint holds the state and a
JSON record (epoch, step, latent size), read first, so that a mismatch is reported before arrays are restored.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxvae.devices import to_host
from jaxvae.errors import STOP_SIGNALS, UserError
from jaxvae.run.distributed import LOST_PROCESS, barrier
from jaxvae.train_step import TrainState

KEEP = 2
LISTING_ATTEMPTS = 3  # a reader lists the checkpoints again when a writer removed one under it


def _tree(state: TrainState) -> dict:
    return {"params": state.params, "opt_state": state.opt_state, "step": state.step}


def _quiet_closed_loops(previous=sys.unraisablehook) -> None:
    """Once a write has failed, Orbax's writer threads call into their closed event loops, and each complaint would
    print a traceback (an unraisable exception, at any moment, even before the failure reaches the caller): drop
    those, and only those. Installed once, with the first manager."""

    def hook(unraisable):
        if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
            previous(unraisable)

    if sys.unraisablehook is previous:
        sys.unraisablehook = hook


@contextlib.contextmanager
def _signals_held():
    """A stop signal waits until the checkpoint is whole (Orbax's writer threads, cut short, can hang the
    process's exit): each that came is handed to its own handler when the block ends, in order (the first stop ends
    the run; one ignored, as nohup's SIGHUP is, stays so and loses no stop after it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending, handlers = [], {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in handlers:
        signal.signal(s, lambda signum, frame: pending.append((signum, frame)))
    try:
        yield
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler)
        for signum, frame in pending:
            handlers[signum](signum, frame) if callable(handlers[signum]) else signal.raise_signal(signum)


@contextlib.contextmanager
def _orbax_quiet():
    """Orbax logs to absl what jaxvae then says in its own line: a failed write's traceback (from its writer thread),
    a checkpoint folder without its metadata file."""
    absl_log = logging.getLogger("absl")
    was, absl_log.disabled = absl_log.disabled, True
    try:
        yield
    finally:
        absl_log.disabled = was


def _remove_temporary(directory: Path, epoch: int) -> None:
    """Remove a failed save's temporary folder, again after each pause in which it came back, until a pause finds none
    (at most ~5 s): Orbax's writers cut short by the failure may still be writing into it, recreating it."""
    for _ in range(25):
        leftovers = list(directory.glob(f"{epoch}.orbax-checkpoint-tmp*"))
        if not leftovers:
            return
        for tmp in leftovers:
            shutil.rmtree(tmp, ignore_errors=True)
        time.sleep(0.2)


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
            _quiet_closed_loops()
            # Orbax's own barriers are collectives but for a few through the coordination service, which learns of a
            # lost process only at the heartbeat timeout, when JAX's client aborts with a stack trace: all collectives
            # here, so that a lost process fails the save at once and ends the run in one line.
            collective = ocp.AsyncOptions(barrier_sync_fn=lambda key, timeout_ms: barrier(key))
            options = ocp.CheckpointManagerOptions(
                max_to_keep=KEEP, create=True, enable_async_checkpointing=False, async_options=collective
            )
            for attempt in range(LISTING_ATTEMPTS):
                try:
                    with _orbax_quiet():
                        self._manager = ocp.CheckpointManager(self.directory.absolute(), options=options)
                    break
                except FileNotFoundError:  # a run writing here removed an old checkpoint while this one listed them
                    if attempt == LISTING_ATTEMPTS - 1:
                        raise
        return self._manager

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def save(self, epoch: int, state: TrainState, meta: dict) -> None:
        """Write the state after ``epoch`` (1-based) and its record; keeps the last ``KEEP``. A write that fails (a
        full disk, a quota, a signal) leaves no temporary folder and raises ``OSError`` naming the checkpoint."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(_tree(state)), meta=ocp.args.JsonSave(meta))
        with _orbax_quiet():  # a failed write's cleanup too: its writer threads, cut short, may still log
            try:
                with _signals_held():
                    self.manager.save(epoch, args=args)
                    self.manager.wait_until_finished()
            except BaseException as exc:
                self.close()
                _remove_temporary(self.directory, epoch)
                if not isinstance(exc, Exception) or getattr(exc, "filename", None):
                    raise  # a signal, or an OSError that names its file
                text = getattr(exc, "strerror", None) or " ".join(str(exc).split())  # Orbax's own, or one it wraps
                cause = "No space left on device" if "No space left" in text else text[:200]
                if "Gloo" in text:  # one of the save's collectives failed: a process of the run is gone
                    cause = f"{LOST_PROCESS} ({cause})"
                raise OSError(errno.EIO, cause, str(self.directory / str(epoch))) from None  # Orbax wraps it

    def latest_epoch(self) -> int | None:
        """The last finished epoch with a checkpoint, or None."""
        return latest_epoch(self.directory)

    def read_meta(self, epoch: int) -> dict:
        """The JSON record of one checkpoint."""
        try:
            return dict(self.manager.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"])
        except Exception as exc:  # orbax raises many types for a damaged folder
            raise self._damaged(epoch, f"is damaged ({type(exc).__name__})") from None

    def restore(self, epoch: int, like: TrainState) -> TrainState:
        """The state saved after ``epoch``, with the structure, shapes, dtypes and shardings of ``like``."""
        target = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, _tree(like))  # shapes, dtypes, shardings
        args = ocp.args.Composite(state=ocp.args.StandardRestore(target))
        try:
            restored = self.manager.restore(epoch, args=args)["state"]
        except Exception as exc:
            raise self._damaged(epoch, f"is damaged or does not fit this model ({type(exc).__name__})") from None
        for leaf in jax.tree_util.tree_leaves(to_host(restored)):
            if not np.all(np.isfinite(leaf)):
                raise self._damaged(epoch, "holds non-finite values")
        return TrainState(restored["params"], restored["opt_state"], restored["step"])

    def _damaged(self, epoch: int, what: str) -> UserError:
        """The refusal of a damaged checkpoint: it is kept, and the command that continues from the one before."""
        path, earlier = self.directory / str(epoch), [e for e in self.manager.all_steps() if e < epoch]
        if not earlier:
            return UserError(f"checkpoint {path} {what}, and no earlier one is left; start a new --out")
        aside = self.directory.parent / f"damaged-checkpoint-{epoch}"
        return UserError(
            f"checkpoint {path} {what}; to continue from epoch {max(earlier)}'s, move it aside (mv {path} {aside}) "
            "and run the same command again"
        )

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
    """The last finished epoch with a checkpoint in ``directory``, or None: Orbax's listing of its finalised
    checkpoints, read from the files alone. No manager, so no collective over the processes: this holds after a
    process of the run was lost, and beside a run that removes old checkpoints as it writes."""
    if directory.exists() and not directory.is_dir():
        raise UserError(f"{directory} is a file, not a folder of checkpoints; move it aside and run the command again")
    return max(ocp.utils.checkpoint_steps(directory), default=None)


def read_meta(directory: Path, epoch: int) -> dict:
    with Checkpoints(directory) as checkpoints:
        return checkpoints.read_meta(epoch)

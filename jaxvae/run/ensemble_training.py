"""An ensemble's training: ``train_ensemble(members, lists, out, resume)``, what ``jaxvae train`` calls when a
per-member flag (``--seed``, ``--lr``, ``--reconstruction-weight``) is given a list.

The loop of ``jaxvae.run.training`` with every member in one jitted chunk (``jaxvae.run.ensemble``). Each member
writes its own run folder ``OUT/members/NAME`` (settings, step records, test records, checkpoints, plots and
``summary.json``, all in the single-run format); ``OUT`` holds ``ensemble.json`` (the members and the lists),
and the ensemble's own report (``jaxvae.run.ensemble_report``). A resume restores every member at the last
epoch they all have checkpointed, so an ensemble stopped between two members' checkpoints continues exactly.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np

from jaxvae.devices import to_host
from jaxvae.errors import UserError
from jaxvae.run import files
from jaxvae.run.checkpoint import Checkpoints
from jaxvae.run.config import (
    RunConfig,
    check_batch_fits,
    check_batch_splits,
    check_flags,
    check_resumable,
)
from jaxvae.run.distributed import barrier, is_primary
from jaxvae.run.ensemble import EnsembleSetup
from jaxvae.run.ensemble_report import finish_ensemble
from jaxvae.run.members import Member, describe_lists
from jaxvae.run.progress import EpochProgress
from jaxvae.run.report import FinishedRun, finish_run
from jaxvae.run.trainer import RunKeys, Trainer
from jaxvae.run.training import (
    NonFiniteLoss,
    check_out_dir,
    log_line,
    open_run_folder,
    prepare_data,
    run_epochs,
    step_records,
)
from jaxvae.train_step import METRIC_NAMES, TrainState


def _check_members(members: list[Member]) -> None:
    for member in members:
        check_flags(member.config)
    seeds = {m.config.seed for m in members}
    if members[0].config.binarize == "sample" and len(seeds) > 1:
        raise UserError(
            "--binarize sample draws each member's test split from its --seed, which an ensemble's one test split "
            "cannot follow; give one --seed, or train the seeds as separate runs"
        )


def _check_resumable(out: Path, lists: dict, member_group: int) -> None:
    """A resumed ensemble continues the saved one: the same lists (hence the same members), the same grouping."""
    saved = files.read_json(out / files.ENSEMBLE, "start a new --out")
    saved_lists = {name: tuple(values) for name, values in saved["lists"].items()}
    if saved_lists != lists:
        raise UserError(
            f"--resume: this ensemble was trained with {describe_lists(saved_lists)}, not {describe_lists(lists)}; "
            "pass the same lists or start a new --out"
        )
    if saved["member_group"] != member_group:
        raise UserError(
            f"--resume: this ensemble was trained with --member-group {saved['member_group']}, not {member_group}; "
            f"pass --member-group {saved['member_group']} or start a new --out"
        )


def _starting_state(setup: EnsembleSetup, folders, checkpoints, resume: bool, keys: RunKeys) -> tuple[TrainState, int]:
    """Fresh, or every member's checkpoint of the last epoch all of them have; and the epochs already done."""
    if resume:
        for member, folder in zip(setup.members, folders):
            saved = RunConfig.from_json(files.read_json(folder / files.CONFIG, "start a new --out"))
            check_resumable(saved, member.config)
        latest = [c.latest_epoch() for c in checkpoints]
        if all(e is not None for e in latest):
            return _restore(setup, checkpoints, min(latest)), min(latest)
        log_line("--resume: a member's first epoch never finished; starting the ensemble from epoch 1")
    return setup.fresh_state(keys), 0


def _restore(setup: EnsembleSetup, checkpoints: list[Checkpoints], epoch: int) -> TrainState:
    states = []
    for checkpoint, member_setup in zip(checkpoints, setup.setups):
        if epoch not in checkpoint.manager.all_steps():
            raise UserError(
                f"{checkpoint.directory} no longer holds epoch {epoch}, where the other members stopped; "
                "start a new --out"
            )
        states.append(checkpoint.restore_checked(epoch, setup.config.latent_dim, member_setup.state_target()))
    return setup.place_states(states)


def _append_records(logs, metrics: np.ndarray, first_step: int, epoch: int) -> int | None:
    """Each member's step records of one chunk, ``metrics`` ``(K, chunk, 3)``, up to and including the first
    non-finite step of any member; returns that step's index in the chunk (None: every step finite)."""
    bad = np.flatnonzero(~np.all(np.isfinite(metrics[:, :, 0]), axis=0))
    end = bad[0] + 1 if bad.size else metrics.shape[1]
    for log, rows in zip(logs, metrics):
        log.append(step_records(rows[:end], first_step, epoch))
    if bad.size:
        return bad[0]
    return None


def _train_epoch(trainer: Trainer, state, epoch_data, keys, epoch: int, logs, last_good: str):
    cfg = trainer.setup.config
    progress = EpochProgress(epoch, cfg.epochs, trainer.steps_per_epoch) if is_primary() else None
    seconds, step0 = 0.0, int(to_host(state.step)[0])
    try:
        for first in range(0, trainer.steps_per_epoch, trainer.chunk_steps):
            start = time.perf_counter()
            state, metrics = trainer.run_chunk(state, epoch_data, first, keys)
            metrics = to_host(metrics)  # (K, chunk, 3): the only host sync of the chunk
            seconds += time.perf_counter() - start
            bad = _append_records(logs, metrics, step0 + first + 1, epoch)
            if bad is not None:
                names = [m.name for m, row in zip(trainer.setup.members, metrics) if not np.isfinite(row[bad, 0])]
                raise NonFiniteLoss(
                    f"the loss of member {', '.join(names)} became non-finite at step {step0 + first + 1 + bad} "
                    f"(epoch {epoch}); stopped the ensemble. {last_good}; try a smaller --lr for it"
                )
            if progress:
                progress.update(metrics[:, :, 0].mean(axis=0))  # the members' mean loss
    finally:
        if progress:
            progress.close()
    return state, seconds


def _test_epoch(trainer: Trainer, state, test, keys: RunKeys, epoch: int, logs) -> np.ndarray:
    """Every member's test metrics after ``epoch`` ``(K, 3)``: a test record in each member's log."""
    metrics = to_host(trainer.evaluate(state.params, test.images, keys.eval_key(epoch)))
    step = int(to_host(state.step)[0])
    for log, row in zip(logs, metrics):
        record = {k: files.finite_or_none(v) for k, v in zip(METRIC_NAMES, row)}
        log.append([{"split": "test", "epoch": epoch, "step": step, **record}])
    mean = metrics.mean(axis=0)
    log_line(
        f"epoch {epoch}/{trainer.setup.config.epochs}: test loss {mean[0]:.4f} over {len(metrics)} members "
        f"(reconstruction {mean[1]:.4f}, KL {mean[2]:.4f}; min {metrics[:, 0].min():.4f}, "
        f"max {metrics[:, 0].max():.4f})"
    )
    return metrics


def _final_tests(records: list[list[dict]]) -> tuple[int, list[dict]]:
    """The last epoch and each member's test metrics after it: its record (the last epoch is always evaluated,
    and a resume trains at least one epoch)."""
    last = max(r["epoch"] for r in records[0])
    tests = [next(r for r in reversed(rs) if r.get("split") == "test" and r["epoch"] == last) for rs in records]
    return last, [{k: t[k] for k in METRIC_NAMES} for t in tests]


def train_ensemble(members: list[Member], lists: dict, out: Path, resume: bool = False, member_group: int = 0) -> dict:
    """Train every member of ``members`` (``jaxvae.run.members.member_grid`` of ``lists``) into ``out``, vmapped in
    groups of ``member_group`` (0: the backend's choice); returns the ensemble's summary. Over several processes
    every process calls this with the same arguments."""
    _check_members(members)
    if member_group < 0:
        raise UserError(f"--member-group must be >= 0 (0: the backend's choice), got {member_group}")
    if resume and (out / files.ENSEMBLE).is_file():
        _check_resumable(out, lists, member_group)
    check_out_dir(out, resume, marker=files.ENSEMBLE)
    setup = EnsembleSetup.build(members, member_group)
    keys = setup.member_keys()
    cfg = setup.config
    check_batch_splits(cfg, setup.mesh.size)
    folders = [out / files.MEMBERS / m.name for m in members]
    with contextlib.ExitStack() as stack:
        checkpoints = [stack.enter_context(Checkpoints(f / files.CHECKPOINTS)) for f in folders]
        state, done = _starting_state(setup, folders, checkpoints, resume, keys)
        if resume and done >= cfg.epochs:
            raise UserError(
                f"--resume: {out} has trained {done} epochs already (--epochs {cfg.epochs}); pass "
                f"--epochs above {done} to train it further (nothing was changed)"
            )
        dataset = prepare_data(cfg)
        check_batch_fits(cfg, len(dataset.train))
        log_line(f"data: {dataset.source}: {len(dataset.train)} train / {len(dataset.test)} test images")
        step = int(to_host(state.step)[0])
        if resume:
            log_line(f"resuming {out} after epoch {done} (step {step})")
        if is_primary():
            out.mkdir(parents=True, exist_ok=True)
            record = {"members": [m.name for m in members], "lists": lists, "member_group": member_group}
            files.write_json(out / files.ENSEMBLE, record)
        logs = [open_run_folder(f, m.config, resume, step, done) for f, m in zip(folders, members)]
        train_images, test = setup.place_train(dataset.train.images), setup.place_test(dataset.test.images)
        trainer = Trainer.compile(setup, len(dataset.train), state, train_images, test, keys)
        log_line(
            f"compiled the ensemble's training step and evaluation in {trainer.compile_seconds:.1f} s "
            f"({len(members)} members, {setup.describe_backend()['member_group']} side by side; "
            f"{trainer.chunk_steps} steps per dispatch)"
        )

        def last_good(epoch: int) -> str:
            if epoch > 1:
                return (
                    f"Every member's last good checkpoint (epoch {epoch - 1}) is in its folder in {out / files.MEMBERS}"
                )
            return "No epoch had finished, so there is no checkpoint; --resume starts the ensemble afresh"

        def save(epoch: int, state) -> None:
            meta = {"epoch": epoch, "step": int(to_host(state.step)[0]), "latent_dim": cfg.latent_dim}
            for checkpoint, member_state in zip(checkpoints, setup.member_states(state)):
                checkpoint.save(epoch, member_state, meta)

        state, timing = run_epochs(
            trainer,
            state,
            (train_images, keys, done),
            lambda state, epoch_data, epoch: _train_epoch(
                trainer, state, epoch_data, keys, epoch, logs, last_good(epoch)
            ),
            lambda state, epoch: _test_epoch(trainer, state, test, keys, epoch, logs),
            save,
        )

    barrier("jaxvae: training done")  # process 0 has written every record the others now read
    records = [log.read() for log in logs]
    last_epoch, final_tests = _final_tests(records)
    summaries = []
    for k, (member, folder, member_state) in enumerate(zip(members, folders, setup.member_states(state))):
        finished = FinishedRun(
            member.config,
            dataset,
            setup.model,
            member_state,
            records[k],
            last_epoch,
            final_tests[k],
            timing,
            trainer.steps_per_epoch,
            trainer.chunk_steps,
            setup.describe_backend(),
            setup.mesh,
            keys.eval[k],
        )
        summaries.append(finish_run(folder, finished))
    return finish_ensemble(out, setup, lists, summaries, records, timing, trainer.steps_per_epoch)

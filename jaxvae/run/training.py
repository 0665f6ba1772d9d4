"""Training runs: ``train`` (one run) and ``train_ensemble`` (every combination of the lists), both through
``train_members``, what ``jaxvae train`` calls.

A run is built in one pass: settings and folder checked, the starting state made or restored (before the data
loads, so that a damaged or mismatched checkpoint is reported at once), the data loaded, the functions compiled
(``jaxvae.run.engine``); then ``run_epochs``: each epoch's chunks of jitted steps and their records, the test
evaluation and the checkpoints; at the end the reports (``jaxvae.run.report``).

Folders: a single run is a run folder at ``--out``; an ensemble writes ``OUT/ensemble.json``, one run folder per
member, ``OUT/members/NAME``, in the single-run format, and its own report in ``OUT``. A resume restores every
member at the last epoch they all have checkpointed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from jaxvae.data import Dataset, Split, binarize, load_dataset
from jaxvae.devices import to_host
from jaxvae.errors import UserError, refuse_file_on_path
from jaxvae.run import files
from jaxvae.run.checkpoint import Checkpoints, latest_epoch
from jaxvae.run.config import (
    RunConfig,
    check_batch_fits,
    check_batch_splits,
    check_flags,
    check_resumable,
    evaluates_after,
    load_config,
)
from jaxvae.run.distributed import barrier, check_same_everywhere, is_primary
from jaxvae.run.engine import RunSetup, Trainer, stack_members
from jaxvae.run.members import Member, describe_lists, member_name
from jaxvae.run.progress import Progress
from jaxvae.run.report import finish_run


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def unfinished_run(out: Path) -> bool:
    """Whether ``out`` holds a run whose first epoch never finished (interrupted, killed, or stopped by a
    non-finite loss): its settings and step records, but no checkpoint and nothing else. Such a run is started
    afresh by the same ``train`` command, and from epoch 1 by ``--resume``."""
    names = {p.name.removesuffix(".tmp") for p in out.iterdir()} - {files.LOCK}
    unfinished = names <= {files.CONFIG, files.METRICS, files.CHECKPOINTS} and (out / files.CONFIG).is_file()
    return unfinished and latest_epoch(out / files.CHECKPOINTS) is None


def reported(out: Path, epochs: int) -> bool:
    """Whether ``out``'s ``summary.json`` reports ``epochs`` epochs: a fault after a run's last epoch (a full disk
    while its plots are drawn) leaves none, or one of a part before, which ``--resume`` then writes."""
    try:
        return files.read_json(out / files.SUMMARY, "").get("epochs_completed") == epochs
    except UserError:  # missing or damaged
        return False


@contextlib.contextmanager
def claim_out_dir(out: Path, resume: bool, marker: str = files.CONFIG):
    """Refuse an ``--out`` that is a file, that another run is writing, that holds another run (unless resuming
    it), holds no run to resume (no ``marker``: ``config.json``, or an ensemble's ``ensemble.json``) or cannot be
    written; then hold it (process 0, the one writer) for the life of the context. Every process reads it before
    any writes; then process 0 probes it (a probe or a folder made and removed by one process while another looked
    would read as "already holds files" or "cannot be written") and takes its lock."""
    refuse_file_on_path(out, "--out", folder=True)
    files.refuse_held(out)
    if resume and not (out / marker).exists():
        what = "ensemble" if marker == files.ENSEMBLE else "run"
        raise UserError(f"--resume: {out} holds no {what} to resume (no {marker}); drop --resume to start one")
    if not resume and out.exists() and {p.name for p in out.iterdir()} - {files.LOCK} and not unfinished_run(out):
        raise UserError(
            f"--out {out} already holds a run (or other files); pass --resume to continue it or choose a new --out"
        )
    barrier("jaxvae: every process read --out")
    if is_primary():
        files.check_writable(out, "--out", folder=True)
    with files.hold(out) if is_primary() else contextlib.nullcontext():
        barrier("jaxvae: process 0 holds --out")  # before process 0 writes into it
        yield


def resume_hint(out: Path) -> str:
    """What a stopped run in ``out`` keeps, and the command that continues it: its last complete checkpoint (every
    member's, for an ensemble)."""
    ensemble = (out / files.ENSEMBLE).is_file() and (out / files.MEMBERS).is_dir()
    folders = sorted((out / files.MEMBERS).iterdir()) if ensemble else [out]
    kept = [latest_epoch(c) if c.is_dir() else None for c in (f / files.CHECKPOINTS for f in folders)]  # a file: none
    done = min((epoch or 0 for epoch in kept), default=0)
    if not done:
        return f"no epoch had finished, so {out} holds no checkpoint: the same command starts it again"
    where = f"every member's folder in {out / files.MEMBERS}" if ensemble else str(out / files.CHECKPOINTS)
    return f"the last complete checkpoint (epoch {done}) is in {where}: continue with the same command and --resume"


def prepare_data(config: RunConfig) -> Dataset:
    """The configured slices of the data set, binarised as ``--binarize`` says (``jaxvae.data.binarize``)."""
    dataset = load_dataset(config.dataset, config.data_dir)
    train, test = dataset.train.head(config.train_examples), dataset.test.head(config.test_examples)
    if config.binarize == "none":
        return Dataset(dataset.name, dataset.source, train, test)
    mode = "none" if config.binarize == "sample" else config.binarize  # sampled training images are drawn per step
    train = Split(binarize.binarize_split(train.images, mode, None), train.labels)
    test_key = binarize.test_split_key(config.seed if config.binarize_seed is None else config.binarize_seed)
    test = Split(binarize.binarize_split(test.images, config.binarize, test_key), test.labels)
    return Dataset(dataset.name, f"{dataset.source}, binarised ({config.binarize})", train, test)


def log_line(message: str) -> None:
    if is_primary():
        print(message, file=sys.stderr, flush=True)


@dataclass
class RunFolders:
    """What a run keeps of its epochs in each member's run folder: step and test records, checkpoints. ``names``
    are the members' for an ensemble's messages, None for a single run's."""

    out: Path
    names: list[str] | None
    latent_dim: int
    logs: list[files.MetricsLog]
    checkpoints: list[Checkpoints]

    def last_good(self, epoch: int) -> str:
        if epoch == 1:
            again = "--resume starts the ensemble" if self.names else "the same command starts the run"
            return f"No epoch had finished, so there is no checkpoint; {again} afresh"
        if self.names:
            return f"Every member's last good checkpoint (epoch {epoch - 1}) is in its folder in {self.out / 'members'}"
        return f"The last good checkpoint (epoch {epoch - 1}) is in {self.out / files.CHECKPOINTS}"

    def steps(self, metrics: np.ndarray, first_step: int, epoch: int) -> None:
        """Each member's step records of one chunk, ``metrics`` ``(K, chunk, 3)``, up to and including the first
        step where any member's loss is not finite; that step stops the run."""
        bad = np.flatnonzero(~np.all(np.isfinite(metrics[:, :, 0]), axis=0))
        for log, rows in zip(self.logs, metrics[:, : bad[0] + 1 if bad.size else None]):
            log.append([{"step": first_step + i, "epoch": epoch, **files.terms(row)} for i, row in enumerate(rows)])
        if not bad.size:
            return
        where = f"non-finite at step {first_step + bad[0]} (epoch {epoch}); stopped"
        if self.names:
            names = ", ".join(n for n, row in zip(self.names, metrics) if not np.isfinite(row[bad[0], 0]))
            raise NonFiniteLoss(f"the loss of member {names} became {where} the ensemble. {self.last_good(epoch)}; "
                                "try a smaller --lr for it in a new --out")  # fmt: skip
        raise NonFiniteLoss(f"the loss became {where}. {self.last_good(epoch)}; try a smaller --lr in a new --out")

    def test(self, metrics: np.ndarray, epoch: int, epochs: int, step: int) -> None:
        """Each member's test metrics after ``epoch`` ``(K, 3)``: a test record in its log, and a log line."""
        for log, row in zip(self.logs, metrics):
            log.append([{"split": "test", "epoch": epoch, "step": step, **files.terms(row)}])
        m, spread = metrics.mean(axis=0), f" over {len(metrics)} members" if self.names else ""
        extremes = f"; min {metrics[:, 0].min():.4f}, max {metrics[:, 0].max():.4f}" if self.names else ""
        log_line(f"epoch {epoch}/{epochs}: test loss {m[0]:.4f}{spread} (reconstruction {m[1]:.4f}, KL {m[2]:.4f}"
                 f"{extremes})")  # fmt: skip

    def save(self, epoch: int, step: int, states: list) -> None:
        """Each member's state after ``epoch`` into its checkpoints."""
        for checkpoints, member in zip(self.checkpoints, states):
            checkpoints.save(epoch, member, {"epoch": epoch, "step": step, "latent_dim": self.latent_dim})


def run_epochs(trainer: Trainer, state, train_images, test, keys, done: int, folders: RunFolders):
    """The epochs after ``done`` up to ``--epochs``: each epoch's shuffle, its chunks and their records, its test
    evaluation when due, its checkpoints. Nothing but the metrics leaves the devices (in one process; several
    processes upload each chunk's rows). Returns the state and the timing that ``summary.json`` reports."""
    cfg = trainer.setup.config
    timing = {"train_seconds": 0.0, "eval_seconds": 0.0, "trained_images": 0}
    step = done * trainer.steps_per_epoch
    for epoch in range(done + 1, cfg.epochs + 1):
        order = trainer.order(keys.data, epoch)
        with Progress(f"epoch {epoch}/{cfg.epochs}", trainer.steps_per_epoch, "steps", is_primary()) as progress:
            for first in range(0, trainer.steps_per_epoch, trainer.chunk_steps):
                start = time.perf_counter()
                batches = trainer.batches(train_images, order, state.step, first)
                state, metrics = trainer.train_chunk(state, batches, keys)
                metrics = to_host(metrics)  # (K, chunk, 3): the chunk's one copy to the host
                timing["train_seconds"] += time.perf_counter() - start
                folders.steps(metrics, step + 1, epoch)
                step += trainer.chunk_steps
                progress.update(trainer.chunk_steps, metrics[:, :, 0].mean())
        timing["trained_images"] += trainer.steps_per_epoch * cfg.batch_size
        if evaluates_after(cfg, epoch):
            start = time.perf_counter()
            metrics = to_host(trainer.evaluate_split(state.params, test, keys, epoch))  # (K, 3)
            timing["eval_seconds"] += time.perf_counter() - start
            folders.test(metrics, epoch, cfg.epochs, step)
        folders.save(epoch, step, trainer.setup.unstack(state))
    return state, {**timing, "compile_seconds": trainer.compile_seconds, "traces": dict(trainer.traces)}


def _starting_state(setup: RunSetup, out: Path, paths: list[Path], checkpoints, resume: bool, keys, initial_params):
    """Fresh (from ``initial_params``, if given), or every member's checkpoint of the last epoch all of them have;
    and the epochs already done."""
    if resume:
        for member, path in zip(setup.members, paths):
            check_resumable(load_config(path / files.CONFIG, "start a new --out"), member.config)
        latest = [c.latest_epoch() for c in checkpoints]
        if None not in latest:
            for path in paths:  # their records are kept: a damaged one is refused before anything is written
                files.MetricsLog(path / files.METRICS).records()
            epoch, like = min(latest), setup.state_target()
            return stack_members(*[c.restore_checked(epoch, setup.config.latent_dim, like) for c in checkpoints]), epoch
        log_line(f"--resume: {out} has no checkpoint yet (a first epoch never finished); starting from epoch 1")
    return setup.fresh_state(keys, initial_params), 0


def train_members(
    members: list[Member], out: str | Path, resume=False, lists: dict | None = None, member_group=0, initial_params=None
) -> dict:
    """Train ``members`` into ``out``: a single run's folder (``lists`` None, one member) or an ensemble's (the
    ``lists`` the members came from); returns the summary written to ``OUT/summary.json``. Over several processes
    every process calls this with the same arguments."""
    out = Path(out)
    for member in members:
        check_flags(member.config)
    cfg = members[0].config
    if cfg.binarize == "sample" and cfg.binarize_seed is None and len({m.config.seed for m in members}) > 1:
        raise UserError(
            "--binarize sample draws each member's test split from its --seed, which an ensemble's one test split "
            "cannot follow; give --binarize-seed N (one draw for every member), one --seed, or separate runs"
        )
    if cfg.binarize_seed is not None and cfg.binarize != "sample" and not resume:  # a run saved with it resumes
        raise UserError("--binarize-seed seeds --binarize sample's test draw; add --binarize sample or leave it out")
    check_same_everywhere(json.dumps([[m.config.to_json() for m in members], resume, lists, member_group]))
    if lists is not None and resume and (out / files.ENSEMBLE).is_file():
        record = files.read_ensemble(out, "start a new --out")
        saved = {name: tuple(v) for name, v in record["lists"].items()}
        if saved != lists:  # a resumed ensemble continues the saved one: the same lists, hence the same members
            raise UserError(
                f"--resume: this ensemble was trained with {describe_lists(saved)}, not {describe_lists(lists)}; pass "
                "the same lists or start a new --out"
            )
    setup = RunSetup.build(members, member_group)
    check_batch_splits(cfg, setup.mesh.size)
    with contextlib.ExitStack() as stack:
        stack.enter_context(claim_out_dir(out, resume, files.CONFIG if lists is None else files.ENSEMBLE))
        keys = setup.keys()
        paths = [out] if lists is None else [out / files.MEMBERS / m.name for m in members]
        checkpoints = [stack.enter_context(Checkpoints(p / files.CHECKPOINTS)) for p in paths]
        state, done = _starting_state(setup, out, paths, checkpoints, resume, keys, initial_params)
        if resume and (done > cfg.epochs or done == cfg.epochs and reported(out, done)):
            raise UserError(
                f"--resume: {out} has trained {done} epochs already (--epochs {cfg.epochs}); pass "
                f"--epochs above {done} to train it further (nothing was changed)"
            )
        if resume and done == cfg.epochs:
            for log in (files.MetricsLog(p / files.METRICS) for p in paths):  # the report's final test figures
                if not any(r.get("split") == "test" and r["epoch"] == done for r in log.read()):
                    raise UserError(
                        f"--resume: {log.path} has no test record of epoch {done} (lines removed?), "
                        f"which the report is made of; pass --epochs above {done} to train it further"
                    )
            log_line(f"--resume: {out} has trained its {done} epochs, but its report was never written: writing it")
        dataset = prepare_data(cfg)
        check_batch_fits(cfg, len(dataset.train))
        log_line(f"data: {dataset.source}: {len(dataset.train)} train / {len(dataset.test)} test images")
        step = done * (len(dataset.train) // cfg.batch_size)
        if resume:
            log_line(f"resuming {out} after epoch {done} (step {step})")
        logs = [files.MetricsLog(p / files.METRICS, enabled=is_primary()) for p in paths]  # process 0 writes them
        if is_primary():
            if lists is not None:
                out.mkdir(parents=True, exist_ok=True)
                ensemble = {"members": [m.name for m in members], "lists": lists, "member_group": member_group}
                files.write_json(out / files.ENSEMBLE, ensemble)
            for path, member, log in zip(paths, members, logs):
                path.mkdir(parents=True, exist_ok=True)
                files.write_json(path / files.CONFIG, member.config.to_json())
                # a fresh start (step 0) over an unfinished run keeps none of its records
                if (logged := log.truncate_after(step, done)) < step:
                    log_line(f"--resume: {path / files.METRICS} holds the records of {logged} of the {step} steps "
                             "trained (lines removed?); its loss plots show those it holds")  # fmt: skip
        train_images, test = setup.place_train(dataset.train.images), setup.place_test(dataset.test.images)
        trainer = Trainer.compile(setup, len(dataset.train), state, train_images, test, keys)
        side_by_side = setup.describe_backend()["member_group"]
        together = "" if lists is None else f"; {len(members)} members, {side_by_side} side by side"
        log_line(
            f"compiled the training step and the evaluation in {trainer.compile_seconds:.1f} s ({trainer.chunk_steps} "
            f"steps per dispatch, {setup.mesh.size} x {jax.devices()[0].device_kind} over {jax.process_count()} "
            f"process(es){together})"
        )
        names = None if lists is None else [m.name for m in members]
        folders = RunFolders(out, names, cfg.latent_dim, logs, checkpoints)
        state, timing = run_epochs(trainer, state, train_images, test, keys, done, folders)
    barrier("jaxvae: training done")  # process 0 has written every record the others now read
    return finish_run(out, paths, trainer, dataset, state, keys, [log.read() for log in logs], timing, lists)


def train(config: RunConfig, out: str | Path, resume: bool = False, initial_params=None) -> dict:
    """Train as configured into ``out``; returns the summary written to ``summary.json``.

    ``initial_params`` (for instance ``params_from_torch(state_dict)["params"]``) replaces the fresh
    initialisation of a new run. Over several processes every process calls this with the same arguments.
    """
    return train_members([Member(member_name(config), config)], out, resume, initial_params=initial_params)


def train_ensemble(
    members: list[Member], lists: dict, out: str | Path, resume: bool = False, member_group: int = 0
) -> dict:
    """Train every member of ``members`` (``jaxvae.run.members.member_grid`` of ``lists``) into ``out``, vmapped in
    groups of ``member_group`` (0: the backend's choice); returns the ensemble's summary. Over several processes
    every process calls this with the same arguments."""
    return train_members(members, out, resume, lists, member_group)

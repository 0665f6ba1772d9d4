"""A training run: ``train(config, out_dir, resume)``, what ``jaxvae train`` calls.

The run is built in one pass (``jaxvae.run.trainer``): settings checked, the starting state made or restored
(before the data loads, so that a damaged or mismatched checkpoint is reported at once), the data loaded, the
functions compiled; then each epoch's chunks of jitted steps, its metrics, test evaluation and checkpoint; and
at the end the report (``jaxvae.run.report``: plots and ``summary.json``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxvae.data import Dataset, Split, binarize, load_dataset
from jaxvae.devices import to_host
from jaxvae.errors import UserError
from jaxvae.run import files
from jaxvae.run.checkpoint import Checkpoints, latest_epoch
from jaxvae.run.config import (
    RunConfig,
    check_batch_fits,
    check_batch_splits,
    check_flags,
    check_resumable,
    evaluates_after,
)
from jaxvae.run.distributed import barrier, is_primary
from jaxvae.run.progress import EpochProgress
from jaxvae.run.report import FinishedRun, finish_run
from jaxvae.run.trainer import PlacedSplit, RunKeys, RunSetup, Trainer
from jaxvae.train_step import METRIC_NAMES, TrainState


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


UNFINISHED_RUN_FILES = {files.CONFIG, files.METRICS, files.CHECKPOINTS}


def unfinished_run(out: Path) -> bool:
    """Whether ``out`` holds a run whose first epoch never finished (interrupted, killed, or stopped by a
    non-finite loss): its settings and step records, but no checkpoint and nothing else. Such a run is started
    afresh by the same ``train`` command, and from epoch 1 by ``--resume``."""
    names = {p.name.removesuffix(".tmp") for p in out.iterdir()}
    no_checkpoint = latest_epoch(out / files.CHECKPOINTS) is None
    return (out / files.CONFIG).is_file() and names <= UNFINISHED_RUN_FILES and no_checkpoint


def _check_out_contents(out: Path, resume: bool, marker: str) -> None:
    """Refuse, reading only, an ``--out`` that is a file, that holds another run (unless resuming it), or that
    holds no run to resume (no ``marker``: ``config.json``, or an ensemble's ``ensemble.json``)."""
    files.refuse_file_on_path(out, "--out", folder=True)
    if resume:
        if not (out / marker).exists():
            what = "ensemble" if marker == files.ENSEMBLE else "run"
            raise UserError(f"--resume: {out} holds no {what} to resume (no {marker}); drop --resume to start one")
        return
    if out.exists() and any(out.iterdir()) and not unfinished_run(out):
        raise UserError(
            f"--out {out} already holds a run (or other files); pass --resume to continue it or choose a new --out"
        )


def check_out_dir(out: Path, resume: bool, marker: str = files.CONFIG) -> None:
    """Refuse an ``--out`` that holds the wrong things or cannot be written. Every process reads it before any
    writes; then process 0, the one that writes the run's files, probes it (a probe or a folder made and removed
    by one process while another looked would read as "already holds files" or "cannot be written")."""
    _check_out_contents(out, resume, marker)
    barrier("jaxvae: every process read --out")
    if is_primary():
        files.check_writable(out, "--out", folder=True)
    barrier("jaxvae: process 0 can write --out")  # before process 0 writes into it


def prepare_data(config: RunConfig) -> Dataset:
    """The configured slices of the data set, binarised as ``--binarize`` says (``jaxvae.data.binarize``)."""
    dataset = load_dataset(config.dataset, config.data_dir)
    train, test = dataset.train.head(config.train_examples), dataset.test.head(config.test_examples)
    if config.binarize == "none":
        return Dataset(dataset.name, dataset.source, train, test)
    mode = "none" if config.binarize == "sample" else config.binarize  # sampled training images are drawn per step
    train = Split(binarize.binarize_split(train.images, mode, None), train.labels)
    test = Split(
        binarize.binarize_split(test.images, config.binarize, binarize.test_split_key(config.seed)), test.labels
    )
    return Dataset(dataset.name, f"{dataset.source}, binarised ({config.binarize})", train, test)


def log_line(message: str) -> None:
    if is_primary():
        print(message, file=sys.stderr, flush=True)


def _starting_state(
    setup: RunSetup, out: Path, checkpoints: Checkpoints, resume: bool, initial_params, keys: RunKeys
) -> tuple[TrainState, int]:
    """Fresh, from ``initial_params``, or the last checkpoint of ``out``, replicated on the run's devices; and
    the epochs already done."""
    if resume:
        saved = RunConfig.from_json(files.read_json(out / files.CONFIG, "start a new --out"))
        check_resumable(saved, setup.config)
        if checkpoints.latest_epoch() is not None:
            return checkpoints.restore_latest(setup.config.latent_dim, setup.state_target())
        log_line(f"--resume: {out} has no checkpoint (its first epoch never finished); starting it from epoch 1")
    return setup.fresh_state(keys.init, initial_params), 0


def step_records(metrics: np.ndarray, first_step: int, epoch: int) -> list[dict]:
    records = []
    for i, row in enumerate(metrics):
        record = {"step": first_step + i, "epoch": epoch}
        record.update({name: files.finite_or_none(v) for name, v in zip(METRIC_NAMES, row)})
        records.append(record)
    return records


def _train_epoch(
    trainer: Trainer, state, epoch_data, keys, epoch, log: files.MetricsLog, last_good: str
) -> tuple[TrainState, float]:
    """One epoch of chunks over ``epoch_data`` (``Trainer.epoch_data``); returns the state and the seconds spent
    in steps."""
    cfg = trainer.setup.config
    progress = EpochProgress(epoch, cfg.epochs, trainer.steps_per_epoch) if is_primary() else None
    seconds, step0 = 0.0, int(to_host(state.step))
    try:
        for first in range(0, trainer.steps_per_epoch, trainer.chunk_steps):
            start = time.perf_counter()
            state, metrics = trainer.run_chunk(state, epoch_data, first, keys)
            metrics = to_host(metrics)  # (chunk, 3): the only host sync of the chunk
            seconds += time.perf_counter() - start
            bad = np.flatnonzero(~np.isfinite(metrics[:, 0]))
            log.append(step_records(metrics[: bad[0] + 1] if bad.size else metrics, step0 + first + 1, epoch))
            if bad.size:
                raise NonFiniteLoss(
                    f"the loss became non-finite at step {step0 + first + 1 + bad[0]} (epoch {epoch}); stopped. "
                    f"{last_good}; try a smaller --lr"
                )
            if progress:
                progress.update(metrics[:, 0])
    finally:
        if progress:
            progress.close()
    return state, seconds


def evaluate_epoch(evaluate: Callable, params, test: PlacedSplit, keys: RunKeys, epoch: int) -> np.ndarray:
    """Test metrics after ``epoch`` with the noise of ``fold_in(eval_key, epoch)``; ``evaluate`` as
    ``Trainer.evaluate_split``."""
    return evaluate(params, test, keys.eval_key(epoch))


def _test_epoch(trainer: Trainer, state, test: PlacedSplit, keys, epoch: int, log: files.MetricsLog) -> dict:
    """Evaluate the test split after ``epoch``: one ``"split": "test"`` record and a log line."""
    metrics = evaluate_epoch(trainer.evaluate_split, state.params, test, keys, epoch)
    step = int(to_host(state.step))
    record = {k: files.finite_or_none(v) for k, v in zip(METRIC_NAMES, metrics)}
    log.append([{"split": "test", "epoch": epoch, "step": step, **record}])
    log_line(
        f"epoch {epoch}/{trainer.setup.config.epochs}: test loss {metrics[0]:.4f} (reconstruction {metrics[1]:.4f}, "
        f"KL {metrics[2]:.4f})"
    )
    return record


def open_run_folder(out: Path, config: RunConfig, resume: bool, step: int, done: int) -> files.MetricsLog:
    """``config.json`` and the metrics log, written by process 0 only (the others get a log that drops records)."""
    log = files.MetricsLog(out / files.METRICS, enabled=is_primary())
    if is_primary():
        out.mkdir(parents=True, exist_ok=True)
        files.write_json(out / files.CONFIG, config.to_json())
        log.truncate_after(step, done)  # a fresh start (step 0) over an unfinished run keeps none of its records
    return log


def _final_test(trainer: Trainer, state, test: PlacedSplit, keys, records: list[dict]) -> tuple[int, dict]:
    """The last epoch of ``records`` and its test metrics: its record, or (nothing trained in this invocation and
    no record) now."""
    last_epoch = max((r["epoch"] for r in records), default=0)
    logged = [r for r in records if r.get("split") == "test" and r["epoch"] == last_epoch]
    if logged:
        return last_epoch, {k: logged[0][k] for k in METRIC_NAMES}
    metrics = evaluate_epoch(trainer.evaluate_split, state.params, test, keys, last_epoch)
    return last_epoch, dict(zip(METRIC_NAMES, metrics.tolist()))


def run_epochs(trainer: Trainer, state, place: tuple, train_epoch: Callable, test_epoch: Callable, save: Callable):
    """The epochs after ``done`` up to ``--epochs``, for a run or an ensemble: each epoch's batches, its chunks
    (``train_epoch(state, epoch_data, epoch) -> (state, seconds)``), its test evaluation when due
    (``test_epoch(state, epoch)``) and its checkpoint (``save(epoch, state)``). ``place`` is ``(train images,
    keys, done)``: where the epochs' batches come from, and the epochs already done. Returns the state and the
    timing that ``summary.json`` reports."""
    train_images, keys, done = place
    cfg = trainer.setup.config
    train_seconds, eval_seconds, trained_images = 0.0, 0.0, 0
    for epoch in range(done + 1, cfg.epochs + 1):
        epoch_data = trainer.epoch_data(train_images, keys.data, epoch)
        state, seconds = train_epoch(state, epoch_data, epoch)
        train_seconds += seconds
        trained_images += trainer.steps_per_epoch * cfg.batch_size
        if evaluates_after(cfg, epoch):
            start = time.perf_counter()
            test_epoch(state, epoch)
            eval_seconds += time.perf_counter() - start
        save(epoch, state)
    timing = {
        "compile_seconds": trainer.compile_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "trained_images": trained_images,
        "traces": dict(trainer.traces),
    }
    return state, timing


def train(config: RunConfig, out: Path, resume: bool = False, initial_params=None) -> dict:
    """Train as configured into ``out``; returns the summary written to ``summary.json``.

    ``initial_params`` (for instance ``params_from_torch(state_dict)["params"]``) replaces the fresh
    initialisation of a new run. Over several processes every process calls this with the same arguments.
    """
    check_flags(config)
    check_out_dir(out, resume)
    keys = RunKeys.from_seed(config.seed)
    setup = RunSetup.build(config)
    check_batch_splits(config, setup.mesh.size)
    with Checkpoints(out / files.CHECKPOINTS) as checkpoints:
        state, done = _starting_state(setup, out, checkpoints, resume, initial_params, keys)
        if resume and done >= config.epochs:
            raise UserError(
                f"--resume: {out} has trained {done} epochs already (--epochs {config.epochs}); pass "
                f"--epochs above {done} to train it further (nothing was changed)"
            )
        dataset = prepare_data(config)
        check_batch_fits(config, len(dataset.train))
        log_line(f"data: {dataset.source}: {len(dataset.train)} train / {len(dataset.test)} test images")
        if resume:
            log_line(f"resuming {out} after epoch {done} (step {int(to_host(state.step))})")
        log = open_run_folder(out, config, resume, int(to_host(state.step)), done)
        train_images, test = setup.place_train(dataset.train.images), setup.place_test(dataset.test.images)
        trainer = Trainer.compile(setup, len(dataset.train), state, train_images, test, keys)
        log_line(
            f"compiled the training step and the evaluation in {trainer.compile_seconds:.1f} s ({trainer.chunk_steps} "
            f"steps per dispatch, {setup.mesh.size} x {jax.devices()[0].device_kind} over "
            f"{jax.process_count()} process(es))"
        )

        def last_good(epoch: int) -> str:
            if epoch > 1:
                return f"The last good checkpoint (epoch {epoch - 1}) is in {out / files.CHECKPOINTS}"
            return "No epoch had finished, so there is no checkpoint; the same command starts the run afresh"

        def save(epoch: int, state) -> None:
            step = int(to_host(state.step))
            checkpoints.save(epoch, state, {"epoch": epoch, "step": step, "latent_dim": config.latent_dim})

        state, timing = run_epochs(
            trainer,
            state,
            (train_images, keys, done),
            lambda state, epoch_data, epoch: _train_epoch(
                trainer, state, epoch_data, keys, epoch, log, last_good(epoch)
            ),
            lambda state, epoch: _test_epoch(trainer, state, test, keys, epoch, log),
            save,
        )

    barrier("jaxvae: training done")  # process 0 has written every record the others now read
    records = log.read()  # every process reads the records process 0 wrote
    last_epoch, final_test = _final_test(trainer, state, test, keys, records)
    finished = FinishedRun(
        config,
        dataset,
        setup.model,
        state,
        records,
        last_epoch,
        final_test,
        timing,
        trainer.steps_per_epoch,
        trainer.chunk_steps,
        setup.describe_backend(),
        setup.mesh,
        keys.eval,
    )
    return finish_run(out, finished)

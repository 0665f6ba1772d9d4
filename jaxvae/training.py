"""A training run: data on the device, chunks of jitted steps, metrics, checkpoints, plots, summary.

``train(config, out_dir, resume)`` is what ``jaxvae train`` calls. Keys: one root key from ``--seed``,
split into init / data / train / eval keys; epoch e's shuffle is ``permutation(fold_in(data_key, e))`` and
step s's noise ``fold_in(train_key, s)``, so a resumed run repeats an uninterrupted one exactly.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae import binarize, checkpoint, run_files
from jaxvae.config import RunConfig, check_batch_fits, check_batch_splits, check_flags, check_resumable, chunk_length, evaluates_after
from jaxvae.data import Dataset, Split, load_dataset
from jaxvae.errors import UserError
from jaxvae.distributed import barrier, is_primary
from jaxvae.layers import resolve_conv_impl
from jaxvae.model import VAE
from jaxvae.parallel import make_mesh, put_replicated, put_rows, to_host
from jaxvae.progress import EpochProgress
from jaxvae.train_step import (
    METRIC_NAMES,
    TrainState,
    concurrent_micro_batches,
    epoch_batches,
    evaluation_rows,
    init_state,
    make_evaluate,
    make_optimizer,
    make_train_chunk,
    make_train_step,
    resolve_eval_batch,
    resolve_micro_batch,
)


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class RunKeys:
    init: jax.Array
    data: jax.Array
    train: jax.Array
    eval: jax.Array

    @classmethod
    def from_seed(cls, seed: int) -> "RunKeys":
        return cls(*jax.random.split(jax.random.PRNGKey(seed), 4))


@dataclass
class Trainer:
    """The compiled functions of one run over a device mesh; ``traces`` counts how often each was traced (once is right).

    The epoch's batches and the test split go onto the devices split along the batch (``jaxvae.parallel``);
    parameters and optimiser state are replicated.
    """

    config: RunConfig
    num_train: int
    traces: dict = field(default_factory=lambda: {"train_chunk": 0, "evaluate": 0})

    def __post_init__(self):
        cfg = self.config
        self.mesh = make_mesh(cfg.devices)
        self.conv_impl = resolve_conv_impl(cfg.conv_impl)  # the implementation "auto" chose
        self.model = VAE(cfg.latent_dim, conv_impl=self.conv_impl)
        self.optimizer = make_optimizer(cfg.lr)
        self.steps_per_epoch = self.num_train // cfg.batch_size
        self.chunk_steps = chunk_length(self.steps_per_epoch, cfg.batch_size, cfg.chunk_steps)
        self.micro_batch = resolve_micro_batch(cfg.micro_batch)
        self.concurrent = concurrent_micro_batches()
        self.eval_batch = resolve_eval_batch()
        step = make_train_step(self.model, self.optimizer, cfg.reconstruction_weight, self.micro_batch, self.concurrent, self.mesh,
                               cfg.likelihood, cfg.binarize)
        chunk = make_train_chunk(step, self.chunk_steps)
        evaluate = make_evaluate(self.model, cfg.reconstruction_weight, self.eval_batch, self.concurrent, self.mesh, cfg.likelihood)
        self._train_chunk = jax.jit(self._counted("train_chunk", chunk), donate_argnums=0)
        self._evaluate = jax.jit(self._counted("evaluate", evaluate), static_argnums=3)
        self._order = jax.jit(epoch_batches, static_argnums=(2, 3))
        self.compiled = None
        self.compiled_evaluate = None

    def _counted(self, name, fn):
        def traced(*args):
            self.traces[name] += 1  # runs only while JAX traces the function
            return fn(*args)

        return traced

    def place_state(self, state: TrainState) -> TrainState:
        """The state replicated on every device of the mesh."""
        return put_replicated(state, self.mesh)

    def epoch_order(self, data_key, epoch: int) -> np.ndarray:
        """The epoch's batches as example indices ``(steps, B)``: the same on every process and device count."""
        with jax.default_device(jax.local_devices()[0]):
            return np.asarray(self._order(data_key, epoch, self.num_train, self.config.batch_size))

    def epoch_data(self, images: np.ndarray, data_key, epoch: int) -> jax.Array:
        """The epoch's batches ``(steps, B, 28, 28, 1)``, each device holding its rows of every batch."""
        return put_rows(images, self.epoch_order(data_key, epoch), self.mesh, axis=1)

    def place_test(self, images: np.ndarray) -> tuple[jax.Array, int]:
        """The test images padded to whole evaluation groups and split over the devices; and their count."""
        rows = evaluation_rows(len(images), self.eval_batch, self.concurrent, self.mesh.size)
        index = np.minimum(np.arange(rows), len(images) - 1)  # padding repeats the last image; it is masked out
        return put_rows(images, index, self.mesh, axis=0), len(images)

    def compile(self, state: TrainState, epoch, train_key) -> float:
        """Compile the train chunk ahead of time; returns the seconds it took."""
        start = time.perf_counter()
        self.compiled = self._train_chunk.lower(state, epoch, 0, train_key).compile()
        return time.perf_counter() - start

    def compile_evaluate(self, params, test, eval_key) -> float:
        """Compile the evaluation of the placed test split ``test`` (``place_test``'s result) ahead of time."""
        start = time.perf_counter()
        self.compiled_evaluate = self._evaluate.lower(params, test[0], eval_key, test[1]).compile()
        return time.perf_counter() - start

    def run_chunk(self, state, epoch, first: int, train_key):
        return self.compiled(state, epoch, jnp.int32(first), train_key)

    def evaluate(self, params, test, key) -> np.ndarray:
        """Metrics (3,) of the placed test split; compiles the evaluation first if ``compile_evaluate`` was not called."""
        if self.compiled_evaluate is None:
            self.compile_evaluate(params, test, key)
        return to_host(self.compiled_evaluate(params, test[0], key))


def _check_out_dir(out: Path, resume: bool) -> None:
    if resume:
        if not (out / run_files.CONFIG).exists():
            raise UserError(f"--resume: {out} holds no run to resume (no {run_files.CONFIG}); drop --resume to start one")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already holds files (another run?); pass --resume to continue it or choose a new --out")


def prepare_data(config: RunConfig) -> Dataset:
    """The configured slices of the data set, binarised as ``--binarize`` says (``jaxvae.binarize``)."""
    dataset = load_dataset(config.dataset, config.data_dir)
    train, test = dataset.train.head(config.train_examples), dataset.test.head(config.test_examples)
    if config.binarize != "none":
        mode = "none" if config.binarize == "sample" else config.binarize  # sampled training images are drawn per step
        train = Split(binarize.binarize_split(train.images, mode, None), train.labels)
        test = Split(binarize.binarize_split(test.images, config.binarize, binarize.test_split_key(config.seed)), test.labels)
    return Dataset(dataset.name, f"{dataset.source}, binarised ({config.binarize})" if config.binarize != "none" else dataset.source, train, test)


def _log(message: str) -> None:
    if is_primary():
        print(message, file=sys.stderr, flush=True)


def _restore(out: Path, config: RunConfig, fresh: TrainState) -> tuple[TrainState, int]:
    saved = RunConfig.from_json(run_files.read_json(out / run_files.CONFIG, "start a new --out"))
    check_resumable(saved, config)
    return checkpoint.restore_latest(out / run_files.CHECKPOINTS, config.latent_dim, fresh)


def _starting_state(config: RunConfig, out: Path, resume: bool, initial_params, keys: RunKeys) -> tuple[TrainState, int]:
    """Fresh, from ``initial_params``, or the last checkpoint of ``out``, replicated on the run's devices; and
    the epochs already done. Runs before the data loads, so that a damaged or mismatched checkpoint is reported at once.
    """
    model, optimizer = VAE(config.latent_dim, conv_impl=config.conv_impl), make_optimizer(config.lr)
    with jax.default_device(jax.local_devices()[0]):
        state = init_state(model, optimizer, keys.init)
        if initial_params is not None and not resume:
            params = jax.tree_util.tree_map(jnp.asarray, initial_params)
            state = TrainState(params, optimizer.init(params), state.step)
    state = put_replicated(state, make_mesh(config.devices))
    return _restore(out, config, state) if resume else (state, 0)


def _step_records(metrics: np.ndarray, first_step: int, epoch: int) -> list[dict]:
    records = []
    for i, row in enumerate(metrics):
        record = {"step": first_step + i, "epoch": epoch}
        record.update({name: run_files.finite_or_none(v) for name, v in zip(METRIC_NAMES, row)})
        records.append(record)
    return records


def _train_epoch(trainer, state, epoch_data, keys, epoch, log: run_files.MetricsLog, out: Path) -> tuple[TrainState, float]:
    """One epoch of chunks over ``epoch_data`` (``Trainer.epoch_data``); returns the state and the seconds spent in steps."""
    cfg = trainer.config
    progress = EpochProgress(epoch, cfg.epochs, trainer.steps_per_epoch) if is_primary() else None
    seconds, step0 = 0.0, int(to_host(state.step))
    try:
        for first in range(0, trainer.steps_per_epoch, trainer.chunk_steps):
            start = time.perf_counter()
            state, metrics = trainer.run_chunk(state, epoch_data, first, keys.train)
            metrics = to_host(metrics)  # (chunk, 3): the only host sync of the chunk
            seconds += time.perf_counter() - start
            bad = np.flatnonzero(~np.isfinite(metrics[:, 0]))
            log.append(_step_records(metrics[: bad[0] + 1] if bad.size else metrics, step0 + first + 1, epoch))
            if bad.size:
                raise NonFiniteLoss(
                    f"the loss became non-finite at step {step0 + first + 1 + bad[0]} (epoch {epoch}); stopped. The last good "
                    f"checkpoint is in {out / run_files.CHECKPOINTS}; try a smaller --lr"
                )
            if progress:
                progress.update(metrics[:, 0])
    finally:
        if progress:
            progress.close()
    return state, seconds


def evaluate_epoch(trainer, params, test, keys, epoch) -> np.ndarray:
    """Test metrics after ``epoch``, with the noise of ``fold_in(eval_key, epoch)``; ``test`` from ``Trainer.place_test``."""
    return trainer.evaluate(params, test, jax.random.fold_in(keys.eval, epoch))


def _test_epoch(trainer, state, test, keys, epoch: int, log: run_files.MetricsLog) -> None:
    """Evaluate the test split after ``epoch``: one ``"split": "test"`` record and a log line."""
    metrics = evaluate_epoch(trainer, state.params, test, keys, epoch)
    step = int(to_host(state.step))
    log.append([{"split": "test", "epoch": epoch, "step": step, **{k: run_files.finite_or_none(v) for k, v in zip(METRIC_NAMES, metrics)}}])
    _log(f"epoch {epoch}/{trainer.config.epochs}: test loss {metrics[0]:.4f} (reconstruction {metrics[1]:.4f}, KL {metrics[2]:.4f})")


def _open_run_folder(out: Path, config: RunConfig, resume: bool, step: int, done: int) -> run_files.MetricsLog:
    """``config.json`` and the metrics log, written by process 0 only (the others get a log that drops records)."""
    log = run_files.MetricsLog(out / run_files.METRICS, enabled=is_primary())
    if is_primary():
        out.mkdir(parents=True, exist_ok=True)
        run_files.write_json(out / run_files.CONFIG, config.to_json())
        if resume:
            log.truncate_after(step, done)
    return log


def train(config: RunConfig, out: Path, resume: bool = False, initial_params=None) -> dict:
    """Train as configured into ``out``; returns the summary written to ``summary.json``.

    ``initial_params`` (for instance ``params_from_torch(state_dict)["params"]``) replaces the fresh
    initialisation of a new run. Over several processes every process calls this with the same arguments.
    """
    from jaxvae.report import finish_run

    check_flags(config)
    _check_out_dir(out, resume)
    barrier("jaxvae: every process checked --out")  # before process 0 writes into it
    keys = RunKeys.from_seed(config.seed)
    state, done = _starting_state(config, out, resume, initial_params, keys)
    check_batch_splits(config, make_mesh(config.devices).size)
    dataset = prepare_data(config)
    check_batch_fits(config, len(dataset.train))
    _log(f"data: {dataset.source}: {len(dataset.train)} train / {len(dataset.test)} test images")
    if resume:
        _log(f"resuming {out} after epoch {done} (step {int(to_host(state.step))})")
    trainer = Trainer(config, len(dataset.train))
    log = _open_run_folder(out, config, resume, int(to_host(state.step)), done)

    test = trainer.place_test(dataset.test.images)
    compile_seconds = trainer.compile(state, trainer.epoch_data(dataset.train.images, keys.data, 1), keys.train)
    compile_seconds += trainer.compile_evaluate(state.params, test, keys.eval)
    _log(f"compiled the training step and the evaluation in {compile_seconds:.1f} s ({trainer.chunk_steps} steps per dispatch, "
         f"{trainer.mesh.size} x {jax.devices()[0].device_kind} over {jax.process_count()} process(es))")

    train_seconds, eval_seconds, trained_images = 0.0, 0.0, 0
    for epoch in range(done + 1, config.epochs + 1):
        epoch_data = trainer.epoch_data(dataset.train.images, keys.data, epoch)
        state, seconds = _train_epoch(trainer, state, epoch_data, keys, epoch, log, out)
        train_seconds += seconds
        trained_images += trainer.steps_per_epoch * config.batch_size
        if evaluates_after(config, epoch):
            start = time.perf_counter()
            _test_epoch(trainer, state, test, keys, epoch, log)
            eval_seconds += time.perf_counter() - start
        step = int(to_host(state.step))
        checkpoint.save(out / run_files.CHECKPOINTS, epoch, state, {"epoch": epoch, "step": step, "latent_dim": config.latent_dim})

    barrier("jaxvae: training done")  # process 0 has written every record the others now read
    timing = {"compile_seconds": compile_seconds, "train_seconds": train_seconds, "eval_seconds": eval_seconds, "trained_images": trained_images, "traces": dict(trainer.traces)}
    return finish_run(out, config, dataset, trainer, state, keys, timing, test)

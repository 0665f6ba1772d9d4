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

from jaxvae import checkpoint, run_files
from jaxvae.config import RunConfig, check_batch_fits, check_flags, check_resumable, chunk_length, evaluates_after
from jaxvae.data import Dataset, load_dataset
from jaxvae.errors import UserError
from jaxvae.layers import resolve_conv_impl
from jaxvae.model import VAE
from jaxvae.progress import EpochProgress
from jaxvae.train_step import (
    METRIC_NAMES,
    TrainState,
    concurrent_micro_batches,
    epoch_batches,
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
    """The compiled functions of one run; ``traces`` counts how often each was traced (once is right)."""

    config: RunConfig
    num_train: int
    traces: dict = field(default_factory=lambda: {"train_chunk": 0, "evaluate": 0})

    def __post_init__(self):
        cfg = self.config
        self.conv_impl = resolve_conv_impl(cfg.conv_impl)  # the implementation "auto" chose
        self.model = VAE(cfg.latent_dim, conv_impl=self.conv_impl)
        self.optimizer = make_optimizer(cfg.lr)
        self.steps_per_epoch = self.num_train // cfg.batch_size
        self.chunk_steps = chunk_length(self.steps_per_epoch, cfg.batch_size, cfg.chunk_steps)
        self.micro_batch = resolve_micro_batch(cfg.micro_batch)
        self.concurrent = concurrent_micro_batches()
        self.eval_batch = resolve_eval_batch()
        step = make_train_step(self.model, self.optimizer, cfg.reconstruction_weight, self.micro_batch, self.concurrent)
        chunk = make_train_chunk(step, self.chunk_steps)
        evaluate = make_evaluate(self.model, cfg.reconstruction_weight, self.eval_batch, self.concurrent)
        self._train_chunk = jax.jit(self._counted("train_chunk", chunk), donate_argnums=0)
        self._evaluate = jax.jit(self._counted("evaluate", evaluate))
        self._batches = jax.jit(epoch_batches, static_argnums=(2, 3))
        self.compiled = None
        self.compiled_evaluate = None

    def _counted(self, name, fn):
        def traced(*args):
            self.traces[name] += 1  # runs only while JAX traces the function
            return fn(*args)

        return traced

    def compile(self, state: TrainState, images, train_key) -> float:
        """Compile the train chunk ahead of time; returns the seconds it took."""
        start = time.perf_counter()
        batches = self._batches(train_key, 0, self.num_train, self.config.batch_size)
        self.compiled = self._train_chunk.lower(state, images, batches, 0, train_key).compile()
        return time.perf_counter() - start

    def compile_evaluate(self, params, test_images, eval_key) -> float:
        """Compile the evaluation of ``test_images`` ahead of time; returns the seconds it took."""
        start = time.perf_counter()
        self.compiled_evaluate = self._evaluate.lower(params, test_images, eval_key).compile()
        return time.perf_counter() - start

    def epoch_batches(self, data_key, epoch: int):
        return self._batches(data_key, epoch, self.num_train, self.config.batch_size)

    def run_chunk(self, state, images, batches, first: int, train_key):
        return self.compiled(state, images, batches, jnp.int32(first), train_key)

    def evaluate(self, params, images, key):
        """Metrics (3,) of ``images``; compiles the evaluation first if ``compile_evaluate`` was not called."""
        if self.compiled_evaluate is None:
            self.compile_evaluate(params, images, key)
        return np.asarray(self.compiled_evaluate(params, images, key))


def _check_out_dir(out: Path, resume: bool) -> None:
    if resume:
        if not (out / run_files.CONFIG).exists():
            raise UserError(f"--resume: {out} holds no run to resume (no {run_files.CONFIG}); drop --resume to start one")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already holds files (another run?); pass --resume to continue it or choose a new --out")


def prepare_data(config: RunConfig) -> Dataset:
    dataset = load_dataset(config.dataset, config.data_dir)
    return Dataset(dataset.name, dataset.source, dataset.train.head(config.train_examples), dataset.test.head(config.test_examples))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _restore(out: Path, config: RunConfig, fresh: TrainState) -> tuple[TrainState, int]:
    saved = RunConfig.from_json(run_files.read_json(out / run_files.CONFIG, "start a new --out"))
    check_resumable(saved, config)
    return checkpoint.restore_latest(out / run_files.CHECKPOINTS, config.latent_dim, fresh)


def _starting_state(config: RunConfig, out: Path, resume: bool, initial_params, keys: RunKeys) -> tuple[TrainState, int]:
    """Fresh, from ``initial_params``, or the last checkpoint of ``out``; and the epochs already done.

    Runs before the data loads, so that a damaged or mismatched checkpoint is reported at once.
    """
    model, optimizer = VAE(config.latent_dim, conv_impl=config.conv_impl), make_optimizer(config.lr)
    state = init_state(model, optimizer, keys.init)
    if resume:
        return _restore(out, config, state)
    if initial_params is not None:
        params = jax.tree_util.tree_map(jnp.asarray, initial_params)
        state = TrainState(params, optimizer.init(params), state.step)
    return state, 0


def _step_records(metrics: np.ndarray, first_step: int, epoch: int) -> list[dict]:
    records = []
    for i, row in enumerate(metrics):
        record = {"step": first_step + i, "epoch": epoch}
        record.update({name: run_files.finite_or_none(v) for name, v in zip(METRIC_NAMES, row)})
        records.append(record)
    return records


def _train_epoch(trainer, state, images, keys, epoch, log: run_files.MetricsLog, out: Path) -> tuple[TrainState, float]:
    """One epoch of chunks; returns the state and the seconds spent in training steps."""
    cfg = trainer.config
    batches = trainer.epoch_batches(keys.data, epoch)
    progress = EpochProgress(epoch, cfg.epochs, trainer.steps_per_epoch)
    seconds = 0.0
    try:
        for first in range(0, trainer.steps_per_epoch, trainer.chunk_steps):
            step0 = int(state.step)
            start = time.perf_counter()
            state, metrics = trainer.run_chunk(state, images, batches, first, keys.train)
            metrics = np.asarray(metrics)  # (chunk, 3): the only host sync of the chunk
            seconds += time.perf_counter() - start
            bad = np.flatnonzero(~np.isfinite(metrics[:, 0]))
            log.append(_step_records(metrics[: bad[0] + 1] if bad.size else metrics, step0 + 1, epoch))
            if bad.size:
                raise NonFiniteLoss(
                    f"the loss became non-finite at step {step0 + 1 + bad[0]} (epoch {epoch}); stopped. The last good checkpoint "
                    f"is in {out / run_files.CHECKPOINTS}; try a smaller --lr"
                )
            progress.update(metrics[:, 0])
    finally:
        progress.close()
    return state, seconds


def evaluate_epoch(trainer, params, test_images, keys, epoch) -> np.ndarray:
    """Test metrics after ``epoch``, with the noise of ``fold_in(eval_key, epoch)``; ``test_images`` on the device."""
    return trainer.evaluate(params, test_images, jax.random.fold_in(keys.eval, epoch))


def _test_epoch(trainer, state, test_images, keys, epoch: int, log: run_files.MetricsLog) -> None:
    """Evaluate the test split after ``epoch``: one ``"split": "test"`` record and a log line."""
    metrics = evaluate_epoch(trainer, state.params, test_images, keys, epoch)
    log.append([{"split": "test", "epoch": epoch, "step": int(state.step), **{k: run_files.finite_or_none(v) for k, v in zip(METRIC_NAMES, metrics)}}])
    _log(f"epoch {epoch}/{trainer.config.epochs}: test loss {metrics[0]:.4f} (reconstruction {metrics[1]:.4f}, KL {metrics[2]:.4f})")


def train(config: RunConfig, out: Path, resume: bool = False, initial_params=None) -> dict:
    """Train as configured into ``out``; returns the summary written to ``summary.json``.

    ``initial_params`` (for instance ``params_from_torch(state_dict)["params"]``) replaces the fresh
    initialisation of a new run.
    """
    from jaxvae.report import finish_run

    check_flags(config)
    _check_out_dir(out, resume)
    keys = RunKeys.from_seed(config.seed)
    state, done = _starting_state(config, out, resume, initial_params, keys)
    dataset = prepare_data(config)
    check_batch_fits(config, len(dataset.train))
    _log(f"data: {dataset.source}: {len(dataset.train)} train / {len(dataset.test)} test images")
    if resume:
        _log(f"resuming {out} after epoch {done} (step {int(state.step)})")
    trainer = Trainer(config, len(dataset.train))
    out.mkdir(parents=True, exist_ok=True)
    run_files.write_json(out / run_files.CONFIG, config.to_json())
    log = run_files.MetricsLog(out / run_files.METRICS)
    if resume:
        log.truncate_after(int(state.step), done)

    images = jax.device_put(dataset.train.images)
    test_images = jax.device_put(dataset.test.images)
    compile_seconds = trainer.compile(state, images, keys.train) + trainer.compile_evaluate(state.params, test_images, keys.eval)
    _log(f"compiled the training step and the evaluation in {compile_seconds:.1f} s ({trainer.chunk_steps} steps per dispatch, device {jax.devices()[0]})")

    train_seconds, eval_seconds, trained_images = 0.0, 0.0, 0
    for epoch in range(done + 1, config.epochs + 1):
        state, seconds = _train_epoch(trainer, state, images, keys, epoch, log, out)
        train_seconds += seconds
        trained_images += trainer.steps_per_epoch * config.batch_size
        if evaluates_after(config, epoch):
            start = time.perf_counter()
            _test_epoch(trainer, state, test_images, keys, epoch, log)
            eval_seconds += time.perf_counter() - start
        checkpoint.save(out / run_files.CHECKPOINTS, epoch, state, {"epoch": epoch, "step": int(state.step), "latent_dim": config.latent_dim})

    timing = {"compile_seconds": compile_seconds, "train_seconds": train_seconds, "eval_seconds": eval_seconds, "trained_images": trained_images, "traces": dict(trainer.traces)}
    return finish_run(out, config, dataset, trainer, state, keys, timing)

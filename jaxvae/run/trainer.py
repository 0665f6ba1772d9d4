"""A run's pieces, each built once: ``RunSetup`` from the settings alone, ``Trainer`` (its compiled functions).

- ``RunSetup.build(config)``: the backend's choices (``jaxvae.devices.choose_backend``), the device mesh, the
  model and the optimiser; what a run needs before it loads any data (to restore a checkpoint, for one).
- ``Trainer.compile(setup, ...)``: the training chunk, the evaluation and the epoch's gather, compiled ahead of
  time for the run's shapes; complete when it exists.

Keys: one root key from ``--seed``, split into init / data / train / eval keys; epoch e's shuffle is
``permutation(fold_in(data_key, e))`` and step s's noise ``fold_in(train_key, s)``, so a resumed run repeats an
uninterrupted one exactly. The training images live on the devices; each epoch's batches are gathered there
(one process), or gathered by each process on its host for its own devices' rows (several processes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, SingleDeviceSharding

from jaxvae.devices import Backend, choose_backend, make_mesh, put_replicated, put_rows, replicated, sharded, to_host
from jaxvae.model import VAE
from jaxvae.run.config import RunConfig, chunk_length
from jaxvae.train_step import (
    TrainState,
    abstract_state,
    epoch_batches,
    evaluation_rows,
    gradient_split,
    init_state,
    make_evaluate,
    make_optimizer,
    make_train_chunk,
    make_train_step,
    padding_index,
)


@dataclass(frozen=True)
class RunKeys:
    init: jax.Array
    data: jax.Array
    train: jax.Array
    eval: jax.Array

    @classmethod
    def from_seed(cls, seed: int) -> RunKeys:
        return cls(*jax.random.split(jax.random.PRNGKey(seed), 4))

    @classmethod
    def stack(cls, keys: list[RunKeys]) -> RunKeys:
        """The keys of an ensemble's members, each field ``(K, 2)``: member k's as ``keys[k]``'s."""
        return cls(*(jnp.stack([getattr(k, f.name) for k in keys]) for f in fields(cls)))

    def eval_key(self, epoch: int) -> jax.Array:
        """The test split's noise key after ``epoch``: ``fold_in(eval, epoch)`` (for each member, when stacked)."""
        if self.eval.ndim > 1:
            return jax.vmap(lambda key: jax.random.fold_in(key, epoch))(self.eval)
        return jax.random.fold_in(self.eval, epoch)


class PlacedSplit(NamedTuple):
    """Images on the devices, split along the batch and padded to whole evaluation groups; ``count`` are real."""

    images: jax.Array
    count: int


@dataclass(frozen=True)
class RunSetup:
    """What a run computes with, from its settings alone: backend choices, mesh, model and optimiser."""

    config: RunConfig
    backend: Backend
    mesh: Mesh
    model: VAE
    optimizer: Any

    @classmethod
    def build(cls, config: RunConfig) -> RunSetup:
        backend = choose_backend(config.conv_impl, config.micro_batch)
        mesh = make_mesh(config.devices)
        model = VAE(config.latent_dim, conv_impl=backend.conv_impl, compute_dtype=config.compute_dtype)
        return cls(config, backend, mesh, model, make_optimizer(config.lr))

    def fresh_state(self, key, initial_params=None) -> TrainState:
        """A new run's state (``initial_params`` instead of torch's initialisation, if given), on every device."""
        with jax.default_device(jax.local_devices()[0]):
            state = init_state(self.model, self.optimizer, key)
            if initial_params is not None:
                params = jax.tree_util.tree_map(jnp.asarray, initial_params)
                state = TrainState(params, self.optimizer.init(params), state.step)
        return put_replicated(state, self.mesh)

    def state_target(self) -> TrainState:
        """The run's state as shapes and shardings (replicated), for a restore: nothing is computed."""
        return abstract_state(self.model, self.optimizer, replicated(self.mesh))

    batch_axis = 1  # of the epoch's batches (steps, B, 28, 28, 1): the axis split over the devices

    def train_chunk(self, chunk_steps: int) -> Callable:
        """``(state, epoch batches, first step, step_constants) -> (state, metrics (chunk, 3))``."""
        return make_train_chunk(self.train_step(), chunk_steps)

    def step_constants(self, keys: RunKeys):
        """What ``train_chunk`` takes besides the state and the batches: the train key."""
        return keys.train

    def epoch_order(self, num_train: int) -> Callable:
        """``(data key, epoch) -> example indices (steps, B)``."""
        return lambda key, epoch: epoch_batches(key, epoch, num_train, self.config.batch_size)

    def train_step(self) -> Callable:
        cfg, backend = self.config, self.backend
        return make_train_step(
            self.model,
            self.optimizer,
            cfg.reconstruction_weight,
            backend.micro_batch,
            backend.concurrent,
            self.mesh,
            cfg.likelihood,
            cfg.binarize,
        )

    def evaluation(self, at_mean: bool = False) -> Callable:
        """``make_evaluate`` with this run's loss, batches and mesh: ``(params, images, key, count) -> (3,)``."""
        cfg, backend = self.config, self.backend
        return make_evaluate(
            self.model,
            cfg.reconstruction_weight,
            backend.eval_batch,
            backend.concurrent,
            self.mesh,
            cfg.likelihood,
            at_mean,
        )

    def place_test(self, images: np.ndarray) -> PlacedSplit:
        """Test images padded to whole evaluation groups (``padding_index``) and split over the devices."""
        rows = evaluation_rows(len(images), self.backend.eval_batch, self.backend.concurrent, self.mesh.size)
        return PlacedSplit(put_rows(images, padding_index(len(images), rows), self.mesh, axis=0), len(images))

    def place_train(self, images: np.ndarray):
        """The training images where the epochs are gathered: on every device (one process), or on the host."""
        return images if jax.process_count() > 1 else put_replicated(images, self.mesh)

    def describe_backend(self) -> dict:
        """The backend's choices as they run, for ``summary.json``: the gradient's split is each device's (its
        micro-batch, the whole of its rows when the micro-batch does not divide them; how many side by side)."""
        rows = self.config.batch_size // self.mesh.size
        micro, width = gradient_split(rows, self.backend.micro_batch, self.backend.concurrent)
        return {
            "platform": self.backend.platform,
            "conv_impl": self.backend.conv_impl,
            "compute_dtype": self.config.compute_dtype,
            "micro_batch": micro,
            "concurrent_micro_batches": width,
            "eval_batch": self.backend.eval_batch,
        }


def _counted(traces: dict, name: str, fn: Callable) -> Callable:
    def traced(*args):
        traces[name] += 1  # runs only while JAX traces the function
        return fn(*args)

    return traced


def _epoch_batches(order: Callable, gather: Callable | None, mesh: Mesh, axis: int, train_images, data_key, epoch):
    """Epoch ``epoch``'s batches ``(steps, B, 28, 28, 1)`` (``(K, steps, B, ...)`` for K members), gathered on the
    devices (``gather``) or on the host, ``axis`` split over the devices."""
    rows = order(data_key, epoch)
    if gather is not None:
        return gather(train_images, rows)
    return put_rows(train_images, np.asarray(rows), mesh, axis=axis)


@dataclass(frozen=True)
class Trainer:
    """The compiled functions of one run; ``traces`` counts how often each was traced (once is right)."""

    setup: RunSetup
    steps_per_epoch: int
    chunk_steps: int
    train_chunk: Callable  # (state, epoch batches, first step, step constants) -> (state, metrics)
    evaluate: Callable  # (params, placed test images, key) -> metrics (3,)
    epoch_order: Callable  # (data key, epoch) -> example indices (steps, B)
    gather: Callable | None  # (placed train images, order) -> epoch batches on the devices; None: on the host
    compile_seconds: float
    traces: dict

    @classmethod
    def compile(
        cls, setup: RunSetup, num_train: int, state: TrainState, train_images, test: PlacedSplit, keys: RunKeys
    ) -> Trainer:
        """Compile the chunk, the evaluation and the gather for these shapes; ``compile_seconds`` is what it took."""
        cfg, mesh = setup.config, setup.mesh
        steps = num_train // cfg.batch_size
        chunk_steps = chunk_length(steps, cfg.batch_size, cfg.chunk_steps)
        traces = {"train_chunk": 0, "evaluate": 0}
        on_host = isinstance(train_images, np.ndarray)  # several processes: each gathers its own rows
        order_sharding = SingleDeviceSharding(jax.local_devices()[0]) if on_host else replicated(mesh)
        order = jax.jit(setup.epoch_order(num_train), out_shardings=order_sharding)
        batches = sharded(mesh, axis=setup.batch_axis)
        gather = None if on_host else jax.jit(lambda images, rows: images[rows], out_shardings=batches)
        start = time.perf_counter()
        chunk = jax.jit(_counted(traces, "train_chunk", setup.train_chunk(chunk_steps)), donate_argnums=0)
        epoch = _epoch_batches(order, gather, mesh, setup.batch_axis, train_images, keys.data, 1)
        compiled_chunk = chunk.lower(state, epoch, 0, setup.step_constants(keys)).compile()
        evaluate = jax.jit(_counted(traces, "evaluate", setup.evaluation()), static_argnums=3)
        compiled_evaluate = evaluate.lower(state.params, test.images, keys.eval, test.count).compile()
        seconds = time.perf_counter() - start
        return cls(setup, steps, chunk_steps, compiled_chunk, compiled_evaluate, order, gather, seconds, traces)

    def epoch_data(self, train_images, data_key, epoch: int) -> jax.Array:
        """The epoch's batches ``(steps, B, 28, 28, 1)``, each device holding its rows of every batch."""
        setup = self.setup
        return _epoch_batches(
            self.epoch_order, self.gather, setup.mesh, setup.batch_axis, train_images, data_key, epoch
        )

    def run_chunk(self, state: TrainState, epoch, first: int, keys: RunKeys):
        return self.train_chunk(state, epoch, jnp.int32(first), self.setup.step_constants(keys))

    def evaluate_split(self, params, test: PlacedSplit, key) -> np.ndarray:
        """Metrics (3,) of the placed test split: loss, reconstruction, KL."""
        return to_host(self.evaluate(params, test.images, key))

"""The one training engine: a run of K >= 1 members over a leading member axis; a single run is the case K = 1.

``RunSetup.build(members)`` holds, from the settings alone, what the members share (the backend's choices, the
mesh, the model) and what each has of its own (seed, learning rate, reconstruction weight), their keys and their
fresh or restored states: what a run needs before it loads any data. ``Trainer.compile`` compiles the epoch's
shuffle, a chunk's gather, the training chunk and the evaluation ahead of time for the run's shapes.

Each member function is the single run's, mapped over the members by ``jaxvae.devices.over_members``. Member k's
root key is ``PRNGKey(its seed)``, split into init / data / train / eval keys; epoch e's shuffle is
``permutation(fold_in(data_key, e))``, step s's noise ``fold_in(train_key, s)``, the test split's noise after epoch
e ``fold_in(eval_key, e)``: a resumed run repeats an uninterrupted one exactly, and each member is the run its own
flags make. States are computed into their shardings and stay on the devices; so do the training images, from
which each chunk's batches are gathered there (one process) or by each process for its own devices' rows.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxvae.devices import (
    Backend,
    choose_backend,
    first_local_device,
    make_mesh,
    over_members,
    put_replicated,
    put_rows,
    replicated,
    sharded,
)
from jaxvae.iwae import IW_CHUNK, log_px_function
from jaxvae.model import VAE
from jaxvae.run.config import chunk_length
from jaxvae.run.members import Member
from jaxvae.train_step import (
    TrainState,
    abstract_state,
    epoch_batches,
    evaluation_rows,
    fresh_state,
    gradient_split,
    make_evaluate,
    make_member_step,
    make_optimizer,
    make_train_chunk,
    padding_index,
)


class RunKeys(NamedTuple):
    """Each member's keys, ``(K, 2)`` each, on every device."""

    init: jax.Array
    data: jax.Array
    train: jax.Array
    eval: jax.Array


class PlacedSplit(NamedTuple):
    """Images on the devices, split along the batch and padded to whole evaluation groups; ``count`` are real."""

    images: jax.Array
    count: int


@jax.jit
def stack_members(*trees):
    """The members' trees (states, parameters), each on the devices, stacked along a new member axis there."""
    return jax.tree_util.tree_map(lambda *leaves: jnp.stack(leaves), *trees)


@jax.jit
def member_state(tree, k: jax.Array):
    """Member ``k``'s part of a tree with a member axis (a state, parameters), sliced on the devices; ``k`` is an
    argument, so one program serves every member."""
    return jax.tree_util.tree_map(lambda a: a[k], tree)


@dataclass(frozen=True)
class RunSetup:
    """What a run of ``members`` computes with, from their settings alone. The members share every setting but
    their seed, learning rate and reconstruction weight; ``config`` is member 0's."""

    members: tuple[Member, ...]
    backend: Backend
    mesh: Mesh
    model: VAE

    @classmethod
    def build(cls, members: list[Member], member_group: int = 0) -> RunSetup:
        """``member_group``: members vmapped together (0: the backend's choice, ``choose_backend``)."""
        config = members[0].config
        backend = choose_backend(config.conv_impl, config.micro_batch, member_group)
        model = VAE(config.latent_dim, conv_impl=backend.conv_impl, compute_dtype=config.compute_dtype)
        return cls(tuple(members), backend, make_mesh(config.devices), model)

    @property
    def config(self):
        return self.members[0].config

    @property
    def optimizer(self):
        """Member 0's Adam: its state's structure is every member's (Adam's state does not depend on lr)."""
        return make_optimizer(self.config.lr)

    def per_member(self, name: str, dtype=np.float32) -> np.ndarray:
        """Each member's value of the setting ``name``, ``(K,)``."""
        return np.array([getattr(m.config, name) for m in self.members], dtype)

    def map(self, fn: Callable, in_axes: tuple) -> Callable:
        return over_members(fn, self.backend.member_group, in_axes)

    def keys(self) -> RunKeys:
        split = [np.asarray(jax.random.split(jax.random.PRNGKey(m.config.seed), 4)) for m in self.members]
        return RunKeys(*put_replicated(list(np.stack(split, axis=1)), self.mesh))  # 4 x (K, 2)

    def fresh_state(self, keys: RunKeys, initial_params=None) -> TrainState:
        """Each member's new state (``initial_params`` instead of torch's initialisation, if given), computed on the
        devices into their sharding."""
        model, optimizer = self.model, self.optimizer

        def fresh(key, params):
            if params is None:
                return fresh_state(model, optimizer, key)
            return TrainState(params, optimizer.init(params), jnp.zeros((), jnp.int32))

        init = jax.jit(jax.vmap(fresh, in_axes=(0, None)), out_shardings=replicated(self.mesh))
        return init(keys.init, initial_params)

    def state_target(self) -> TrainState:
        """One member's state as shapes and shardings (replicated), for a restore: nothing is computed."""
        return abstract_state(self.model, self.optimizer, replicated(self.mesh))

    def constants(self) -> tuple[jax.Array, jax.Array]:
        """Each member's learning rate and reconstruction weight, ``(K,)`` float32 on every device: arguments of the
        compiled functions, so one program serves every value."""
        return put_replicated((self.per_member("lr"), self.per_member("reconstruction_weight")), self.mesh)

    def train_chunk(self, chunk_steps: int) -> Callable:
        """``(state, batches (K, chunk, B, 28, 28, 1), train keys, (lrs, weights)) -> (state, metrics (K, chunk,
        3))``: each member's ``make_member_step`` over its batches, ``lax.scan``-ned."""
        cfg, backend = self.config, self.backend
        step_settings = (cfg.likelihood, cfg.binarize, cfg.objective, cfg.iw_train_samples)
        step = make_member_step(self.model, backend.micro_batch, backend.concurrent, self.mesh, *step_settings)
        chunk = make_train_chunk(step, chunk_steps)
        mapped = self.map(lambda state, batches, own: chunk(state, batches, 0, own), (0, 0, 0))
        return lambda state, batches, keys, constants: mapped(state, batches, (keys, *constants))

    def epoch_order(self, num_train: int) -> Callable:
        """``(data keys (K, 2), epoch) -> example indices (K, steps, B)``: each member's own shuffle."""
        order = lambda key, epoch: epoch_batches(key, epoch, num_train, self.config.batch_size)  # noqa: E731
        return over_members(order, 0, (0, None))

    def evaluation(self, at_mean: bool = False) -> Callable:
        """``(params (K, ...), images, eval keys (K, 2), (lrs, weights), epoch, count) -> metrics (K, 3)``:
        ``make_evaluate`` of each member with its own weight and the noise of ``fold_in(its eval key, epoch)``, on
        the same images."""
        cfg, backend = self.config, self.backend
        batching = (backend.eval_batch, backend.concurrent, self.mesh)
        evaluation_settings = (cfg.likelihood, at_mean, cfg.objective, cfg.iw_train_samples)

        def evaluate(params, images, keys, constants, epoch, count=None):
            def member(params, key, weight):
                fn = make_evaluate(self.model, weight, *batching, *evaluation_settings)
                return fn(params, images, jax.random.fold_in(key, epoch), count)

            return self.map(member, (0, 0, 0))(params, keys, constants[1])

        return evaluate

    def log_px(self, samples: int) -> Callable:
        """``(params (K, ...), images (B, ...), key) -> (K, B)``: the IWAE estimate of each member (its own weight),
        every member with the same draws."""
        mapped = self.map(log_px_function(self.model, self.config.likelihood, samples, IW_CHUNK), (0, None, None, 0))
        weights = self.per_member("reconstruction_weight", np.float64)
        return jax.jit(lambda params, images, key: mapped(params, images, key, weights))

    def place_test(self, images: np.ndarray) -> PlacedSplit:
        """Test images padded to whole evaluation groups (``padding_index``) and split over the devices."""
        rows = evaluation_rows(len(images), self.backend.eval_batch, self.backend.concurrent, self.mesh.size)
        return PlacedSplit(put_rows(images, padding_index(len(images), rows), self.mesh, axis=0), len(images))

    def place_train(self, images: np.ndarray):
        """The training images where the epochs are gathered: on every device (one process), or on the host."""
        return images if jax.process_count() > 1 else put_replicated(images, self.mesh)

    def int32(self, value: int) -> jax.Array:
        """``value`` (an epoch, a member) as an int32 on every device: an explicit copy (the epoch loop makes no
        implicit one)."""
        return put_replicated(np.int32(value), self.mesh)

    def unstack(self, tree) -> list:
        """Each member's part of ``tree`` (a state, parameters), sliced on the devices."""
        return [member_state(tree, self.int32(k)) for k in range(len(self.members))]

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
            "member_group": min(self.backend.member_group or len(self.members), len(self.members)),
        }


def _counted(traces: dict, name: str, fn: Callable) -> Callable:
    def traced(*args):
        traces[name] += 1  # runs only while JAX traces the function
        return fn(*args)

    return traced


@dataclass(frozen=True)
class Trainer:
    """The compiled functions of one run; ``traces`` counts how often each was traced (once is right)."""

    setup: RunSetup
    steps_per_epoch: int
    chunk_steps: int
    constants: tuple  # each member's (learning rate, reconstruction weight), on every device
    epoch_order: Callable  # (data keys, epoch) -> example indices (K, steps, B)
    gather: Callable | None  # (train images, order, step) -> the next chunk's batches; None: gathered on the host
    chunk: Callable  # (state, batches, train keys, constants) -> (state, metrics (K, chunk, 3))
    evaluate: Callable  # (params, test images, eval keys, constants, epoch) -> metrics (K, 3)
    compile_seconds: float
    traces: dict

    @classmethod
    def compile(cls, setup: RunSetup, num_train: int, state, train_images, test: PlacedSplit, keys: RunKeys):
        """Compile the chunk, the evaluation and the gathers for these shapes; ``compile_seconds`` is what it took.
        The chunk's program depends on the chunk's shapes, not the data set's size."""
        cfg, mesh = setup.config, setup.mesh
        steps = num_train // cfg.batch_size
        chunk_steps = chunk_length(steps, cfg.batch_size, cfg.chunk_steps)
        traces = {"train_chunk": 0, "evaluate": 0}
        on_host = isinstance(train_images, np.ndarray)  # several processes: each gathers its own rows
        order_sharding = first_local_device() if on_host else replicated(mesh)
        start = time.perf_counter()
        order = jax.jit(setup.epoch_order(num_train), out_shardings=order_sharding)

        def next_rows(images, order, step):  # the chunk after ``step`` (every member's step is the same)
            rows = jax.lax.dynamic_slice_in_dim(order, step[0] % steps, chunk_steps, axis=1)  # (K, chunk, B)
            return images[rows]

        gather = None if on_host else jax.jit(next_rows, out_shardings=sharded(mesh, axis=2))  # B over the devices
        trainer = cls(setup, steps, chunk_steps, setup.constants(), order, gather, None, None, 0.0, traces)
        batches = trainer.batches(train_images, trainer.order(keys.data, 1), state.step, 0)
        chunk = jax.jit(_counted(traces, "train_chunk", setup.train_chunk(chunk_steps)), donate_argnums=0)
        compiled_chunk = chunk.lower(state, batches, keys.train, trainer.constants).compile()
        evaluate = jax.jit(_counted(traces, "evaluate", setup.evaluation()), static_argnums=5)
        args = (state.params, test.images, keys.eval, trainer.constants, setup.int32(1), test.count)
        compiled_evaluate = evaluate.lower(*args).compile()
        seconds = time.perf_counter() - start
        return dataclasses.replace(trainer, chunk=compiled_chunk, evaluate=compiled_evaluate, compile_seconds=seconds)

    def order(self, data_keys, epoch: int):
        """Each member's shuffle of epoch ``epoch``, ``(K, steps, B)`` example indices: on the devices, or on the
        host where each process gathers its own rows."""
        if self.gather is None:  # from this process's copy of the keys, on its first device
            return jax.device_get(self.epoch_order(data_keys.addressable_data(0), np.int32(epoch)))
        return self.epoch_order(data_keys, self.setup.int32(epoch))

    def batches(self, train_images, order, step, first: int) -> jax.Array:
        """The batches of the chunk starting at step ``first`` of the epoch, ``(K, chunk, B, 28, 28, 1)``, each device
        holding its rows: gathered on the devices (``step`` is the state's, on the devices) or on the host."""
        if self.gather is not None:
            return self.gather(train_images, order, step)
        return put_rows(train_images, order[:, first : first + self.chunk_steps], self.setup.mesh, axis=2)

    def train_chunk(self, state, batches, keys: RunKeys):
        return self.chunk(state, batches, keys.train, self.constants)

    def evaluate_split(self, params, test: PlacedSplit, keys: RunKeys, epoch: int) -> jax.Array:
        """Each member's test metrics after ``epoch``, ``(K, 3)``."""
        return self.evaluate(params, test.images, keys.eval, self.constants, self.setup.int32(epoch))

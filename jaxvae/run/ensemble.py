"""An ensemble's pieces: ``EnsembleSetup``, the counterpart of ``RunSetup`` for K members trained side by side.

Every member shares the model, the data, the batch size, the mesh and the backend; each has its own seed (so
its own initialisation, shuffle, noise and evaluation noise, derived exactly as its single run derives them),
learning rate and reconstruction weight. The training chunk and the evaluation are the single run's, under
``jax.vmap`` over the members: states, keys and epoch orders carry a leading member axis ``K``, the epoch's
batches are ``(K, steps, B, 28, 28, 1)`` with ``B`` split over the devices (``batch_axis = 2``), and the
learning rates and weights are float32 arrays ``(K,)`` (``make_member_step``). How many members are vmapped
together is the backend's choice (``jaxvae.devices.over_members``; on CPU one at a time, elsewhere all).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jaxvae.devices import choose_backend, over_members, put_replicated, replicated, to_host
from jaxvae.run.config import RunConfig
from jaxvae.run.members import Member
from jaxvae.run.trainer import PlacedSplit, RunKeys, RunSetup
from jaxvae.train_step import TrainState, make_evaluate, make_member_step, make_optimizer, make_train_chunk


def stack_trees(trees: list):
    """Host copies of ``trees`` stacked along a new leading member axis (numpy)."""
    return jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *[to_host(t) for t in trees])


def member_slice(stacked_host, k: int):
    """Member ``k``'s part of a stacked host tree."""
    return jax.tree_util.tree_map(lambda a: a[k], stacked_host)


@dataclass(frozen=True)
class EnsembleSetup:
    """The members' ``RunSetup``s (one model, mesh and backend between them) and their functions, vmapped."""

    members: tuple[Member, ...]
    setups: tuple[RunSetup, ...]

    batch_axis = 2  # of the epoch's batches (K, steps, B, 28, 28, 1)

    @classmethod
    def build(cls, members: list[Member], member_group: int = 0) -> EnsembleSetup:
        """``member_group``: members vmapped together (0: the backend's choice, ``choose_backend``)."""
        first = RunSetup.build(members[0].config)
        cfg = first.config
        backend = choose_backend(cfg.conv_impl, cfg.micro_batch, member_group=member_group)
        first = dataclasses.replace(first, backend=backend)
        setups = [first] + [
            dataclasses.replace(first, config=m.config, optimizer=make_optimizer(m.config.lr)) for m in members[1:]
        ]
        return cls(tuple(members), tuple(setups))

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def config(self) -> RunConfig:
        """The settings the members share (the per-member ones are member 0's)."""
        return self.setups[0].config

    @property
    def mesh(self):
        return self.setups[0].mesh

    @property
    def model(self):
        return self.setups[0].model

    @property
    def backend(self):
        return self.setups[0].backend

    def member_keys(self) -> RunKeys:
        return RunKeys.stack([RunKeys.from_seed(m.config.seed) for m in self.members])

    def _per_member(self, name: str) -> jax.Array:
        return jnp.asarray([getattr(m.config, name) for m in self.members], jnp.float32)

    def fresh_state(self, keys: RunKeys) -> TrainState:
        """Each member's fresh state (``RunSetup.fresh_state`` with its own init key), stacked, on every device. One
        setup initialises all (Adam's initial state does not depend on lr), so the initialisation compiles once."""
        states = [self.setups[0].fresh_state(keys.init[k]) for k in range(self.size)]
        return self.place_states(states)

    def place_states(self, states: list[TrainState]) -> TrainState:
        return put_replicated(stack_trees(states), self.mesh)

    def member_states(self, state: TrainState) -> list[TrainState]:
        """The stacked state as one state per member, each on every device (what a member's checkpoint holds)."""
        host = to_host(state)
        return [put_replicated(member_slice(host, k), self.mesh) for k in range(self.size)]

    def state_target(self) -> TrainState:
        """The stacked state as shapes and shardings (replicated): nothing is computed."""
        one = self.setups[0].state_target()
        sharding = replicated(self.mesh)
        grow = lambda a: jax.ShapeDtypeStruct((self.size, *a.shape), a.dtype, sharding=sharding)  # noqa: E731
        return jax.tree_util.tree_map(grow, one)

    def train_chunk(self, chunk_steps: int) -> Callable:
        """``(state, epoch batches, first step, (train keys, lrs, weights)) -> (state, metrics (K, chunk, 3))``."""
        cfg, backend = self.config, self.backend
        step = make_member_step(
            self.model, backend.micro_batch, backend.concurrent, self.mesh, cfg.likelihood, cfg.binarize
        )
        return over_members(make_train_chunk(step, chunk_steps), backend.member_group, (0, 0, None, 0))

    def step_constants(self, keys: RunKeys):
        return keys.train, self._per_member("lr"), self._per_member("reconstruction_weight")

    def epoch_order(self, num_train: int) -> Callable:
        """``(data keys (K, 2), epoch) -> example indices (K, steps, B)``: each member's own shuffle."""
        return over_members(self.setups[0].epoch_order(num_train), 0, (0, None))

    def evaluation(self, at_mean: bool = False) -> Callable:
        """``(params (K, ...), images, keys (K, 2), count) -> metrics (K, 3)``: ``RunSetup.evaluation`` of every
        member, each with its own weight and noise, on the same images."""
        cfg, backend, weights = self.config, self.backend, self._per_member("reconstruction_weight")

        def evaluate(params, images, keys, count=None):
            def member(params, key, weight):
                fn = make_evaluate(
                    self.model, weight, backend.eval_batch, backend.concurrent, self.mesh, cfg.likelihood, at_mean
                )
                return fn(params, images, key, count)

            return over_members(member, backend.member_group, (0, 0, 0))(params, keys, weights)

        return evaluate

    def place_test(self, images: np.ndarray) -> PlacedSplit:
        return self.setups[0].place_test(images)

    def place_train(self, images: np.ndarray):
        return self.setups[0].place_train(images)

    def describe_backend(self) -> dict:
        return {**self.setups[0].describe_backend(), "member_group": self.backend.member_group or self.size}

"""The devices a run computes on: the choices that depend on the backend, data parallelism over a mesh, and how an
ensemble's members share the devices.

**Backend choices** are made here and nowhere else (``choose_backend``) and recorded in ``summary.json``: the
convolution form (``"auto"``: ``matmul`` on CPU, ``xla`` elsewhere), the gradient's micro-batch (16 on CPU, whole
batches elsewhere), micro-batches side by side (2 on CPU), the evaluation's batch (16 on CPU, 500 elsewhere) and the
ensemble members vmapped together (one at a time on CPU, all elsewhere); measured on 2-core x86 CPUs
(docs/benchmarks.md), not tuned on accelerators. **Data parallelism**: one mesh axis, ``"data"``; every batch is split
over the devices, parameters and optimiser state replicated. Over several processes (``jaxvae.run.distributed``) the
mesh spans every process's devices and each process puts on its devices only their rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvae.errors import UserError
from jaxvae.layers import CONV_IMPLS

AXIS = "data"
VIRTUAL_CPU_HINT = "on a CPU, start with XLA_FLAGS=--xla_force_host_platform_device_count=N for N virtual devices"
CPU_MICRO_BATCH = 16  # best measured on 2-core x86 CPUs, taken two at a time (docs/benchmarks.md)
CPU_CONCURRENT_MICRO_BATCHES = 2  # XLA:CPU overlaps one micro-batch's copies with the other's matmuls
ACCELERATOR_EVAL_BATCH = 500
# An ensemble's members one after another inside its jitted step: vmapped side by side, K members' working set
# overflows a CPU's caches, and measured 0.72-0.85x a single run's images per second (docs/benchmarks.md)
CPU_MEMBER_GROUP = 1


def resolve_conv_impl(conv_impl: str, platform: str | None = None) -> str:
    """``"auto"`` -> ``"matmul"`` on CPU, ``"xla"`` elsewhere; an explicit implementation as given."""
    if conv_impl == "auto":
        return "matmul" if (platform or jax.default_backend()) == "cpu" else "xla"
    if conv_impl not in CONV_IMPLS:
        raise ValueError(f"conv_impl must be 'auto' or one of {CONV_IMPLS}, got {conv_impl!r}")
    return conv_impl


@dataclass(frozen=True)
class Backend:
    """What a run does differently on this backend: ``conv_impl`` (never ``"auto"``), ``micro_batch`` (0: whole
    batches), ``concurrent`` micro-batches side by side, ``eval_batch`` images per evaluation batch, and
    ``member_group``, an ensemble's members vmapped together (0: all of them; see ``over_members``)."""

    platform: str
    conv_impl: str
    micro_batch: int
    concurrent: int
    eval_batch: int
    member_group: int


def choose_backend(
    conv_impl: str = "auto", micro_batch: int = 0, member_group: int = 0, platform: str | None = None
) -> Backend:
    """The backend choices for the default backend (or ``platform``), with the user's explicit ones kept."""
    if member_group < 0:
        raise UserError(f"--member-group must be >= 0 (0: the backend's choice), got {member_group}")
    platform = platform or jax.default_backend()
    cpu = platform == "cpu"
    return Backend(
        platform,
        resolve_conv_impl(conv_impl, platform),
        micro_batch or (CPU_MICRO_BATCH if cpu else 0),
        CPU_CONCURRENT_MICRO_BATCHES if cpu else 1,
        CPU_MICRO_BATCH if cpu else ACCELERATOR_EVAL_BATCH,
        member_group or (CPU_MEMBER_GROUP if cpu else 0),
    )


def over_members(fn: Callable, group: int, in_axes: tuple) -> Callable:
    """``fn`` for every member of an ensemble: the arguments ``in_axes`` marks 0 carry a leading member axis, those
    it marks None are shared; so do the results. A lone member runs ``fn`` unbatched, the very operations of a
    single run; more are vmapped in groups of ``group``, the groups one after another in the same program
    (``lax.map``), or all at once (``jax.vmap``) when ``group`` is 0 or covers them. The members' results are the
    same functions of their own arguments either way, up to the order of float32 sums in vmapped groups."""

    def mapped(*args):
        per_member = [a for a, axis in zip(args, in_axes) if axis == 0]
        count = jax.tree_util.tree_leaves(per_member)[0].shape[0]
        if count > 1 and (group == 0 or group >= count):
            return jax.vmap(fn, in_axes=in_axes)(*args)

        def one(member_args):
            given = iter(member_args)
            return fn(*[next(given) if axis == 0 else a for a, axis in zip(args, in_axes)])

        if count == 1:
            first = jax.tree_util.tree_map(lambda a: a[0], per_member)
            return jax.tree_util.tree_map(lambda a: a[None], one(first))
        return jax.lax.map(one, per_member, batch_size=None if group == 1 else group)

    return mapped


def make_mesh(devices: int = 0) -> Mesh:
    """A 1-D mesh over the first ``devices`` visible devices (0: all of them, every process's)."""
    visible = jax.devices()
    if devices > len(visible):
        raise UserError(
            f"--devices {devices}: only {len(visible)} {visible[0].platform} device(s) visible; {VIRTUAL_CPU_HINT}"
        )
    if jax.process_count() > 1 and devices not in (0, len(visible)):
        raise UserError(
            f"--devices {devices}: a run over {jax.process_count()} processes uses all {len(visible)} devices; "
            "drop --devices"
        )
    return Mesh(np.array(visible[: devices or len(visible)]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def first_local_device() -> NamedSharding:
    """This process's first device alone, for what one process computes or restores by itself."""
    return replicated(Mesh(np.array(jax.local_devices()[:1]), (AXIS,)))


def sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Axis ``axis`` split over the mesh's devices, the others whole."""
    return NamedSharding(mesh, P(*([None] * axis), AXIS))


def put_replicated(tree, mesh: Mesh):
    """Host data (numpy, Python numbers) copied to every device of the mesh; each process supplies its own,
    identical copy. Arrays already on the devices are computed into their shardings instead (``jax.jit``)."""
    return jax.device_put(jax.tree_util.tree_map(np.asarray, tree), replicated(mesh))


def put_rows(images: np.ndarray, rows: np.ndarray, mesh: Mesh, axis: int) -> jax.Array:
    """``images[rows]`` with ``rows``' axis ``axis`` split over the mesh: ``rows.shape + images.shape[1:]``.

    Each process gathers, on its host, only the rows of its own devices and hands each device its part.
    """
    shape = rows.shape + images.shape[1:]
    return jax.make_array_from_callback(shape, sharded(mesh, axis), lambda index: images[rows[index[: rows.ndim]]])


def to_host(tree):
    """Replicated (or single-device) arrays as numpy, copied explicitly (``jax.device_get``) from this process's
    own copy."""

    def fetch(a):
        return jax.device_get(a.addressable_data(0)) if isinstance(a, jax.Array) else np.asarray(a)

    return jax.tree_util.tree_map(fetch, tree)


def data_parallel(fn: Callable, mesh: Mesh, reduce: Callable = jax.lax.pmean) -> Callable:
    """``fn(params, *batched)`` over the mesh: each device takes its rows of every batched argument (split along
    axis 0), and the devices' results are combined with ``reduce`` (the mean, for means of equal-sized parts)."""

    def local(params, *batched):
        return reduce(fn(params, *batched), AXIS)

    def parallel(params, *batched):
        specs = (P(),) + (P(AXIS),) * len(batched)
        # check_vma off: fn's scans start from invariant zeros and sum varying rows; ``reduce`` replicates the result
        return jax.shard_map(local, mesh=mesh, in_specs=specs, out_specs=P(), check_vma=False)(params, *batched)

    return parallel


def describe(mesh: Mesh) -> dict:
    """The devices of a run, for ``summary.json``."""
    first = mesh.devices.flat[0]
    return {
        "count": int(mesh.size),
        "platform": first.platform,
        "kind": getattr(first, "device_kind", first.platform),
        "mesh_shape": {name: int(size) for name, size in mesh.shape.items()},
        "processes": jax.process_count(),
    }

"""Data parallelism over a device mesh: the mesh, its shardings, and each process's rows on its own devices.

One mesh axis, ``"data"``: every batch is split over the devices, parameters and optimiser state are
replicated. In a multi-process run (``jaxvae.distributed``) the mesh spans all processes' devices; each process
puts on its devices only the rows those devices train on, and reads replicated results from its own copy.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxvae.errors import UserError

AXIS = "data"
VIRTUAL_CPU_HINT = "on a CPU, start with XLA_FLAGS=--xla_force_host_platform_device_count=N for N virtual devices"


def make_mesh(devices: int = 0) -> Mesh:
    """A 1-D mesh over the first ``devices`` visible devices (0: all of them, every process's)."""
    visible = jax.devices()
    if devices < 0:
        raise UserError(f"--devices must be >= 0 (0: all {len(visible)} visible), got {devices}")
    if devices > len(visible):
        raise UserError(f"--devices {devices}: only {len(visible)} {visible[0].platform} device(s) visible; {VIRTUAL_CPU_HINT}")
    if jax.process_count() > 1 and devices not in (0, len(visible)):
        raise UserError(f"--devices {devices}: a run over {jax.process_count()} processes uses all {len(visible)} devices; drop --devices")
    return Mesh(np.array(visible[: devices or len(visible)]), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def sharded(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Axis ``axis`` split over the mesh's devices, the others whole."""
    return NamedSharding(mesh, P(*([None] * axis), AXIS))


def put_replicated(tree, mesh: Mesh):
    """A copy of ``tree`` on every device of the mesh (each process supplies its own, identical copy)."""
    return jax.device_put(jax.tree_util.tree_map(np.asarray, tree), replicated(mesh))


def put_rows(images: np.ndarray, rows: np.ndarray, mesh: Mesh, axis: int) -> jax.Array:
    """``images[rows]`` with ``rows``' axis ``axis`` split over the mesh: ``rows.shape + images.shape[1:]``.

    Each process gathers, on its host, only the rows of its own devices and hands each device its part.
    """
    shape = rows.shape + images.shape[1:]
    return jax.make_array_from_callback(shape, sharded(mesh, axis), lambda index: images[rows[index[: rows.ndim]]])


def to_host(tree):
    """Replicated (or single-device) arrays as numpy, read from this process's own copy."""
    def fetch(a):
        return np.asarray(a.addressable_data(0)) if isinstance(a, jax.Array) else np.asarray(a)

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
    return {"count": int(mesh.size), "platform": first.platform, "kind": getattr(first, "device_kind", first.platform),
            "mesh_shape": {name: int(size) for name, size in mesh.shape.items()}, "processes": jax.process_count()}

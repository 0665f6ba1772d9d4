"""One run over several processes through JAX's own runtime (``jax.distributed``; gloo collectives on CPU).

Every process is started, by hand or by a launcher such as SLURM, with the same flags and its own
``--process-id``; process 0 hosts the coordinator at ``--coordinator HOST:PORT``. JAX's client aborts the whole
process (a C++ check failure) when it cannot reach the coordinator, so before it connects, the other processes
wait for the coordinator's port to accept connections for at most ``timeout`` seconds and otherwise stop with
one line. Heartbeats make a process that lost a peer stop within ``HEARTBEAT_SECONDS``.
"""

from __future__ import annotations

import hashlib
import math
import socket
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxvae.errors import UserError

HEARTBEAT_SECONDS = 30


def parse_address(coordinator: str) -> tuple[str, int]:
    host, _, port = coordinator.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--coordinator must be HOST:PORT (for instance 127.0.0.1:12355), got {coordinator!r}")
    return host.strip("[]"), int(port)


def check_flags(coordinator: str | None, num_processes: int | None, process_id: int | None, timeout: float) -> bool:
    """Whether this is a multi-process run; a ``UserError`` for an incomplete or inconsistent set of flags."""
    if not 0 < timeout < math.inf:
        raise UserError(f"--coordinator-timeout must be a finite positive number of seconds, got {timeout:g}")
    given = [v is not None for v in (coordinator, num_processes, process_id)]
    if not any(given):
        return False
    if not all(given):
        raise UserError(
            "--coordinator, --num-processes and --process-id go together; give all three (or none for one process)"
        )
    parse_address(coordinator)
    if num_processes < 1:
        raise UserError(f"--num-processes must be at least 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise UserError(f"--process-id must be in 0..{num_processes - 1}, got {process_id}")
    return True


def _wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"cannot reach the coordinator at {host}:{port} within {timeout:g} s ({exc.strerror or exc}); "
                    "start process 0 there first, or check --coordinator"
                ) from None
            time.sleep(0.5)


def _check_bindable(host: str, port: int) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise UserError(
            f"process 0 cannot host the coordinator at {host}:{port} ({exc.strerror or exc}); "
            "choose a free port on this machine"
        ) from None


def initialize(coordinator: str, num_processes: int, process_id: int, timeout: float = 60.0) -> None:
    """Join the run: check the coordinator's address, then ``jax.distributed.initialize`` (before any JAX work)."""
    host, port = parse_address(coordinator)
    if process_id == 0:
        _check_bindable(host, port)
    else:
        _wait_for_port(host, port, timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    jax.distributed.initialize(
        coordinator,
        num_processes,
        process_id,
        initialization_timeout=max(1, int(timeout)),
        heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
    )


def is_primary() -> bool:
    """Process 0 writes the run's files and prints its progress."""
    return jax.process_index() == 0


def check_same_everywhere(settings: str) -> None:
    """Refuse, in every process, a run whose processes were given other settings than process 0's (they would wait
    for each other forever at the first step where they part)."""
    if jax.process_count() == 1:
        return
    digest = np.frombuffer(hashlib.sha256(settings.encode()).digest(), np.uint8)  # (32,)
    every = multihost_utils.process_allgather(digest)  # (processes, 32)
    others = [p for p in range(len(every)) if not np.array_equal(every[p], every[0])]
    if others:
        raise UserError(
            f"process(es) {', '.join(map(str, others))} were given other flags than process 0; give every process the "
            "same flags but --process-id"
        )


def barrier(name: str) -> None:
    """Wait until every process reaches this point (nothing to wait for in a one-process run)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)

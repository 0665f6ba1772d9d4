"""One run over several processes through JAX's own runtime (``jax.distributed``; gloo collectives on CPU).

Every process is started, by hand or by a launcher such as SLURM, with the same flags and its own
``--process-id``; process 0 hosts the coordinator at ``--coordinator HOST:PORT``. JAX's client aborts the whole
process (a C++ check failure) when it cannot reach the coordinator, so before it connects, the other processes
wait for the coordinator's port to accept connections for at most ``timeout`` seconds and otherwise stop with
one line. A lost peer fails the next collective at once (gloo sees its connection closed), and every barrier of a
run (Orbax's included) is a collective; the coordination service learns of it only after ``HEARTBEAT_SECONDS``
without heartbeats, when JAX's client aborts the processes still there with a stack trace.

While its main thread is blocked inside JAX's runtime (joining the run, or a collective that waits for a peer), a
process runs no Python there: neither a signal's handler nor an exception reaches it. A thread ends it instead, in
one line: when the processes have not all joined within ``timeout`` (before JAX's client would abort with a stack
trace), and when a stop signal finds the main thread still blocked ``GRACE_SECONDS`` later (the same watch serves
``jaxvae evaluate``, whose dispatches of many importance samples run long).
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxvae.errors import STOP_SIGNALS, UserError

HEARTBEAT_SECONDS = 30
REPORT_SECONDS = 3600  # how long the other processes wait, at the end of a run, for process 0 to write its report
GRACE_SECONDS = 10  # after a stop signal, the main thread's own clean stop before the watchdog ends the process
LOST_PROCESS = "another process was lost or failed"  # how a failed collective reads in a line


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


def end_process(message: str, status: int) -> None:
    """Print ``message`` and end the process at once, from a thread, whatever its main thread is blocked in."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()
    os._exit(status)


def watch_stop_signals(message: Callable[[str], str], grace: float = GRACE_SECONDS) -> Callable[[], None]:
    """After a stop signal, leave the main thread ``grace`` seconds for its own clean stop; a process still alive
    then (its main thread blocked in the runtime) ends with ``message(signal's name)`` and 128 + the signal. Call from
    the main thread; returns the function that ends the watch (a stop the main thread made itself ends nothing more)."""
    reader, writer = socket.socketpair()  # a socket: what Windows takes as a wakeup fd
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno())  # Python's C-level handler writes each signal's number here
    ended = threading.Event()

    def watch():
        with reader, writer:  # held by this thread: open until ``end_watch``, or for the life of the process
            while (got := reader.recv(1)) and got[0] not in STOP_SIGNALS:
                pass
            if got and not ended.wait(grace):
                end_process(message(signal.Signals(got[0]).name), 128 + got[0])

    def end_watch():
        signal.set_wakeup_fd(previous)
        ended.set()
        writer.close()  # the watching thread reads the end of the stream and returns

    threading.Thread(target=watch, name="jaxvae-stop-watch", daemon=True).start()
    return end_watch


def initialize(coordinator: str, num_processes: int, process_id: int, timeout: float = 60.0, prefix="jaxvae") -> None:
    """Join the run: check the coordinator's address, then ``jax.distributed.initialize`` (before any JAX work); a
    run whose processes have not all joined within ``timeout`` seconds ends this process with ``prefix: error: ...``
    and status 1."""
    host, port = parse_address(coordinator)
    if process_id == 0:
        _check_bindable(host, port)
    else:
        _wait_for_port(host, port, timeout)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    late = (
        f"{prefix}: error: the {num_processes} processes did not all join the coordinator at {host}:{port} within "
        f"{timeout:g} s; start every --process-id 0..{num_processes - 1} with the same flags, or raise "
        "--coordinator-timeout"
    )
    deadline = threading.Timer(timeout, end_process, (late, 1))
    deadline.daemon = True
    deadline.start()
    try:
        jax.distributed.initialize(
            coordinator,
            num_processes,
            process_id,
            initialization_timeout=int(timeout) + GRACE_SECONDS,  # JAX's own deadline, which aborts: after ours
            heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
            shutdown_timeout_seconds=REPORT_SECONDS,
        )
    finally:
        deadline.cancel()


def end_run(status: int) -> None:
    """End this process of a run with ``status``. A finished run's processes leave together, through JAX's shutdown
    barrier: one that left first would stop sending heartbeats, and JAX's client would abort process 0, still
    writing the report, with a stack trace. After a failure they leave at once (the barrier would wait for processes
    that may be gone, then abort)."""
    if status == 0:
        jax.distributed.shutdown()
    sys.stderr.flush()
    os._exit(status)


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

"""Several devices and several processes, each in processes of their own (JAX fixes its devices when it starts).

- ``tests/devices/`` runs under 4 virtual CPU devices, its long tier (training over them) with the suite's; this test
  fails if any of it fails or skips.
- Two ``jaxvae train`` processes on 127.0.0.1 (gloo collectives) train one ensemble; a process killed mid-run stops
  the other in one line and leaves the last checkpoint whole, from which both continue with --resume; a process
  lost within a save fails it at once; a finished run's processes wait for process 0's report; a process started
  before process 0 waits for the coordinator; a coordinator that is not there, a port process 0 cannot listen on,
  peers that never join, and SIGTERM to a process blocked waiting for them are each one line.
"""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SMALL_RUN
from jaxvae.devices import choose_backend
from jaxvae.errors import UserError
from jaxvae.parity.method import F32_LOSS_RTOL
from jaxvae.run import checkpoint, distributed
from jaxvae.run.config import RunConfig
from jaxvae.run.engine import RunSetup
from jaxvae.run.members import member_grid

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = ["--seed", "123,7"]  # two of the suite ensemble's members, one after another


@pytest.mark.parametrize("platform, chosen", [("cpu", ("matmul", 16, 2, 16, 1)), ("gpu", ("xla", 0, 1, 500, 0))])
def test_the_backends_choices_and_the_users_kept(platform, chosen):
    """What a run does on each platform unless told (conv form, micro-batch, micro-batches side by side, evaluation
    batch, members vmapped together): on a CPU, the forms and sizes docs/benchmarks.md measured fastest, and members
    one at a time, so that each member is its single run bit for bit; a choice given is kept."""
    assert dataclasses.astuple(choose_backend(platform=platform)) == (platform, *chosen)
    given = choose_backend("pad", 8, 3, platform)
    assert (given.conv_impl, given.micro_batch, given.member_group) == ("pad", 8, 3)
    three = member_grid(RunConfig(), {"seed": (1, 2, 3)})  # summary.json's figure: members side by side, at most 3
    assert [RunSetup.build(three, group).describe_backend()["member_group"] for group in (2, 3, 8)] == [2, 3, 3]


def _env(devices=1, **extra):
    """This environment (the suite's XLA flags with it) with ``devices`` virtual CPU devices."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return {**os.environ, "XLA_FLAGS": flags, **extra}


@pytest.mark.parametrize("tier", ["not long", pytest.param("long", marks=pytest.mark.long)])
def test_on_four_virtual_cpu_devices(small_run, tier):
    env = _env(4, JAXVAE_DEVICE_TESTS="1", JAXVAE_SMALL_RUN=str(small_run))
    command = [sys.executable, "-m", "pytest", "-qrs", "-p", "no:cacheprovider", "-n", "0", "-m", tier, "tests/devices"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout and "error" not in result.stdout.lower()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(out: Path, *flags, count: int = 2, last=()) -> list[subprocess.Popen]:
    """``count`` processes of one run, the last with the flags ``last`` added."""
    port = _free_port()
    command = [sys.executable, "-m", "jaxvae", "train", *SMALL_RUN, *MEMBERS, "--out", str(out), *flags]
    command += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(count), "--coordinator-timeout", "60"]
    return [
        subprocess.Popen(
            [*command, "--process-id", str(i), *(last if i == count - 1 else ())],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]


def _finish(processes) -> list[tuple[int, str]]:
    return [(p.communicate(timeout=600)[1], p.returncode)[::-1] for p in processes]


@pytest.mark.long  # ~100 s: two jaxvae processes, twice
def test_two_processes_train_an_ensemble_through_a_lost_process_and_a_resume(tmp_path, ensemble_run):
    """Two processes train two members, one after another; process 1 is killed once every member has a checkpoint
    (under load, often while the processes still finish writing it): process 0 stops in one line, at once, the last
    checkpoint whole. Both started again with --resume continue it one more epoch, the members now vmapped together
    and each epoch one chunk, gathered on each process's host (how members are grouped and steps chunked is not a
    run's identity). Each member's first step is its one-process step (one float32 forward pass each, within twice
    the parity harness's ``F32_LOSS_RTOL`` on any machine)."""
    out = tmp_path / "two"
    first, second = _processes(out, "--epochs", "50")
    last = out / "members" / "seed7_lr0.0005_rw1" / "checkpoints"  # the last member saved
    deadline = time.monotonic() + 300
    while checkpoint.latest_epoch(last) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    second.kill()
    started = time.monotonic()
    _, err = first.communicate(timeout=120)
    second.communicate()
    assert first.returncode == 1 and time.monotonic() - started < distributed.HEARTBEAT_SECONDS  # not JAX's abort
    epochs = checkpoint.latest_epoch(last) + 1
    lines = [line for line in err.strip().splitlines() if line.startswith("jaxvae")]
    assert lines and "Traceback" not in err, err[-3000:]
    assert lines[-1].startswith("jaxvae train: error: process 0 of 2 stopped: ")  # in a collective, or a save's
    assert lines[-1].endswith(
        f"; the last complete checkpoint (epoch {epochs - 1}) is in every member's folder in {out / 'members'}: "
        "continue with the same command and --resume in every process"
    )
    assert checkpoint.read_meta(last, epochs - 1)["epoch"] == epochs - 1
    resumed = _finish(_processes(out, "--epochs", str(epochs), "--resume", "--member-group", "2", "--chunk-steps", "8"))
    assert [code for code, _ in resumed] == [0, 0], [err[-3000:] for _, err in resumed]
    for name in ("seed123_lr0.0005_rw1", "seed7_lr0.0005_rw1"):
        got, want = (
            [json.loads(line) for line in (f / name / "metrics.jsonl").read_text().splitlines()]
            for f in (out / "members", ensemble_run / "members")
        )
        assert [r["step"] for r in got if "split" not in r] == list(range(1, 8 * epochs + 1))
        assert abs(got[0]["loss"] - want[0]["loss"]) <= 2 * F32_LOSS_RTOL * want[0]["loss"]
        assert checkpoint.latest_epoch(out / "members" / name / "checkpoints") == epochs
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"]["processes"] == 2 and summary["devices"]["count"] == 2 and summary["steps"] == 8 * epochs
    assert summary["member_group"] == 2 and json.loads((out / "ensemble.json").read_text())["member_group"] == 2
    assert (out / "plots" / "losses.png").is_file()


TWO_PROCESSES = """
import sys, time
from pathlib import Path
import jax.numpy as jnp
import orbax.checkpoint as ocp
from jaxvae.devices import make_mesh, put_replicated
from jaxvae.run import checkpoint, distributed
from jaxvae.train_step import TrainState
distributed.HEARTBEAT_SECONDS = 3
process, scenario = int(sys.argv[1]), sys.argv[3]
distributed.initialize(sys.argv[2], 2, process)
if scenario == "report":
    time.sleep(10 if process == 0 else 0)  # process 0 writes the report, past the heartbeat timeout
    distributed.end_run(0)
if process == 1:  # lost once the checkpoint is finalised, before the save's last barrier
    finalize = ocp.CheckpointManager._finalize_checkpoint
    ocp.CheckpointManager._finalize_checkpoint = lambda self, step: (finalize(self, step), distributed.end_run(1))
with checkpoint.Checkpoints(Path(sys.argv[4])) as checkpoints:
    try:
        state = put_replicated(TrainState({"w": jnp.zeros(3)}, (), jnp.int32(0)), make_mesh())
        checkpoints.save(1, state, {"epoch": 1})
    except OSError as exc:
        print(exc.strerror, file=sys.stderr)
        distributed.end_run(1)
"""


def _two_processes(*args) -> list[tuple[int, str]]:
    """``TWO_PROCESSES`` run by two processes: the status and stderr of each."""
    address = f"127.0.0.1:{_free_port()}"
    commands = [[sys.executable, "-c", TWO_PROCESSES, str(i), address, *map(str, args)] for i in range(2)]
    return _finish([subprocess.Popen(c, cwd=ROOT, stderr=subprocess.PIPE, text=True) for c in commands])


@pytest.mark.long  # ~15 s: process 0 sleeps past a heartbeat timeout
def test_a_finished_run_waits_for_process_0s_report():
    """Had process 1 left once training ended, JAX's client would abort process 0 (a stack trace, status -6) as
    soon as process 1's heartbeats were missed, while it still wrote the plots and ``summary.json``."""
    for code, err in _two_processes("report"):
        assert code == 0, err[-3000:]


def test_a_process_lost_within_a_save_fails_it_at_once(tmp_path):
    """Process 1 is lost once the checkpoint is finalised. At the save's last barrier, were it through the
    coordination service (Orbax's default for it), process 0 would wait for the heartbeat timeout and JAX's client
    would then abort it; a collective fails at once (gloo sees the connection closed): an ``OSError`` that ``jaxvae
    train`` reports in one line. (It reaches into Orbax's manager to stop process 1 at that point.)"""
    (code, err), _ = _two_processes("save", tmp_path / "checkpoints")
    line = err.strip().splitlines()[-1]
    assert code == 1 and line.startswith("another process was lost or failed (") and "heartbeat" not in err, err[-3000:]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["1"]  # finalised: whole, no temporary left
    assert checkpoint.read_meta(tmp_path / "checkpoints", 1) == {"epoch": 1}


@pytest.mark.long  # ~5 s: three jaxvae processes, refused before anything is compiled
def test_processes_given_other_flags_are_refused_by_every_process(tmp_path):
    """Process 2 of 3 asks for 3 epochs, processes 0 and 1 for 2: without the check, they would wait forever at the
    end for process 2, and process 2 in its third epoch for them. The line names process 2 alone."""
    for code, err in _finish(_processes(tmp_path / "run", "--epochs", "2", count=3, last=("--epochs", "3"))):
        assert code == 2 and err.strip().splitlines() == [
            "jaxvae train: error: process(es) 2 were given other flags than process 0; give every process the same "
            "flags but --process-id"
        ], err[-3000:]
    assert not (tmp_path / "run").exists()


def _alone(out: Path, port: int, process_id: int, timeout: str) -> list[str]:
    """The command of one process of a two-process run whose other process never starts."""
    command = [sys.executable, "-m", "jaxvae", "train", "--out", str(out), "--coordinator", f"127.0.0.1:{port}"]
    return [*command, "--num-processes", "2", "--process-id", str(process_id), "--coordinator-timeout", timeout]


def test_an_absent_coordinator_is_one_line_within_the_timeout(tmp_path):
    command = _alone(tmp_path / "never", _free_port(), 1, "3")  # waited for 3 s, not the default 60: not killed at 60
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=60)
    err = result.stderr.strip()
    assert result.returncode == 2 and err.splitlines() == [err] and "cannot reach the coordinator" in err
    assert not (tmp_path / "never").exists()


def test_process_0_refuses_a_coordinator_port_in_use():
    """JAX's coordinator, unable to listen there, would abort the process (a stack trace): one line, naming it."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=rf"^process 0 cannot host the coordinator at 127.0.0.1:{port} \("):
            distributed.initialize(f"127.0.0.1:{port}", 2, 0, timeout=5)


def test_a_process_started_before_process_0_waits_for_the_coordinator(monkeypatch):
    """Process 1 tries again after each pause until the coordinator listens (here: process 0 is up after the first)."""
    port, up = _free_port(), []
    monkeypatch.setattr(distributed.time, "sleep", lambda s: up.append(socket.create_server(("127.0.0.1", port))))
    distributed._wait_for_port("127.0.0.1", port, 60)
    assert len(up) == 1


@pytest.mark.long  # ~15 s: two lone processes 0, mostly waiting
def test_a_process_blocked_joining_the_run_ends_in_one_line(tmp_path):
    """Process 0 of 2 whose peer never comes is blocked inside JAX's runtime, where Python runs no handler: with
    ``--coordinator-timeout 3`` it ends at the timeout (JAX's client would abort with a stack trace); sent SIGTERM, it
    ends ``GRACE_SECONDS`` later (it ignored the signal before). Each in one line, nothing written."""
    ports = [_free_port(), _free_port()]
    late, stopped = (
        subprocess.Popen(
            _alone(tmp_path / str(port), port, 0, timeout), cwd=ROOT, env=_env(), stderr=subprocess.PIPE, text=True
        )
        for port, timeout in zip(ports, ("3", "300"))
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the coordinator listens: the process is inside jax.distributed.initialize
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", ports[1])) == 0:
                break
        time.sleep(0.2)
    stopped.send_signal(signal.SIGTERM)
    try:
        for process, code, line in (
            (late, 1, "jaxvae train: error: the 2 processes did not all join the coordinator at 127.0.0.1:"),
            (stopped, 143, "jaxvae train: stopped by SIGTERM while blocked in the run's runtime; no epoch had"),
        ):
            err = process.communicate(timeout=120)[1]
            assert process.returncode == code and len(err.strip().splitlines()) == 1, err[-3000:]
            assert err.startswith(line), err
    finally:
        late.kill(), stopped.kill()
    assert not any(tmp_path.iterdir())

"""Several devices and several processes, each in processes of their own (JAX fixes its devices when it starts).

- ``tests/devices/`` runs under 4 virtual CPU devices; this test fails if any of it fails or skips.
- Two ``jaxvae train`` processes on 127.0.0.1 (gloo collectives) train one model: its losses follow a
  one-process run with the same global batch, through a resume; a process killed mid-run stops the other
  in one line and leaves the last checkpoint whole; a coordinator that is not there is one line within the timeout.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from jaxvae.run import checkpoint

ROOT = Path(__file__).resolve().parent.parent
RUN = ["--train-examples", "256", "--test-examples", "100", "--batch-size", "32", "--chunk-steps", "4"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", **extra}


def test_on_four_virtual_cpu_devices():
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=4", JAXVAE_DEVICE_TESTS="1")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", "tests/devices"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout and "error" not in result.stdout.lower()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes(out: Path, *flags, count: int = 2) -> list[subprocess.Popen]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "jaxvae.cli",
        "train",
        *RUN,
        "--out",
        str(out),
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        str(count),
        "--coordinator-timeout",
        "60",
        *flags,
    ]
    return [
        subprocess.Popen(
            [*command, "--process-id", str(i)],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]


def _finish(processes) -> list[tuple[int, str]]:
    results = []
    for p in processes:
        _, err = p.communicate(timeout=600)
        results.append((p.returncode, err))
    return results


def _losses(out: Path) -> np.ndarray:
    return np.array([json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()])


def test_two_processes_follow_one_through_a_resume(tmp_path, small_run):
    """Epoch 1 on two processes, then --resume to epoch 2 on two processes, against one process and device: the
    first loss to float32 rounding of its sums (2e-6), the rest within 1e-3 (Adam amplifies reordered sums)."""
    two = tmp_path / "two"
    for flags in (["--epochs", "1"], ["--epochs", "2", "--resume"]):
        for code, err in _finish(_processes(two, *flags)):
            assert code == 0, err[-3000:]
    got, want = _losses(two), _losses(small_run)  # one process and device, the same flags (RUN)
    assert len(got) == len(want) == 18 and abs(got[0] - want[0]) <= 2e-6 * want[0]
    np.testing.assert_allclose(got, want, rtol=1e-3)
    summary = json.loads((two / "summary.json").read_text())
    assert summary["devices"]["processes"] == 2 and summary["devices"]["count"] == 2 and summary["steps"] == 16
    assert checkpoint.latest_epoch(two / "checkpoints") == 2 and (two / "plots" / "training_loss.png").is_file()


def test_two_processes_train_an_ensemble(tmp_path, ensemble_run):
    """Two of the suite ensemble's members (seeds 123 and 7, weight 1) as an ensemble over two processes, one epoch:
    each member's losses follow the same member on one process and device, bounds as above."""
    out = tmp_path / "ensemble"
    for code, err in _finish(_processes(out, "--epochs", "1", "--seed", "123,7")):
        assert code == 0, err[-3000:]
    for name in ("seed123_lr0.0005_rw1", "seed7_lr0.0005_rw1"):
        got, want = _losses(out / "members" / name), _losses(ensemble_run / "members" / name)[:9]
        assert len(got) == 9 and abs(got[0] - want[0]) <= 2e-6 * want[0]  # 8 steps and the epoch's test loss
        np.testing.assert_allclose(got, want, rtol=1e-3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["devices"]["processes"] == 2 and len(summary["members"]) == 2


def test_a_lost_process_stops_the_run_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "lost"
    first, second = _processes(out, "--epochs", "50")
    deadline = time.monotonic() + 300
    while checkpoint.latest_epoch(out / "checkpoints") is None and time.monotonic() < deadline:
        time.sleep(0.5)
    second.kill()
    started = time.monotonic()
    _, err = first.communicate(timeout=120)
    second.communicate()
    assert first.returncode == 1 and time.monotonic() - started < 60
    lines = [line for line in err.strip().splitlines() if line.startswith("jaxvae")]
    assert lines and "another process was lost" in lines[-1] and "--resume" in lines[-1]
    assert "Traceback" not in err
    epoch = checkpoint.latest_epoch(out / "checkpoints")
    assert epoch is not None and checkpoint.read_meta(out / "checkpoints", epoch)["epoch"] == epoch


def test_an_absent_coordinator_is_one_line_within_the_timeout(tmp_path):
    command = [
        sys.executable,
        "-m",
        "jaxvae.cli",
        "train",
        "--out",
        str(tmp_path / "never"),
        "--coordinator",
        f"127.0.0.1:{_free_port()}",
        "--num-processes",
        "2",
        "--process-id",
        "1",
        "--coordinator-timeout",
        "3",
    ]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and time.monotonic() - started < 60
    assert (
        result.stderr.strip().splitlines() == [result.stderr.strip()]
        and "cannot reach the coordinator" in result.stderr
    )
    assert not (tmp_path / "never").exists()


def test_incomplete_process_flags_are_one_line(tmp_path):
    for flags, message in (
        (["--num-processes", "2"], "go together"),
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"], "--process-id must be in 0..1"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "jaxvae.cli", "train", "--out", str(tmp_path / "x"), *flags],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1

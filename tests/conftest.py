"""Shared fixtures for jaxvae's own tests: the embedded digits, and the suite's two trained runs.

Every training run in the suite has the shapes of ``SMALL_RUN`` (batch 32, 4 steps per dispatch, 100 test images):
the compiled training chunk and evaluation depend on those shapes only, so that one compilation (cached for the
session, see the top ``conftest.py``) serves them all.
"""

import fcntl
import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvae.data import load_mnist5k

# tests/devices/ needs 4 virtual CPU devices, set before JAX starts: tests/test_devices.py runs it in its own
# process with them (and fails if any of it fails or skips); the main session does not collect it.
collect_ignore = [] if os.environ.get("JAXVAE_DEVICE_TESTS") == "1" else ["devices"]

SMALL_RUN = ["--train-examples", "256", "--test-examples", "100", "--batch-size", "32", "--chunk-steps", "4"]
# 8 members: every per-member value varies. One member at a time (the CPU's default, here on every platform): each
# member runs its own run's operations, whatever the others, so member seed123_lr0.0005_rw1 is small_run bit for bit.
ENSEMBLE_LISTS = ["--seed", "123,7", "--lr", "5e-4,1e-3", "--reconstruction-weight", "1,0.5", "--member-group", "1"]


@pytest.fixture(scope="session")
def mnist5k():
    return load_mnist5k()


@pytest.fixture(scope="session")
def digits(mnist5k):
    """Eight real test digits, (8, 28, 28, 1) float32 in [0, 1]."""
    return np.asarray(mnist5k.test.images[:8])


def records(folder: Path, split=None) -> list[dict]:
    """A run folder's ``metrics.jsonl`` rows of one split (None: the training steps)."""
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == split]


def in_float64(run, method, inputs) -> np.ndarray:
    """``VAE.method`` (a method of ``run.model``) of ``inputs``, every parameter of ``run`` (``open_run``'s) and every
    input in float64: the counterpart of a float32 result, whose rounding it does not share."""
    with jax.enable_x64(True):
        params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), run.params)
        out = run.model.apply({"params": params}, jnp.asarray(inputs, jnp.float64), method=method)
        return jax.tree_util.tree_map(np.asarray, out)


def train_small(out: Path, *flags: str) -> Path:
    """``jaxvae train --out OUT --epochs 2 SMALL_RUN FLAGS``, in this process."""
    from jaxvae.run.cli import main

    assert main(["train", "--out", str(out), "--epochs", "2", *SMALL_RUN, *flags]) == 0
    return out


def trained_once(tmp_path_factory, name: str, *commands: list[str]) -> Path:
    """``jaxvae train --out FOLDER *flags`` for each of ``commands``, run once per test session and shared by every
    xdist worker: the first to ask trains it under a lock (a half-built folder from a failed attempt is removed
    first), the others wait for it. Tests only read it, copying it before they change anything."""
    from jaxvae.run.cli import main

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    root = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    out, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(out, ignore_errors=True)
            for flags in commands:
                assert main(["train", "--out", str(out), *flags]) == 0
            done.touch()
    return out


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """A 2-epoch ``jaxvae train`` of 256 images on one device, never stopped."""
    return trained_once(tmp_path_factory, "two_epochs", ["--epochs", "2", *SMALL_RUN])


@pytest.fixture(scope="session")
def ensemble_run(tmp_path_factory):
    """small_run's flags as an ensemble of 8 (``ENSEMBLE_LISTS``), 2 epochs."""
    return trained_once(tmp_path_factory, "ensemble", ["--epochs", "2", *SMALL_RUN, *ENSEMBLE_LISTS])

"""Shared fixtures for jaxvae's own tests."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

# tests/devices/ needs 4 virtual CPU devices, set before JAX starts: tests/test_devices.py runs it in its own
# process with them (and fails if any of it fails or skips); the main session does not collect it.
collect_ignore = [] if os.environ.get("JAXVAE_DEVICE_TESTS") == "1" else ["devices"]

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxvae.data import load_mnist5k  # noqa: E402


@pytest.fixture(scope="session")
def mnist5k():
    return load_mnist5k()


@pytest.fixture(scope="session")
def digits(mnist5k):
    """Eight real test digits, (8, 28, 28, 1) float32 in [0, 1]."""
    return np.asarray(mnist5k.test.images[:8])


SMALL_RUN = ["--train-examples", "256", "--test-examples", "100", "--batch-size", "32", "--chunk-steps", "4"]


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    """A 2-epoch ``jaxvae train`` of 256 images on one device, trained once for every test that reads it
    (its files, resume, evaluate/sample/export, and the runs on several processes that must follow it).
    Tests copy it before they change anything in it."""
    from jaxvae.cli import main

    out = tmp_path_factory.mktemp("runs") / "two_epochs"
    assert main(["train", "--epochs", "2", "--out", str(out), *SMALL_RUN]) == 0
    return out

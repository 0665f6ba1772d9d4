"""Shared fixtures for jaxvae's own tests."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

# tests/devices/ needs 4 virtual CPU devices, set before JAX starts: tests/test_devices.py runs it in its own
# process with them (and fails if any of it fails or skips); the main session does not collect it.
collect_ignore = [] if os.environ.get("JAXVAE_DEVICE_TESTS") == "1" else ["devices"]

import numpy as np
import pytest

from jaxvae.data import load_mnist5k


@pytest.fixture(scope="session")
def mnist5k():
    return load_mnist5k()


@pytest.fixture(scope="session")
def digits(mnist5k):
    """Eight real test digits, (8, 28, 28, 1) float32 in [0, 1]."""
    return np.asarray(mnist5k.test.images[:8])

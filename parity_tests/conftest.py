"""Shared fixtures for jaxvae-against-torch_ref tests; they skip, saying so, where torch is not installed."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e '.[dev]'")

from jaxvae.data import load_mnist5k  # noqa: E402
from jaxvae.layers import CONV_IMPLS  # noqa: E402

IMPLS = list(CONV_IMPLS)


@pytest.fixture(scope="session")
def mnist5k():
    return load_mnist5k()


@pytest.fixture(scope="session")
def real_digits(mnist5k):
    """32 real test digits, NHWC float32 in [0, 1]."""
    return np.asarray(mnist5k.test.images[:32])


@pytest.fixture(autouse=True)
def deterministic_torch():
    torch.use_deterministic_algorithms(True)
    yield

"""Shared fixtures for jaxvae-against-torch_ref tests; they skip, saying so, where torch is not installed. The
suite's trained runs are tests/conftest.py's (a test that compiles what they compiled then finds it cached)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="parity tests need torch: pip install -e '.[dev]'")
# What this imports (torch's compiler stack, ~1,000 modules) is imported here, before any test runs: an import that
# long, mid-suite, can meet the garbage collector finalising the reads Orbax leaves after a damaged checkpoint (see
# tests/test_faults.py), which on Python 3.11 breaks the import with a KeyError in importlib (fixed in 3.12).
torch.use_deterministic_algorithms(True)

from jaxvae.layers import CONV_IMPLS  # noqa: E402
from tests.conftest import mnist5k, small_run  # noqa: E402, F401 (fixtures)

IMPLS = list(CONV_IMPLS)


@pytest.fixture(scope="session")
def real_digits(mnist5k):  # noqa: F811 (the fixture above)
    """32 real test digits, NHWC float32 in [0, 1]."""
    return np.asarray(mnist5k.test.images[:32])


@pytest.fixture(autouse=True)
def deterministic_torch():
    torch.use_deterministic_algorithms(True)
    yield

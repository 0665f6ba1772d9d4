"""The pictures at latent sizes other than the suite's runs' 2 (whose run folders tests/test_training.py reads)."""

import numpy as np
import pytest

from jaxvae.run import plots


@pytest.mark.parametrize("latent_dim", [1, 5])
def test_the_latent_space_at_any_latent_size(tmp_path, latent_dim):
    """A 1-D latent against the label; a wider one by its first two units."""
    rng = np.random.default_rng(0)
    path = plots.latent_space(rng.standard_normal((50, latent_dim)), rng.integers(0, 10, 50), tmp_path / "z.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000

"""The pictures at latent sizes other than the suite's runs' 2 (whose run folders tests/test_training.py reads), the
training loss's running average and the tiling of image grids."""

import numpy as np
import pytest

from jaxvae.run import plots


@pytest.mark.parametrize("latent_dim", [1, 5])
def test_the_latent_space_at_any_latent_size(tmp_path, latent_dim):
    """A 1-D latent against the label; a wider one by its first two units."""
    rng = np.random.default_rng(0)
    path = plots.latent_space(rng.standard_normal((50, latent_dim)), rng.integers(0, 10, 50), tmp_path / "z.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_the_running_average_by_hand():
    """The mean of the last ``window`` losses; of all of them before ``window`` have come."""
    assert plots.running_average(np.array([1.0, 2.0, 3.0, 7.0]), 2).tolist() == [1.0, 1.5, 2.5, 5.0]


def test_the_tiles_by_hand():
    """Image (r, c) of a grid at rows 29r.. and columns 29c.. of the picture, a blank (NaN) line between them."""
    canvas = plots.tiles(np.arange(6.0).reshape(2, 3, 1, 1) * np.ones((2, 3, 28, 28)))  # image (r, c) all 3r + c
    assert canvas.shape == (57, 86) and np.isnan(canvas[28]).all() and np.isnan(canvas[:, [28, 57]]).all()
    tile = lambda r, c: canvas[29 * r : 29 * r + 28, 29 * c : 29 * c + 28]  # noqa: E731
    assert all((tile(r, c) == 3 * r + c).all() for r in range(2) for c in range(3))

"""What the pictures plot, read from their figures (a run's PNGs as files: tests/test_training.py), and the tiling of
image grids."""

import numpy as np
import pytest

from jaxvae.run import plots


@pytest.fixture
def drawn(monkeypatch):
    """The axes of the last picture drawn, kept instead of its PNG (tests/test_training.py reads a run's PNGs)."""
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or path)
    return lambda: figures.pop().axes


@pytest.mark.parametrize("latent_dim", [1, 2, 5])
def test_the_latent_space_at_any_latent_size(drawn, latent_dim):
    """Each digit's points by their first two units; a 1-D latent's against the label."""
    rng = np.random.default_rng(0)
    z, labels = rng.standard_normal((50, latent_dim)), rng.integers(0, 10, 50)
    plots.latent_space(z, labels, None)
    across = labels if latent_dim == 1 else z[:, 1]
    for digit, points in enumerate(drawn()[0].collections):
        assert np.array_equal(points.get_offsets(), np.column_stack([z[labels == digit, 0], across[labels == digit]]))


def test_the_curves_points_and_bands_by_hand(drawn):
    """The running average of 2 batches (of 1 at the first) at the steps logged (a log that lost its first lines
    starts later) and the test losses at their epochs' last steps; each weight's members; the ensemble's training
    losses averaged over 2 steps (a fifth of an epoch of 10), then over its 2 seeds; its test losses [1, 2] and [3, 6]
    after epochs 2 and 4: mean [2, 4], sd (ddof 1) [2^0.5, 8^0.5]; 13 images in 2 rows of 8, the last three tiles
    blank; reconstructions' rows, each named beside it."""
    plots.training_loss({3: 4.0, 4: 2.0, 5: 6.0, 6: 4.0}, 2, None, test_losses={2: 3.0, 3: 5.0})
    _, average, test = drawn()[0].lines
    assert average.get_xydata().tolist() == [[3, 4.0], [4, 3.0], [5, 4.0], [6, 5.0]]
    assert test.get_xydata().tolist() == [[4, 3], [6, 5]]
    plots.rate_distortion([(1.0, 3.0, 40.0), (0.5, 5.0, 30.0), (1.0, 2.0, 45.0)], None)
    assert [c.get_offsets().tolist() for c in drawn()[0].collections] == [[[5, 30]], [[3, 40], [2, 45]]]
    tests = (np.array([2, 4]), np.array([[1.0, 2.0], [3.0, 6.0]]))
    plots.ensemble_losses({"a": ((np.arange(1, 5), np.array([[1.0, 3, 5, 7], [3, 5, 7, 9]])), tests)}, 10, None)
    train_ax, test_ax = drawn()
    assert train_ax.lines[0].get_ydata().tolist() == [2, 3, 5, 7]  # the mean of [1, 2, 4, 6] and [3, 4, 6, 8]
    band = test_ax.collections[0].get_paths()[0].vertices
    assert set(band[:, 0]) == {2, 4} and test_ax.lines[0].get_xdata().tolist() == [2, 4]
    assert set(band[:, 1].round(12)) == set(np.round([2 - 2**0.5, 4 - 8**0.5, 2 + 2**0.5, 4 + 8**0.5], 12))
    plots.image_grid(np.arange(13.0)[:, None, None] * np.ones((13, 28, 28)), None)  # image k all k
    canvas = np.ma.filled(drawn()[0].images[0].get_array(), np.nan)  # (2 * 29 - 1, 8 * 29 - 1)
    assert canvas.shape == (57, 231) and canvas[29, 29 * 4] == 12 and np.isfinite(canvas).sum() == 784 * 13
    rows = {"z = mean": np.full((3, 28, 28), 0.5), "z sampled": np.ones((3, 28, 28))}
    plots.reconstructions(np.zeros((3, 28, 28)), rows, None)
    (ax,) = drawn()
    canvas = np.ma.filled(ax.images[0].get_array(), np.nan)
    names = [(label.get_text(), canvas[int(y), 0]) for y, label in zip(ax.get_yticks(), ax.get_yticklabels())]
    assert names == [("original", 0.0), ("z = mean", 0.5), ("z sampled", 1.0)]  # each name beside its row


def test_the_latent_units_by_hand(drawn):
    """Each member's units sorted by its own KL, [3, 2, 1] and [6, 5, 4]: means [4.5, 3.5, 2.5], error bars of sd
    (ddof 1) 3 / 2^0.5; the activities in the same order; one seed: no error bars."""
    kl, activity = np.array([[1.0, 3, 2], [5, 4, 6]]), np.array([[0.1, 0.3, 0.2], [0.5, 0.4, 0.6]])
    plots.latent_usage({"two seeds": (kl, activity), "one seed": (kl[:1], activity[:1])}, 0.01, None)
    top, bottom = drawn()
    (line, _, (bars,)), one_seed = top.containers
    assert line.get_ydata().tolist() == [4.5, 3.5, 2.5] and not one_seed.has_yerr
    np.testing.assert_allclose(
        [s[:, 1] for s in bars.get_segments()], [[m - 1.5 * 2**0.5, m + 1.5 * 2**0.5] for m in (4.5, 3.5, 2.5)]
    )
    np.testing.assert_allclose(bottom.containers[0][0].get_ydata(), [0.45, 0.35, 0.25])


def test_the_tiles_by_hand():
    """Image (r, c) of a grid at rows 29r.. and columns 29c.. of the picture, a blank (NaN) line between them."""
    canvas = plots.tiles(np.arange(6.0).reshape(2, 3, 1, 1) * np.ones((2, 3, 28, 28)))  # image (r, c) all 3r + c
    assert canvas.shape == (57, 86) and np.isnan(canvas[28]).all() and np.isnan(canvas[:, [28, 57]]).all()
    tile = lambda r, c: canvas[29 * r : 29 * r + 28, 29 * c : 29 * c + 28]  # noqa: E731
    assert all((tile(r, c) == 3 * r + c).all() for r in range(2) for c in range(3))

"""The run's pictures as PNG files: loss curve, reconstructions, interpolations, latent space, prior samples and
the manifold."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure  # figures without pyplot: no global backend is set or used

from jaxvae.run.files import write_atomically


def _subplots(*grid, **kwargs):
    fig = Figure(figsize=kwargs.pop("figsize"))
    return fig, fig.subplots(*grid, **kwargs)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=110, bbox_inches="tight", pil_kwargs={"compress_level": 1})
    write_atomically(path, png.getvalue())  # a full disk leaves no half picture
    return path


def running_average(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last ``window`` values at each point (fewer at the start)."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (cumulative[idx] - cumulative[start]) / (idx - start)


def training_loss(losses: dict[int, float], steps_per_epoch: int, path: Path, test_losses: dict | None = None) -> Path:
    """Loss per batch (by step), its running average, and an epoch axis on top; test losses (by epoch) if given."""
    steps, losses = np.array(list(losses), np.int64), np.array(list(losses.values()), np.float64)
    window = max(1, min(100, steps_per_epoch))
    fig, ax = _subplots(figsize=(8, 4.5))
    ax.plot(steps, losses, lw=0.6, alpha=0.5, label="loss per batch")
    ax.plot(steps, running_average(losses, window), lw=1.8, label=f"running average ({window} batches)")
    if test_losses:
        epochs, values = zip(*test_losses.items())
        ax.plot(np.multiply(epochs, steps_per_epoch), values, "o-", label="test loss (end of epoch)")
    finite = losses[np.isfinite(losses)]
    if finite.size:
        ax.set_ylim(0, np.percentile(finite, 99.5) * 1.1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (reconstruction + KL)")
    ax.legend()
    top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch, lambda e: e * steps_per_epoch))
    top.set_xlabel("epoch")
    return _save(fig, path)


def tiles(images: np.ndarray) -> np.ndarray:
    """Images ``(rows, columns, 28, 28[, 1])`` as one picture with a blank pixel between them:
    ``(rows * 29 - 1, columns * 29 - 1)``, NaN (drawn blank) where no image is."""
    rows, columns = images.shape[:2]
    canvas = np.full((rows, 29, columns, 29), np.nan)
    canvas[:, :28, :, :28] = images.reshape(rows, columns, 28, 28).transpose(0, 2, 1, 3)
    return canvas.reshape(rows * 29, columns * 29)[:-1, :-1]


def _tiled(grid: np.ndarray, path: Path, title: str | None, row_names=(), scale: float = 0.45) -> Path:
    """One figure of ``tiles(grid)``, with a title and names for the rows."""
    rows, columns = grid.shape[:2]
    fig, ax = _subplots(figsize=(columns * scale + (1.2 if row_names else 0.2), rows * scale + 0.5))
    ax.imshow(tiles(grid), cmap="binary", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([29 * i + 13.5 for i in range(len(row_names))], list(row_names), fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def image_grid(images: np.ndarray, path: Path, columns: int = 8, title: str | None = None) -> Path:
    """Images ``(N, 28, 28[, 1])`` in a grid of ``columns``."""
    images = np.asarray(images).reshape(len(images), 28, 28)
    rows = -(-len(images) // columns)
    padded = np.full((rows * columns, 28, 28), np.nan)
    padded[: len(images)] = images
    return _tiled(padded.reshape(rows, columns, 28, 28), path, title)


def reconstructions(originals: np.ndarray, rows: dict[str, np.ndarray], path: Path) -> Path:
    """Originals in the top row, then one row per named set of reconstructions (e.g. z = mean, z sampled)."""
    named = {"original": originals, **rows}
    grid = np.stack([np.asarray(images).reshape(-1, 28, 28) for images in named.values()])  # (rows, N, 28, 28)
    return _tiled(grid, path, None, named, scale=0.6)


def interpolations(starts: np.ndarray, paths: np.ndarray, ends: np.ndarray, path: Path) -> Path:
    """A row per pair: the start digit, ``paths[i]`` ``(steps, 28, 28)`` decoded between their means, the end digit."""
    grid = np.concatenate([starts.reshape(-1, 1, 28, 28), paths, ends.reshape(-1, 1, 28, 28)], axis=1)
    title = "start, decoded along the straight line between the two test digits' latent means, end"
    return _tiled(grid, path, title, scale=0.6)


def latent_space(z: np.ndarray, labels: np.ndarray, path: Path) -> Path:
    """The first two latent dimensions of each test image, coloured by its label (a 1-D latent against the label)."""
    fig, ax = _subplots(figsize=(7, 6))
    cmap = matplotlib.colormaps["tab10"]
    across = z[:, 1] if z.shape[1] > 1 else labels  # (N,)
    for digit in range(10):
        chosen = labels == digit
        ax.scatter(z[chosen, 0], across[chosen], s=4, color=cmap(digit), alpha=0.7, label=str(digit))
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]" if z.shape[1] > 1 else "label")
    ax.legend(markerscale=3, title="label", loc="best", fontsize=8)
    return _save(fig, path)


def manifold(grid: np.ndarray, path: Path) -> Path:
    """A ``(rows, cols, 28, 28)`` grid of decoded images as one picture."""
    return _tiled(grid, path, "decoded latent manifold (z at the normal's 5%..95% quantiles)", scale=0.4)


def _band(ax, x, curves: np.ndarray, label: str, color, **line) -> None:
    """The mean of ``curves`` ``(seeds, points)`` as a line, and mean ± one standard deviation as a band."""
    mean = curves.mean(axis=0)
    ax.plot(x, mean, color=color, label=label, **line)
    if len(curves) > 1:
        sd = curves.std(axis=0, ddof=1)
        ax.fill_between(x, mean - sd, mean + sd, color=color, alpha=0.25, lw=0)


def ensemble_losses(settings: dict[str, tuple], steps_per_epoch: int, path: Path) -> Path:
    """Per setting (label -> ((steps, training losses (seeds, steps)), (epochs, test losses (seeds, epochs)))): the
    running average of the training loss and the test loss after each evaluated epoch, each as the mean over seeds
    with a ± 1 sd band."""
    fig, (train_ax, test_ax) = _subplots(1, 2, figsize=(13, 4.5))
    window = max(1, min(20, steps_per_epoch // 5))  # short: a long window carries the first steps' losses far
    cmap = matplotlib.colormaps["tab10"]
    top = []
    for i, (label, ((steps, train), (epochs, test))) in enumerate(settings.items()):
        smooth = np.stack([running_average(np.asarray(row, np.float64), window) for row in train])
        _band(train_ax, steps, smooth, label, cmap(i % 10), lw=1.5)
        _band(test_ax, epochs, np.asarray(test, np.float64), label, cmap(i % 10), marker="o")
        top.append(np.nanpercentile(smooth, 99.5))
    seeds = max(len(train) for (_, train), _ in settings.values())
    spread = f"mean ± 1 sd over {seeds} seeds" if seeds > 1 else "one seed each"
    train_ax.set(xlabel="iteration", ylabel="loss", title=f"training loss, running average of {window} ({spread})")
    train_ax.set_ylim(0, max(top) * 1.1)
    test_ax.set(xlabel="epoch", ylabel="loss", title=f"test loss after each evaluated epoch ({spread})")
    test_ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    for ax in (train_ax, test_ax):
        ax.legend(fontsize=8)
    return _save(fig, path)


def rate_distortion(points: list[tuple[float, float, float]], path: Path) -> Path:
    """One point per member (reconstruction weight, KL, reconstruction error) at the end of training: the rate
    (KL, nats) against the distortion, coloured by the weight."""
    fig, ax = _subplots(figsize=(7, 5.5))
    weights = sorted({w for w, _, _ in points})
    cmap = matplotlib.colormaps["viridis"]
    for i, weight in enumerate(weights):
        chosen = [(kl, rec) for w, kl, rec in points if w == weight]
        colour = cmap(i / max(1, len(weights) - 1))
        ax.scatter(*zip(*chosen), color=colour, s=30, label=f"weight {weight:g}", edgecolor="black", lw=0.4)
    ax.set_xlabel("rate: KL(q(z|x) || p(z)) per test image (nats)")
    ax.set_ylabel("distortion: reconstruction error per test image")
    ax.set_title("rate against distortion, one point per member, after the last epoch")
    ax.legend(title="reconstruction weight", fontsize=8)
    return _save(fig, path)


def latent_usage(settings: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float, path: Path) -> Path:
    """Each latent unit's KL and activity ``Cov_x(E_q[z_u | x])``, units sorted by their KL (largest first), the
    active-unit threshold marked; per setting ``(kl (seeds, L), activity (seeds, L))``, the mean over seeds with
    their standard deviation as error bars (none for one seed)."""
    fig, (top, bottom) = _subplots(2, 1, figsize=(8, 6), sharex=True)
    for label, (kl, units) in settings.items():
        order = np.argsort(-kl, axis=1)  # each member's units by its own KL
        kl, units = np.take_along_axis(kl, order, axis=1), np.take_along_axis(units, order, axis=1)
        rank = np.arange(1, kl.shape[1] + 1)
        spread = (lambda a: a.std(axis=0, ddof=1)) if len(kl) > 1 else (lambda a: None)
        top.errorbar(rank, kl.mean(axis=0), yerr=spread(kl), fmt="o-", ms=3, capsize=2, label=label)
        bottom.errorbar(rank, units.mean(axis=0), yerr=spread(units), fmt="o-", ms=3, capsize=2, label=label)
    top.set_ylabel("KL per unit (nats)")
    top.set_title("latent units, sorted by KL")
    bottom.axhline(threshold, color="k", ls="--", lw=1, label=f"active above {threshold:g}")
    bottom.set_yscale("log")
    bottom.set_ylabel("Cov_x(E[z_u | x])")
    bottom.set_xlabel("unit (by KL, largest first)")
    bottom.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    bottom.legend(fontsize=8)
    return _save(fig, path)

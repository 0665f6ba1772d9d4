"""The end of a run: the seed's plots under ``plots/`` and ``summary.json`` with everything a reader asks.

A leaf: it is handed what the run did (``FinishedRun``) and computes nothing of the training itself.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax
import jax
import numpy as np
import optax
from jax.sharding import Mesh

from jaxvae import inference
from jaxvae.data import Dataset
from jaxvae.devices import describe, to_host
from jaxvae.model import VAE
from jaxvae.run import files, plots
from jaxvae.run.config import RunConfig
from jaxvae.run.distributed import is_primary
from jaxvae.train_step import METRIC_NAMES, TrainState

N_RECONSTRUCTIONS = 10
N_SAMPLES = 64
N_INTERPOLATIONS = 5
INTERPOLATION_STEPS = 10


def versions() -> dict:
    return {
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', d)}"


def epoch_train_means(records: list[dict]) -> dict[int, dict]:
    """Mean loss terms over each epoch's training steps."""
    by_epoch: dict[int, list] = {}
    for r in records:
        if "split" not in r:
            by_epoch.setdefault(r["epoch"], []).append([r[k] if r[k] is not None else np.nan for k in METRIC_NAMES])
    return {e: dict(zip(METRIC_NAMES, np.mean(rows, axis=0).tolist())) for e, rows in by_epoch.items()}


def interpolation_pairs(labels: np.ndarray, pairs: int = N_INTERPOLATIONS) -> list[tuple[int, int]]:
    """Indices of test digits to interpolate between: the first of label 2i and the first of label 2i + 1
    (then consecutive images where labels are missing; a single test image is paired with itself)."""
    first = {int(d): int(np.flatnonzero(labels == d)[0]) for d in np.unique(labels)}
    chosen = [(first[a], first[b]) for a, b in ((2 * i, 2 * i + 1) for i in range(5)) if a in first and b in first]
    chosen += [(2 * i, 2 * i + 1) for i in range(pairs) if 2 * i + 1 < len(labels)]
    return chosen[:pairs] or [(0, len(labels) - 1)]


def write_plots(out: Path, model, params, dataset, records: list[dict], steps_per_epoch: int, key) -> list[str]:
    """The seed's four pictures, reconstructions at z = mean, latent interpolations (and the manifold of a 2-D
    latent); returns their paths relative to ``out``."""
    folder = out / files.PLOTS
    losses = [r["loss"] if r["loss"] is not None else np.nan for r in records if "split" not in r]
    tests = [(r["epoch"], r["loss"]) for r in records if r.get("split") == "test" and r["loss"] is not None]
    recon_key, sample_key = jax.random.split(key)
    images = dataset.test.images
    originals = images[:N_RECONSTRUCTIONS]
    rows = {
        "z = mean": inference.reconstruct_at_mean(model, params, originals),
        "z sampled": inference.reconstruct(model, params, originals, recon_key),
    }
    a, b = (np.array(side) for side in zip(*interpolation_pairs(dataset.test.labels)))
    made = [
        plots.training_loss(losses, steps_per_epoch, folder / "training_loss.png", tests),
        plots.reconstructions(originals, rows, folder / "reconstructions.png"),
        plots.interpolations(
            images[a],
            inference.interpolate(model, params, images[a], images[b], INTERPOLATION_STEPS),
            images[b],
            folder / "latent_interpolations.png",
        ),
        plots.latent_space(
            inference.encode_means(model, params, images), dataset.test.labels, folder / "latent_space.png"
        ),
        plots.image_grid(
            inference.sample_prior(model, params, sample_key, N_SAMPLES),
            folder / "prior_samples.png",
            title="decoded from z ~ N(0, I)",
        ),
    ]
    if model.latent_dim == 2:
        made.append(plots.manifold(inference.manifold(model, params), folder / "latent_manifold.png"))
    return [str(p.relative_to(out)) for p in made]


@dataclass(frozen=True)
class FinishedRun:
    """What a run did, for its report: settings, data, model and final state, results, timings and devices."""

    config: RunConfig
    dataset: Dataset
    model: VAE
    state: TrainState
    records: list[dict]  # metrics.jsonl's, as the run ended
    last_epoch: int
    final_test: dict  # loss terms of the test split after the last epoch
    timing: dict  # compile_seconds, train_seconds, eval_seconds, trained_images, traces
    steps_per_epoch: int
    steps_per_dispatch: int
    backend: dict  # the backend's choices as they ran
    mesh: Mesh
    plot_key: Any


def summarize(run: FinishedRun) -> dict:
    """``summary.json``'s content."""
    timing, seconds = run.timing, run.timing["train_seconds"]
    return {
        "config": run.config.to_json(),
        "data": {
            "source": run.dataset.source,
            "train_images": len(run.dataset.train),
            "test_images": len(run.dataset.test),
        },
        "epochs_completed": run.last_epoch,
        "steps": int(to_host(run.state.step)),
        "final_train": epoch_train_means(run.records).get(run.last_epoch),
        "final_test": run.final_test,
        "images_per_second": timing["trained_images"] / seconds if seconds > 0 else None,
        "train_seconds": seconds,
        "eval_seconds": timing["eval_seconds"],
        "compile_seconds": timing["compile_seconds"],
        "steps_per_dispatch": run.steps_per_dispatch,
        "traces": timing["traces"],
        **run.backend,
        "device": device(),
        "devices": describe(run.mesh),
        "versions": versions(),
    }


def finish_run(out: Path, run: FinishedRun) -> dict:
    """Plots and ``summary.json`` (process 0 writes them); returns the summary."""
    summary = summarize(run)
    if is_primary():
        params = to_host(run.state.params)
        summary["plots"] = write_plots(
            out, run.model, params, run.dataset, run.records, run.steps_per_epoch, run.plot_key
        )
        files.write_json(out / files.SUMMARY, summary)
    return summary

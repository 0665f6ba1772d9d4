"""The end of a run: the seed's plots under ``plots/`` and ``summary.json`` with everything a reader asks."""

from __future__ import annotations

import platform
from pathlib import Path

import flax
import jax
import numpy as np
import optax

from jaxvae import inference, plots, run_files
from jaxvae.distributed import is_primary
from jaxvae.parallel import describe, to_host
from jaxvae.train_step import METRIC_NAMES

N_RECONSTRUCTIONS = 10
N_SAMPLES = 64
N_INTERPOLATIONS = 5
INTERPOLATION_STEPS = 10


def versions() -> dict:
    return {"jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else None,
            "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__, "python": platform.python_version()}


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
    folder = out / run_files.PLOTS
    losses = [r["loss"] if r["loss"] is not None else np.nan for r in records if "split" not in r]
    tests = [(r["epoch"], r["loss"]) for r in records if r.get("split") == "test" and r["loss"] is not None]
    recon_key, sample_key = jax.random.split(key)
    images = dataset.test.images
    originals = images[:N_RECONSTRUCTIONS]
    rows = {"z = mean": inference.reconstruct_at_mean(model, params, originals),
            "z sampled": inference.reconstruct(model, params, originals, recon_key)}
    a, b = (np.array(side) for side in zip(*interpolation_pairs(dataset.test.labels)))
    made = [
        plots.training_loss(losses, steps_per_epoch, folder / "training_loss.png", tests),
        plots.reconstructions(originals, rows, folder / "reconstructions.png"),
        plots.interpolations(images[a], inference.interpolate(model, params, images[a], images[b], INTERPOLATION_STEPS), images[b],
                             folder / "latent_interpolations.png"),
        plots.latent_space(inference.encode_means(model, params, images), dataset.test.labels, folder / "latent_space.png"),
        plots.image_grid(inference.sample_prior(model, params, sample_key, N_SAMPLES), folder / "prior_samples.png", title="decoded from z ~ N(0, I)"),
    ]
    if model.latent_dim == 2:
        made.append(plots.manifold(inference.manifold(model, params), folder / "latent_manifold.png"))
    return [str(p.relative_to(out)) for p in made]


def finish_run(out: Path, config, dataset, trainer, state, keys, timing: dict, test_split) -> dict:
    """Final test evaluation (every process takes part), plots and ``summary.json`` (process 0 writes them)."""
    from jaxvae.training import evaluate_epoch

    records = run_files.MetricsLog(out / run_files.METRICS).read()
    last_epoch = max((r["epoch"] for r in records), default=0)
    test = [r for r in records if r.get("split") == "test" and r["epoch"] == last_epoch]
    if not test:  # nothing trained in this invocation and no record: evaluate now
        metrics = evaluate_epoch(trainer, state.params, test_split, keys, last_epoch)
        test = [dict(zip(METRIC_NAMES, metrics.tolist()))]
    seconds = timing["train_seconds"]
    summary = {
        "config": config.to_json(),
        "data": {"source": dataset.source, "train_images": len(dataset.train), "test_images": len(dataset.test)},
        "epochs_completed": last_epoch,
        "steps": int(to_host(state.step)),
        "final_train": epoch_train_means(records).get(last_epoch),
        "final_test": {k: test[0][k] for k in METRIC_NAMES},
        "images_per_second": timing["trained_images"] / seconds if seconds > 0 else None,
        "train_seconds": seconds,
        "eval_seconds": timing["eval_seconds"],
        "eval_batch": trainer.eval_batch,
        "compile_seconds": timing["compile_seconds"],
        "steps_per_dispatch": trainer.chunk_steps,
        "micro_batch": trainer.micro_batch,
        "concurrent_micro_batches": trainer.concurrent,
        "traces": timing["traces"],
        "conv_impl": trainer.conv_impl,
        "device": device(),
        "devices": describe(trainer.mesh),
        "versions": versions(),
    }
    if is_primary():
        params = to_host(state.params)
        summary["plots"] = write_plots(out, trainer.model, params, dataset, records, trainer.steps_per_epoch, keys.eval)
        run_files.write_json(out / run_files.SUMMARY, summary)
    return summary

"""The end of a run: each member's plots under ``plots/`` and ``summary.json`` in its run folder (with the latent
units' diagnostics on the test split, ``jaxvae.diagnostics``), and for an ensemble its own ``OUT/summary.json``
(every member's final results, the mean and standard deviation over seeds of each setting, member-images per second)
and ``OUT/plots/`` (each setting's losses as a mean with a band over seeds, its latent units' KL and activity; the
rate-distortion picture when the reconstruction weight is swept).

A leaf: it is handed what the run did and computes nothing of the training itself. The standard deviation is the
sample one (n - 1), over the seeds of a setting; ``null`` for a single seed.
"""

from __future__ import annotations

import platform
from pathlib import Path

import flax
import jax
import numpy as np
import optax

from jaxvae import inference
from jaxvae.devices import describe, to_host
from jaxvae.diagnostics import ACTIVE_THRESHOLD, latent_diagnostics
from jaxvae.run import files, plots
from jaxvae.run.distributed import is_primary
from jaxvae.run.members import Member, number
from jaxvae.train_step import METRIC_NAMES

LATENT_FIGURES = ("active_units", "mutual_information_nats")  # an ensemble's summary: mean ± sd over seeds
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


def _losses(records: list[dict], split=None) -> dict[int, float]:
    """Each logged loss by its step (training) or epoch (``split`` "test"); NaN for a non-finite one."""
    at = "epoch" if split else "step"
    return {r[at]: r["loss"] if r["loss"] is not None else np.nan for r in records if r.get("split") == split}


def _aligned(logs: list[dict[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The steps (or epochs) every one of ``logs`` holds, and each log's losses at them ``(logs, points)``: a log
    whose lines were removed by hand leaves out the points it lacks."""
    common = sorted(set.intersection(*map(set, logs)))
    return np.array(common, np.int64), np.array([[log[i] for i in common] for log in logs], np.float64)


def epoch_train_means(records: list[dict]) -> dict[int, dict]:
    """Mean loss terms over each epoch's training steps."""
    by_epoch: dict[int, list] = {}
    for r in records:
        if "split" not in r:
            by_epoch.setdefault(r["epoch"], []).append([r[k] if r[k] is not None else np.nan for k in METRIC_NAMES])
    return {e: dict(zip(METRIC_NAMES, np.mean(rows, axis=0).tolist())) for e, rows in by_epoch.items()}


def final_test(records: list[dict]) -> tuple[int, dict]:
    """The last epoch and the test metrics after it (the last epoch is always evaluated)."""
    last = max(r["epoch"] for r in records)
    test = next(r for r in reversed(records) if r.get("split") == "test" and r["epoch"] == last)
    return last, {k: test[k] for k in METRIC_NAMES}


def interpolation_pairs(labels: np.ndarray, pairs: int = N_INTERPOLATIONS) -> list[tuple[int, int]]:
    """Indices of test digits to interpolate between: the first of label 2i and the first of label 2i + 1
    (then consecutive images where labels are missing; a single test image is paired with itself)."""
    first = {int(d): int(np.flatnonzero(labels == d)[0]) for d in np.unique(labels)}
    chosen = [(first[a], first[b]) for a, b in ((2 * i, 2 * i + 1) for i in range(5)) if a in first and b in first]
    chosen += [(2 * i, 2 * i + 1) for i in range(pairs) if 2 * i + 1 < len(labels)]
    return chosen[:pairs] or [(0, len(labels) - 1)]


def write_plots(out: Path, model, params, dataset, records, steps_per_epoch: int, key, means, latent) -> list[str]:
    """The seed's four pictures, reconstructions at z = mean, latent interpolations, the latent units' usage
    (``latent``: ``latent_diagnostics``), and the manifold of a 2-D latent; ``means``: the test images' posterior
    means. Returns their paths relative to ``out``."""
    folder, images, labels = out / files.PLOTS, dataset.test.images, dataset.test.labels
    recon_key, sample_key = jax.random.split(key)
    originals = images[:N_RECONSTRUCTIONS]
    rows = {"z = mean": inference.reconstruct_at_mean(model, params, originals)}
    rows["z sampled"] = inference.reconstruct(model, params, originals, recon_key)
    a, b = (np.array(side) for side in zip(*interpolation_pairs(labels)))
    paths = inference.interpolate(model, params, images[a], images[b], INTERPOLATION_STEPS)
    samples = inference.sample_prior(model, params, sample_key, N_SAMPLES)
    made = [
        plots.training_loss(_losses(records), steps_per_epoch, folder / "training_loss.png", _losses(records, "test")),
        plots.reconstructions(originals, rows, folder / "reconstructions.png"),
        plots.interpolations(images[a], paths, images[b], folder / "latent_interpolations.png"),
        plots.latent_space(means, labels, folder / "latent_space.png"),
        plots.image_grid(samples, folder / "prior_samples.png", title="decoded from z ~ N(0, I)"),
        plots.latent_usage({"this run": _usage([latent])}, ACTIVE_THRESHOLD, folder / "latent_usage.png"),
    ]
    if model.latent_dim == 2:
        made.append(plots.manifold(inference.manifold(model, params), folder / "latent_manifold.png"))
    return [str(p.relative_to(out)) for p in made]


def _usage(latents: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The members' KL and activity per unit, ``(members, L)`` each."""
    return tuple(np.array([d[key] for d in latents]) for key in ("kl_per_dim", "activity_per_dim"))


def mean_sd(values: list[float]) -> dict:
    """``{"mean", "sd", "n"}`` of ``values`` (sd: sample standard deviation, None for one value or a None value)."""
    if any(v is None for v in values):
        return {"mean": None, "sd": None, "n": len(values)}
    array = np.asarray(values, np.float64)
    return {"mean": float(array.mean()), "sd": float(array.std(ddof=1)) if len(array) > 1 else None, "n": len(array)}


def by_setting(members: list[Member]) -> dict[tuple, list[int]]:
    """The members' indices per setting (lr, reconstruction weight), in the order members come."""
    groups: dict[tuple, list[int]] = {}
    for k, member in enumerate(members):
        groups.setdefault(member.setting, []).append(k)
    return groups


def summarize_settings(members: list[Member], results: list[dict], keys=METRIC_NAMES) -> list[dict]:
    """Per setting: its values, its seeds, and mean ± sd over them of each of ``results``' sections and ``keys``
    (``results[k]``: member k's sections, e.g. ``{"final_test": {"loss": ...}}``)."""
    rows = []
    for (lr, weight), chosen in by_setting(members).items():
        row = {"lr": lr, "reconstruction_weight": weight, "seeds": [members[k].config.seed for k in chosen]}
        for section in results[0]:
            present = [results[k][section] for k in chosen if results[k][section] is not None]
            if len(present) == len(chosen):
                row[section] = {key: mean_sd([p[key] for p in present]) for key in keys if key in present[0]}
        rows.append(row)
    return rows


def write_ensemble_plots(out: Path, members: list[Member], records: list[list[dict]], finals, steps: int, latents):
    """The ensemble's pictures; returns their paths relative to ``out``."""
    folder = out / files.PLOTS
    settings, usage = {}, {}
    for (lr, weight), chosen in by_setting(members).items():
        train = _aligned([_losses(records[k]) for k in chosen])  # steps, (seeds, steps)
        test = _aligned([_losses(records[k], "test") for k in chosen])  # evaluated epochs, (seeds, epochs)
        settings[f"lr {number(lr)}, weight {number(weight)}"] = (train, test)
        usage[f"lr {number(lr)}, weight {number(weight)}"] = _usage([latents[k] for k in chosen])
    made = [
        plots.ensemble_losses(settings, steps, folder / "losses.png"),
        plots.latent_usage(usage, ACTIVE_THRESHOLD, folder / "latent_usage.png"),
    ]
    if len({m.config.reconstruction_weight for m in members}) > 1:
        points = [(m.config.reconstruction_weight, f["kl"], f["reconstruction"]) for m, f in zip(members, finals)]
        made.append(plots.rate_distortion(points, folder / "rate_distortion.png"))
    return [str(p.relative_to(out)) for p in made]


def finish_run(out: Path, paths: list[Path], trainer, dataset, state, keys, records, timing: dict, lists) -> dict:
    """Each member's plots and ``summary.json`` in its folder ``paths[k]``, and for an ensemble (``lists``) its own
    in ``out`` (process 0 writes them); returns the summary in ``out``."""
    setup = trainer.setup
    members, seconds = list(setup.members), timing["train_seconds"]
    shared = {
        "epochs_completed": None,
        "steps": int(to_host(state.step)[0]),
        "train_seconds": seconds,
        "eval_seconds": timing["eval_seconds"],
        "compile_seconds": timing["compile_seconds"],
        "steps_per_dispatch": trainer.chunk_steps,
        "traces": timing["traces"],
        **setup.describe_backend(),
        "device": device(),
        "devices": describe(setup.mesh),
        "versions": versions(),
    }
    plot_keys = to_host(keys.eval)
    summaries, member_params = [], setup.unstack(state.params)
    for k, (member, path, member_records) in enumerate(zip(members, paths, records)):
        last_epoch, test = final_test(member_records)
        summary = {
            "config": member.config.to_json(),
            "data": {"source": dataset.source, "train_images": len(dataset.train), "test_images": len(dataset.test)},
            **shared,
            "epochs_completed": last_epoch,
            "final_train": epoch_train_means(member_records).get(last_epoch),
            "final_test": test,
            "images_per_second": timing["trained_images"] / seconds if seconds > 0 else None,
        }
        if is_primary():
            params = to_host(member_params[k])
            means, log_vars = inference.encode_posterior(setup.model, params, dataset.test.images)
            summary["latent"] = latent_diagnostics(means, log_vars, member.config.seed)
            run = (setup.model, params, dataset, member_records, trainer.steps_per_epoch)
            summary["plots"] = write_plots(path, *run, plot_keys[k], means, summary["latent"])
            files.write_json(path / files.SUMMARY, summary)
        summaries.append(summary)
    if lists is None:
        return summaries[0]
    results = [{"final_train": s["final_train"], "final_test": s["final_test"]} for s in summaries]
    if is_primary():
        for result, member_summary in zip(results, summaries):
            result["latent"] = {key: member_summary["latent"][key] for key in LATENT_FIGURES}
    summary = {
        "members": [
            {"name": m.name, **m.values(), "folder": f"{files.MEMBERS}/{m.name}", **r} for m, r in zip(members, results)
        ],
        "settings": summarize_settings(members, results, METRIC_NAMES + LATENT_FIGURES),
        "lists": lists,
        "config": {k: v for k, v in setup.config.to_json().items() if k not in lists},
        **shared,
        "epochs_completed": summaries[0]["epochs_completed"],
        "member_images_per_second": timing["trained_images"] * len(members) / seconds if seconds > 0 else None,
    }
    if is_primary():
        finals = [r["final_test"] for r in results]
        latents = [s["latent"] for s in summaries]
        summary["plots"] = write_ensemble_plots(out, members, records, finals, trainer.steps_per_epoch, latents)
        files.write_json(out / files.SUMMARY, summary)
    return summary

"""An ensemble's own report: ``OUT/summary.json`` (every member's final results, the mean and standard deviation
over seeds of each setting, member-images per second) and ``OUT/plots/`` (each setting's losses as a mean with
a band over seeds; the rate-distortion picture when the reconstruction weight is swept). Each member's own
report is the single run's (``jaxvae.run.report``), in its folder.

The standard deviation is the sample one (n - 1), over the seeds of a setting; ``null`` for a single seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxvae.devices import describe
from jaxvae.run import files, plots
from jaxvae.run.distributed import is_primary
from jaxvae.run.members import Member, number
from jaxvae.run.report import device, versions
from jaxvae.train_step import METRIC_NAMES


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


def setting_label(setting: tuple) -> str:
    lr, weight = setting
    return f"lr {number(lr)}, weight {number(weight)}"


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


def _curves(records: list[dict]) -> tuple[list, list]:
    train = [r["loss"] if r["loss"] is not None else np.nan for r in records if "split" not in r]
    test = [r["loss"] if r["loss"] is not None else np.nan for r in records if r.get("split") == "test"]
    return train, test


def write_plots(out: Path, members: list[Member], records: list[list[dict]], finals: list[dict], steps: int):
    """The ensemble's pictures; returns their paths relative to ``out``."""
    folder = out / files.PLOTS
    curves = [_curves(r) for r in records]
    settings = {}
    for setting, chosen in by_setting(members).items():
        train = np.array([curves[k][0] for k in chosen], np.float64)  # (seeds, steps)
        test = np.array([curves[k][1] for k in chosen], np.float64)  # (seeds, evaluated epochs)
        settings[setting_label(setting)] = (train, test)
    made = [plots.ensemble_losses(settings, steps, folder / "losses.png")]
    if len({m.config.reconstruction_weight for m in members}) > 1:
        points = [(m.config.reconstruction_weight, f["kl"], f["reconstruction"]) for m, f in zip(members, finals)]
        made.append(plots.rate_distortion(points, folder / "rate_distortion.png"))
    return [str(p.relative_to(out)) for p in made]


def finish_ensemble(out: Path, setup, lists: dict, summaries: list[dict], records, timing: dict, steps: int) -> dict:
    """``OUT/summary.json`` and ``OUT/plots/`` (process 0 writes them) from the members' summaries and records;
    returns the summary."""
    members = list(setup.members)
    results = [{"final_train": s["final_train"], "final_test": s["final_test"]} for s in summaries]
    seconds = timing["train_seconds"]
    member_images = timing["trained_images"] * len(members)
    shared = {k: v for k, v in setup.config.to_json().items() if k not in lists}
    summary = {
        "members": [
            {"name": m.name, **m.values(), "folder": f"{files.MEMBERS}/{m.name}", **r} for m, r in zip(members, results)
        ],
        "settings": summarize_settings(members, results),
        "lists": lists,
        "config": shared,
        "epochs_completed": summaries[0]["epochs_completed"],
        "steps": summaries[0]["steps"],
        "member_images_per_second": member_images / seconds if seconds > 0 else None,
        "train_seconds": seconds,
        "eval_seconds": timing["eval_seconds"],
        "compile_seconds": timing["compile_seconds"],
        "traces": timing["traces"],
        **setup.describe_backend(),
        "device": device(),
        "devices": describe(setup.mesh),
        "versions": versions(),
    }
    if is_primary():
        finals = [r["final_test"] for r in results]
        summary["plots"] = write_plots(out, members, records, finals, steps)
        files.write_json(out / files.SUMMARY, summary)
    return summary

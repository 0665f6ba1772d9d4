"""Ensembles' throughput (``jaxvae bench --members 1,4,16``), in member-images per second, in one process: K
members in jaxvae's one vmapped step against K single jaxvae runs, torch's own ensembling of K
(``torch_ref.ensemble.FuncEnsemble``, torch.func) and K eager torch_ref runs.

K runs one after another train K times the images of one run in K times its time, so a single run's images per
second is the member-images per second of "K single runs" (start-up and compilation, paid K times, left out).
Per batch size and K, every runner trains about ``--images`` images per member per repetition, the runners'
repetitions alternating; medians, warm-up excluded (``jaxvae.parity.bench``). Members 0..K-1 have seeds 0..K-1.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from jaxvae.errors import UserError
from jaxvae.parity.bench import (
    _peak_rss_mb,
    bench_config,
    checked_inputs,
    compiled_runner,
    environment,
    jax_runner,
    median_seconds,
    torch_runner,
)


def ensemble_runner(members: int, batch_size: int, args, dataset):
    """jaxvae's ensemble of ``members`` (seeds 0 .. K-1), as ``jaxvae train`` with a ``--seed`` list runs it."""
    from jaxvae.convert import params_to_torch
    from jaxvae.devices import to_host
    from jaxvae.run.ensemble import EnsembleSetup, member_slice
    from jaxvae.run.members import member_grid

    grid = member_grid(bench_config(batch_size, args), {"seed": tuple(range(members))})
    setup = EnsembleSetup.build(grid, getattr(args, "member_group", 0))
    keys = setup.member_keys()
    state = setup.fresh_state(keys)
    params = to_host(state.params)
    weights = [params_to_torch(member_slice(params, k)) for k in range(members)]
    return compiled_runner(setup, keys, state, weights, args, dataset)


def func_ensemble_runner(state_dicts: list[dict], images_nhwc, batches: np.ndarray, lr: float):
    """A closure that trains torch.func's ensemble over ``batches`` ``(K, steps, B)`` (member k on its own rows)."""
    import torch

    from torch_ref import VAE as TorchVAE
    from torch_ref.ensemble import FuncEnsemble

    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = []
    for state in state_dicts:
        model = TorchVAE(state["z_mean.weight"].shape[0]).to(device)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        models.append(model)
    ensemble = FuncEnsemble(models, lr)
    data = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))).to(device)
    rows = [torch.from_numpy(batches[:, s].astype(np.int64)).to(device) for s in range(batches.shape[1])]  # (K, B)
    latent = models[0].z_mean.out_features

    def run():
        for r in rows:
            ensemble.step(data[r], torch.randn(*r.shape, latent, device=device))
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def bench_members(batch_size: int, members: int, args, dataset) -> dict:
    """One row: the four runners at ``batch_size`` and K = ``members``, and their ratios."""
    ensemble = ensemble_runner(members, batch_size, args, dataset)
    single = jax_runner(batch_size, args, dataset)
    runners = {"jax_ensemble": ensemble.run, "jax_single": single.run}
    lr = ensemble.trainer.setup.config.lr
    if not args.no_torch:
        runners["torch_func"] = func_ensemble_runner(ensemble.start_weights, dataset.train.images, ensemble.batches, lr)
        runners["torch_eager"], _ = torch_runner(single.start_weights, dataset.train.images, single.batches, lr)
        for name in ("torch_func", "torch_eager"):
            runners[name]()  # warm-up
    seconds = median_seconds(runners, args.repeats)
    per_member = {"jax_ensemble": ensemble.steps, "jax_single": single.steps, "torch_func": ensemble.steps}
    per_member["torch_eager"] = single.steps
    width = {"jax_ensemble": members, "torch_func": members}
    rates = {
        name: per_member[name] * batch_size * width.get(name, 1) / seconds[name] for name in seconds
    }  # member-images per second (a single run's images per second for K single runs)
    row = {"batch_size": batch_size, "members": members, **{f"{n}_member_images_per_s": r for n, r in rates.items()}}
    row["ensemble_over_single"] = rates["jax_ensemble"] / rates["jax_single"]
    if "torch_func" in rates:
        row["ensemble_over_torch_func"] = rates["jax_ensemble"] / rates["torch_func"]
        row["ensemble_over_torch_eager"] = rates["jax_ensemble"] / rates["torch_eager"]
    row["member_group"] = ensemble.trainer.setup.describe_backend()["member_group"]
    row["jax_ensemble_compile_s"] = ensemble.compile_seconds
    row["peak_rss_mb"] = _peak_rss_mb()
    return row


def format_rows(env: dict, rows: list[dict]) -> str:
    lines = [
        f"device: {env['jax_device']} ({env['machine']}); versions: {json.dumps(env['versions'])}",
        "member-images per second (K single runs: one run's images per second); ratios are jaxvae's ensemble over",
        f"{'batch':>6} {'K':>3} {'group':>5} {'ensemble':>9} {'single':>8} {'torch.func':>11} {'torch':>7} "
        f"{'/single':>8} {'/torch.func':>12} {'/torch':>7}",
    ]
    for r in rows:
        torch_side = (
            f"{r['torch_func_member_images_per_s']:11.0f} {r['torch_eager_member_images_per_s']:7.0f}"
            if "torch_func_member_images_per_s" in r
            else f"{'-':>11} {'-':>7}"
        )
        ratios = (
            f"{r['ensemble_over_torch_func']:12.2f} {r['ensemble_over_torch_eager']:7.2f}"
            if "ensemble_over_torch_func" in r
            else f"{'-':>12} {'-':>7}"
        )
        lines.append(
            f"{r['batch_size']:>6} {r['members']:>3} {r['member_group']:>5} "
            f"{r['jax_ensemble_member_images_per_s']:9.0f} {r['jax_single_member_images_per_s']:8.0f} {torch_side} "
            f"{r['ensemble_over_single']:8.2f} {ratios}"
        )
    return "\n".join(lines)


def member_counts(text: str) -> list[int]:
    try:
        counts = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--members must be comma-separated integers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise UserError(f"--members must be positive integers, got {text!r}")
    return counts


def run_members_from_args(args) -> int:
    counts = member_counts(args.members)
    if args.member_group < 0:
        raise UserError(f"--member-group must be >= 0 (0: the backend's choice), got {args.member_group}")
    sizes, dataset = checked_inputs(args)
    env = environment()
    rows = []
    for batch_size in sizes:
        for members in counts:
            rows.append(bench_members(batch_size, members, args, dataset))
            if not args.json:
                print(f"batch {batch_size}, {members} members: done", file=sys.stderr, flush=True)
    print(json.dumps({"environment": env, "results": rows}, indent=2) if args.json else format_rows(env, rows))
    return 0

"""Training throughput of jaxvae against torch_ref, side by side in one process (``jaxvae bench``); its runners
(``jax_runner``, ``torch_runner``, ``median_seconds``) are the API that the benchmarks in ``scripts/`` build on.

For each batch size both frameworks start from the same weights and train on the same batches; their
repetitions alternate (jaxvae, torch, jaxvae, ...) so that machine noise hits both alike. Warm-up
(compilation, first steps) is excluded; figures are medians over the repetitions. jaxvae is timed through
the same compiled chunk that ``jaxvae train`` runs.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def torch_runner(state_dict, images_nhwc, batches: np.ndarray, lr: float):
    """A closure that trains torch_ref over ``batches`` (row = example indices) and syncs the device."""
    import torch

    from torch_ref import VAE as TorchVAE
    from torch_ref.train import train_step

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = TorchVAE(state_dict["z_mean.weight"].shape[0]).to(device)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    data = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))).to(device)
    rows = [torch.from_numpy(r.astype(np.int64)).to(device) for r in batches]

    def run():
        for r in rows:
            train_step(model, optimizer, data[r])
        if device == "cuda":
            torch.cuda.synchronize()

    return run, device


@dataclass
class JaxRun:
    """jaxvae's side of one batch size: ``run`` trains ``steps`` steps through the compiled chunk."""

    run: Callable[[], None]
    trainer: Any
    steps: int
    batches: np.ndarray  # (steps, B) example indices, the ones ``run`` trains on
    start_weights: Any  # the torch state dict of the starting parameters (a list of them for an ensemble)
    compile_seconds: float


def bench_config(batch_size: int, args):
    """The ``RunConfig`` a benchmark's flags ask for, at ``batch_size``."""
    from jaxvae.run.config import RunConfig

    return RunConfig(
        dataset=args.dataset,
        batch_size=batch_size,
        conv_impl=args.conv_impl,
        compute_dtype=args.compute_dtype,
        micro_batch=args.micro_batch,
        devices=args.devices,
        chunk_steps=args.chunk_steps,
    )


def jax_runner(batch_size: int, args, dataset) -> JaxRun:
    """jaxvae as ``jaxvae train`` runs it, warmed up: about ``args.images`` images per call of ``run``."""
    from jaxvae.convert import params_to_torch
    from jaxvae.devices import to_host
    from jaxvae.run.trainer import RunKeys, RunSetup

    setup = RunSetup.build(bench_config(batch_size, args))
    keys = RunKeys.from_seed(0)
    state = setup.fresh_state(keys.init)
    return compiled_runner(setup, keys, state, params_to_torch(to_host(state.params)), args, dataset)


def compiled_runner(setup, keys, state, start_weights, args, dataset) -> JaxRun:
    """``Trainer.compile`` of ``setup`` (a run's or an ensemble's) from ``state``, warmed up: about
    ``args.images`` images (per member) per call of ``run``."""
    from jaxvae.run.config import check_batch_splits
    from jaxvae.run.trainer import Trainer

    batch_size = setup.config.batch_size
    check_batch_splits(setup.config, setup.mesh.size)
    train_images = setup.place_train(dataset.train.images)
    test = setup.place_test(dataset.test.images[:1])  # the evaluation is compiled with the chunk; not timed here
    trainer = Trainer.compile(setup, len(dataset.train), state, train_images, test, keys)
    epoch = trainer.epoch_data(train_images, keys.data, 1)
    chunks = max(1, min(args.images // batch_size, trainer.steps_per_epoch) // trainer.chunk_steps)

    def run():
        nonlocal state
        for c in range(chunks):
            state, metrics = trainer.run_chunk(state, epoch, c * trainer.chunk_steps, keys)
        jax.block_until_ready(metrics)

    run()  # warm-up
    steps = chunks * trainer.chunk_steps
    batches = np.asarray(trainer.epoch_order(keys.data, 1))[..., :steps, :]  # (steps, B), (K, steps, B) for K members
    return JaxRun(run, trainer, steps, batches, start_weights, trainer.compile_seconds)


def median_seconds(runners: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Each runner's median seconds over ``repeats`` rounds; within a round they run in turn, so that machine
    noise hits them alike."""
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            times[name].append(_time(run))
    return {name: statistics.median(t) for name, t in times.items()}


def bench_batch_size(batch_size: int, args, dataset) -> dict:
    jax_run = jax_runner(batch_size, args, dataset)
    setup = jax_run.trainer.setup
    runners, device = {"jax": jax_run.run}, None
    if not args.no_torch:
        runners["torch"], device = torch_runner(
            jax_run.start_weights, dataset.train.images, jax_run.batches, setup.config.lr
        )
        runners["torch"]()  # warm-up
    seconds = median_seconds(runners, args.repeats)
    images_done = jax_run.steps * batch_size
    jax_rate = images_done / seconds["jax"]
    result = {
        "batch_size": batch_size,
        "steps_per_repeat": jax_run.steps,
        "steps_per_dispatch": jax_run.trainer.chunk_steps,
        "jax_images_per_s": jax_rate,
        "jax_compile_s": jax_run.compile_seconds,
        **setup.describe_backend(),
        "devices": setup.mesh.size,
    }
    if "torch" in seconds:
        torch_rate = images_done / seconds["torch"]
        result.update(
            {"torch_images_per_s": torch_rate, "ratio_jax_over_torch": jax_rate / torch_rate, "torch_device": device}
        )
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


def environment() -> dict:
    from jaxvae.run.report import versions

    info = {
        "jax_device": str(jax.devices()[0]),
        "machine": platform.processor() or platform.machine(),
        "versions": versions(),
    }
    try:
        import torch

        info["versions"]["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def format_results(env: dict, results: list[dict]) -> str:
    lines = [
        f"device: {env['jax_device']} ({env['machine']}); versions: {json.dumps(env['versions'])}",
        f"{'batch':>6} {'devices':>8} {'jaxvae img/s':>13} {'torch img/s':>12} {'ratio':>7} {'compile s':>10} "
        f"{'peak RSS MB':>12}",
    ]
    for r in results:
        torch_rate = f"{r['torch_images_per_s']:12.0f}" if "torch_images_per_s" in r else f"{'-':>12}"
        ratio = f"{r['ratio_jax_over_torch']:7.2f}" if "ratio_jax_over_torch" in r else f"{'-':>7}"
        lines.append(
            f"{r['batch_size']:>6} {r['devices']:>8} {r['jax_images_per_s']:13.0f} {torch_rate} {ratio} "
            f"{r['jax_compile_s']:10.1f} {r['peak_rss_mb']:12.0f}"
        )
    return "\n".join(lines)


def checked_inputs(args) -> tuple[list[int], Any]:
    """The batch sizes and the dataset of a benchmark's flags; a ``UserError`` for a bad value."""
    from jaxvae.data import load_dataset
    from jaxvae.errors import UserError
    from jaxvae.run.config import RunConfig, check_flags

    try:
        sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}") from None
    if not sizes or min(sizes) < 1 or args.repeats < 1 or args.images < 1:
        raise UserError("--batch-sizes, --repeats and --images must be positive")
    check_flags(
        RunConfig(
            dataset=args.dataset,
            conv_impl=args.conv_impl,
            compute_dtype=args.compute_dtype,
            micro_batch=args.micro_batch,
            devices=args.devices,
        )
    )
    dataset = load_dataset(args.dataset, args.data_dir)
    if max(sizes) > len(dataset.train):
        raise UserError(f"batch size {max(sizes)} is larger than the training split ({len(dataset.train)})")
    return sizes, dataset


def run_from_args(args) -> int:
    sizes, dataset = checked_inputs(args)
    env = environment()
    results = []
    for b in sizes:
        results.append(bench_batch_size(b, args, dataset))
        if not args.json:
            print(f"batch {b}: done", file=sys.stderr, flush=True)
    print(json.dumps({"environment": env, "results": results}, indent=2) if args.json else format_results(env, results))
    return 0

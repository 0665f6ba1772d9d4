"""Training throughput of jaxvae against torch_ref, side by side in one process (``jaxvae bench``).

Per batch size and ensemble size K (``--members``), in member-images per second: jaxvae's run of K members as
``jaxvae train`` runs it and K torch_ref runs (eager, or as ``--torch-modes`` says: also under bfloat16 autocast,
through torch.compile); for K > 1 also one jaxvae run (K runs one after another train K times the images in K times
the time; their start-ups and compilations are left out, in their favour) and torch.func's ensemble of the K models
(``torch_ref.ensemble``). Members have seeds 0..K-1; every runner starts from their weights and trains on their
batches; repetitions alternate so that machine noise hits every runner alike; warm-up (where torch.compile compiles)
is excluded, its seconds reported; figures are medians.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import jax
import numpy as np

from jaxvae.convert import params_to_torch
from jaxvae.data import load_dataset
from jaxvae.devices import choose_backend, to_host
from jaxvae.errors import UserError
from jaxvae.run.config import RunConfig, check_batch_splits, check_flags, given_twice
from jaxvae.run.engine import RunSetup, Trainer
from jaxvae.run.members import member_grid
from jaxvae.run.report import versions

TORCH_MODES = ("eager", "autocast", "compile")  # torch_ref's one-model step: eager, bfloat16 autocast, torch.compile
BENCH_FLAGS = (
    "dataset data_dir train_examples conv_impl compute_dtype micro_batch chunk_steps devices objective iw_train_samples"
).split()


class TorchCompileFailed(UserError):
    """torch.compile could not build torch_ref's step on this machine (inductor without a C++ compiler)."""


@dataclass
class JaxRun:
    """jaxvae's side of one row: ``run`` trains ``steps`` steps of every member through the compiled chunk."""

    run: Callable[[], None]
    trainer: Trainer
    steps: int
    batches: np.ndarray  # (K, steps, B) example indices: each member's first ``steps`` batches of epoch 1
    start_weights: list[dict]  # each member's starting parameters as a torch state dict


def jax_runner(members: int, batch_size: int, args, dataset) -> JaxRun:
    """jaxvae's run of ``members`` members (seeds 0 .. K-1) as ``jaxvae train`` runs it, warmed up: about
    ``args.images`` images per member per call of ``run``, in whole chunks."""
    config = RunConfig(batch_size=batch_size, **{name: getattr(args, name) for name in BENCH_FLAGS})
    setup = RunSetup.build(member_grid(config, {"seed": tuple(range(members))}), args.member_group)
    check_batch_splits(setup.config, setup.mesh.size)
    keys = setup.keys()
    state = setup.fresh_state(keys)
    weights = [params_to_torch(to_host(params)) for params in setup.unstack(state.params)]
    train = dataset.train.head(config.train_examples)
    train_images = setup.place_train(train.images)
    test = setup.place_test(dataset.test.images[:1])  # the evaluation is compiled with the chunk; not timed here
    trainer = Trainer.compile(setup, len(train), state, train_images, test, keys)
    order = trainer.order(keys.data, 1)
    chunks = max(1, min(args.images // batch_size, trainer.steps_per_epoch) // trainer.chunk_steps)

    def run():  # the loop of jaxvae train: each chunk's batches gathered, then its steps
        nonlocal state
        for c in range(chunks):
            batches = trainer.batches(train_images, order, state.step, c * trainer.chunk_steps)
            state, metrics = trainer.train_chunk(state, batches, keys)
        jax.block_until_ready(metrics)

    run()  # warm-up
    steps = chunks * trainer.chunk_steps
    return JaxRun(run, trainer, steps, np.asarray(jax.device_get(order))[:, :steps], weights)


def _torch_model(state_dict, device):
    import torch

    from torch_ref import VAE as TorchVAE

    model = TorchVAE(state_dict["z_mean.weight"].shape[0]).to(device)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    return model


def torch_runner(state_dicts, images_nhwc, batches: np.ndarray, config: RunConfig, mode="eager", backend="inductor"):
    """A closure that trains torch_ref over ``batches`` ``(K, steps, B)`` and syncs the device once: member 0 with
    ``config``'s learning rate and objective (``config.iw_train_samples`` draws per image), its forward pass and loss
    ``mode`` ``eager``, under bfloat16 ``autocast`` or through torch.``compile`` (with ``backend``); or all K members
    in torch.func's ``ensemble`` (the ELBO)."""
    import torch

    from torch_ref.ensemble import FuncEnsemble
    from torch_ref.train import model_outputs, objective_loss

    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2))).to(device)
    rows = [torch.from_numpy(batches[:, s].astype(np.int64)).to(device) for s in range(batches.shape[1])]  # (K, B)
    latent = state_dicts[0]["z_mean.weight"].shape[0]
    if mode == "ensemble":
        members = FuncEnsemble([_torch_model(s, device) for s in state_dicts], config.lr)
        step = lambda r: members.step(data[r], torch.randn(*r.shape, latent, device=device))  # noqa: E731
    else:
        model = _torch_model(state_dicts[0], device)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        noise_shape = (batches.shape[2], config.iw_train_samples, latent)  # (B, k, L)

        def loss(x, eps):  # torch.compile of the module itself would leave model_outputs' submodule calls eager
            z_mean, z_log_var, draws, z, output = model_outputs(model, x, eps)
            return objective_loss(x, output, z, draws, z_mean, z_log_var, objective=config.objective)[0]

        loss = torch.compile(loss, backend=backend) if mode == "compile" else loss

        def step(r):
            with torch.autocast(device, dtype=torch.bfloat16, enabled=mode == "autocast"):
                value = loss(data[r[0]], torch.randn(*noise_shape, device=device))
            optimizer.zero_grad()
            value.backward()
            optimizer.step()

    def run():
        for r in rows:
            step(r)
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def median_seconds(runners: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Each runner's median seconds over ``repeats`` rounds; within a round they run in turn, so that machine
    noise hits them alike."""
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bench_row(batch_size: int, members: int, args, dataset) -> dict:
    """One row: every runner at ``batch_size`` and K = ``members``, their member-images per second and the ratios
    of jaxvae's K-member run over each."""
    jax_run = jax_runner(members, batch_size, args, dataset)
    runners, config = {"jax": jax_run.run}, jax_run.trainer.setup.config
    single = jax_runner(1, batch_size, args, dataset) if members > 1 else jax_run
    if members > 1:
        runners["jax_single"] = single.run
    if not args.no_torch:
        images, backend = dataset.train.images, args.torch_compile_backend
        for mode in args.torch_modes.split(","):
            name = "torch" if mode == "eager" else f"torch_{mode}"
            runners[name] = torch_runner(single.start_weights, images, single.batches, config, mode, backend)
        if members > 1 and config.objective == "elbo":  # torch.func's ensemble trains the ELBO only
            runners["torch_func"] = torch_runner(jax_run.start_weights, images, jax_run.batches, config, "ensemble")
    warmup = {}  # torch's runners' first call: torch.compile compiles there
    for name in runners.keys() - {"jax", "jax_single"}:
        start = time.perf_counter()
        try:
            runners[name]()
        except Exception as exc:  # torch.compile's backend failing to build here (inductor without a C++ compiler)
            if name != "torch_compile":
                raise
            cause = f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
            raise TorchCompileFailed(
                f"torch.compile failed here ({cause}); try --torch-compile-backend eager"
            ) from None
        warmup[f"{name}_warmup_s"] = time.perf_counter() - start
    seconds = median_seconds(runners, args.repeats)
    width = {"jax": members, "torch_func": members}  # the others train one member
    rates = {name: jax_run.steps * batch_size * width.get(name, 1) / s for name, s in seconds.items()}
    setup = jax_run.trainer.setup
    return {
        "batch_size": batch_size,
        "members": members,
        "objective": config.objective,
        "iw_train_samples": config.iw_train_samples,
        "steps_per_repeat": jax_run.steps,
        "steps_per_dispatch": jax_run.trainer.chunk_steps,
        **{f"{name}_images_per_s": rate for name, rate in rates.items()},
        **{f"ratio_jax_over_{name}": rates["jax"] / rate for name, rate in rates.items() if name != "jax"},
        "jax_compile_s": jax_run.trainer.compile_seconds,
        **warmup,
        **setup.describe_backend(),
        "devices": setup.mesh.size,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float | None:
    """This process's peak resident memory in MB (``ru_maxrss`` counts KB on Linux, bytes on macOS); None where
    there is no ``resource`` module (Windows)."""
    try:
        import resource  # POSIX only: the CLI, which imports this module, must load on Windows too
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)


def environment() -> dict:
    info = {"jax_device": str(jax.devices()[0]), "machine": platform.processor() or platform.machine()}
    info["versions"] = versions()
    try:
        import torch  # optional: --no-torch times jaxvae alone

        info["versions"]["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


# column title -> a row's runner: jaxvae's K members, one jaxvae run, torch_ref's one-model steps, torch.func's K
RUNNERS = {"jaxvae": "jax", "single": "jax_single", "torch": "torch", "autocast": "torch_autocast"}
RUNNERS |= {"compile": "torch_compile", "torch.func": "torch_func"}


def columns(titles) -> dict:
    """Column title -> row key: the member-images per second of each runner in ``titles``, then the ratios of
    jaxvae's K members over each of the others."""
    rates = {title: f"{RUNNERS[title]}_images_per_s" for title in titles}
    return rates | {f"/{title}": f"ratio_jax_over_{RUNNERS[title]}" for title in titles if title != "jaxvae"}


def format_rows(env: dict, rows: list[dict]) -> str:
    shown = columns([t for t, name in RUNNERS.items() if any(f"{name}_images_per_s" in r for r in rows)])
    lines = [
        f"device: {env['jax_device']} ({env['machine']}); versions: {json.dumps(env['versions'])}",
        f"objective: {rows[0]['objective']}, {rows[0]['iw_train_samples']} draw(s) of z per image",
        "member-images per second (K single runs: one run's images per second); ratios: jaxvae's K members over each",
        f"{'batch':>6} {'K':>3} {'group':>5} {'devices':>7} " + " ".join(f"{c:>11}" for c in shown) + " compile s",
    ]
    for r in rows:
        cells = [
            f"{r[key]:11.{2 if c.startswith('/') else 0}f}" if key in r else f"{'-':>11}" for c, key in shown.items()
        ]
        lines.append(
            f"{r['batch_size']:>6} {r['members']:>3} {r['member_group']:>5} {r['devices']:>7} {' '.join(cells)} "
            f"{r['jax_compile_s']:9.1f}"
        )
    return "\n".join(lines)


def counts(text: str, flag: str) -> list[int]:
    """``flag``'s comma-separated positive integers, each once (``jaxvae bench``'s lists, the accelerator check's)."""
    try:
        counts = [int(s) for s in text.split(",")]  # an empty item too is refused, as jaxvae train's lists refuse it
    except ValueError:
        raise UserError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if min(counts) < 1:
        raise UserError(f"{flag} must be positive integers, got {text!r}")
    if twice := given_twice(counts):
        raise UserError(f"{flag} {text} {twice}")
    return counts


def run_from_args(args) -> int:
    sizes, members = counts(args.batch_sizes, "--batch-sizes"), counts(args.members, "--members")
    if args.repeats < 1 or args.images < 1:
        raise UserError("--repeats and --images must be positive")
    modes = args.torch_modes.split(",")
    if not set(modes) <= set(TORCH_MODES) or given_twice(modes):
        raise UserError(f"--torch-modes takes {', '.join(TORCH_MODES)}, each once, got {args.torch_modes!r}")
    if "compile" in modes and not args.no_torch:
        import torch  # optional: only torch's runners need it

        if (backend := args.torch_compile_backend) not in torch.compiler.list_backends(exclude_tags=()):
            raise UserError(f"--torch-compile-backend names no torch.compile backend (e.g. inductor): {backend!r}")
    check_flags(RunConfig(**{name: getattr(args, name) for name in BENCH_FLAGS}))
    choose_backend(args.conv_impl, args.micro_batch, args.member_group)  # its refusals before the data loads
    dataset = load_dataset(args.dataset, args.data_dir)
    images = len(dataset.train.head(args.train_examples))
    if max(sizes) > images:
        raise UserError(f"batch size {max(sizes)} is larger than the training images ({images})")
    env, rows = environment(), []
    for batch_size in sizes:
        for k in members:
            rows.append(bench_row(batch_size, k, args, dataset))
            if not args.json:
                print(f"batch {batch_size}, {k} member(s): done", file=sys.stderr, flush=True)
    print(json.dumps({"environment": env, "results": rows}, indent=2) if args.json else format_rows(env, rows))
    return 0

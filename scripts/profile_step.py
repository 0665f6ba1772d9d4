"""Where a compiled training step spends its time, by XLA operation: a ``jax.profiler`` trace, summed.

    python scripts/profile_step.py --batch 32 --micro-batch 32 --concurrent 1 --out /tmp/profile_step

Traces ``--steps`` jitted train steps on random images with XLA:CPU's per-operation trace events
(``--xla_cpu_enable_xprof_traceme=true``), then prints the milliseconds per step of the costliest operations
and of each kind of operation (``ynn_fusion`` = a matmul in YNNPACK, ``concatenate``, ``pad_slice_fusion``,
...). Tracing slows the step down, so read the shares, not the absolute times. ``--out`` keeps the trace
(open it in Perfetto or TensorBoard) with a ``summary.json`` of the tables. Map an operation to its layer
with the compiled HLO's metadata (``jax.jit(step).lower(...).compile().as_text()``).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from pathlib import Path

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np  # noqa: E402

from jaxvae.model import VAE  # noqa: E402
from jaxvae.train_step import init_state, make_optimizer, make_train_step  # noqa: E402

RUNTIME_EVENTS = re.compile(r"^\$|Thunk|Pjit|Slinky|PjRt|Parse|Execute")


def trace_steps(args, folder: Path) -> dict:
    """Per-operation microseconds summed over ``args.steps`` traced steps."""
    model, optimizer = VAE(2), make_optimizer(5e-4)
    state = init_state(model, optimizer, jax.random.PRNGKey(0))
    images = jax.numpy.asarray(np.random.default_rng(0).random((args.batch, 28, 28, 1), np.float32))
    step = jax.jit(make_train_step(model, optimizer, 1.0, args.micro_batch, args.concurrent), donate_argnums=0)
    key = jax.random.PRNGKey(1)
    for _ in range(3):  # compile and warm up outside the trace
        state, metrics = step(state, images, key)
    jax.block_until_ready(metrics)
    with jax.profiler.trace(str(folder), create_perfetto_trace=True):
        for _ in range(args.steps):
            state, metrics = step(state, images, key)
        jax.block_until_ready(metrics)
    trace = json.load(gzip.open(glob.glob(f"{folder}/**/*.trace.json.gz", recursive=True)[0]))
    totals = collections.Counter()
    for event in trace["traceEvents"] if isinstance(trace, dict) else trace:
        if event.get("ph") == "X" and "dur" in event and not RUNTIME_EVENTS.search(event["name"]):
            totals[event["name"]] += event["dur"]
    return totals


def by_kind(totals: collections.Counter) -> collections.Counter:
    kinds = collections.Counter()
    for name, micros in totals.items():
        kinds[re.sub(r"\.\d+$", "", name)] += micros
    return kinds


def table(counter: collections.Counter, steps: int, rows: int) -> list[dict]:
    whole = sum(counter.values())
    return [
        {"name": name, "ms_per_step": micros / steps / 1e3, "share": micros / whole}
        for name, micros in counter.most_common(rows)
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--micro-batch", type=int, default=16, help="0: the whole batch at once")
    p.add_argument("--concurrent", type=int, default=2, help="micro-batches side by side per scan iteration")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--out", type=Path, default=None, help="keep the trace and a summary.json here (a new folder)")
    args = p.parse_args(argv)
    if args.out is not None and args.out.exists():
        p.error(f"--out {args.out} exists; choose a new folder")
    folder = args.out or Path(tempfile.mkdtemp(prefix="profile_step_"))
    totals = trace_steps(args, folder)
    result = {
        "device": str(jax.devices()[0]),
        "batch": args.batch,
        "micro_batch": args.micro_batch,
        "concurrent": args.concurrent,
        "steps": args.steps,
        "by_kind": table(by_kind(totals), args.steps, args.top),
        "top_operations": table(totals, args.steps, args.top),
    }
    for title, rows in (
        ("by kind of operation", result["by_kind"]),
        ("costliest operations", result["top_operations"]),
    ):
        print(f"{title} (ms per traced step, share of all operations):")
        for row in rows:
            print(f"  {row['ms_per_step']:8.2f}  {100 * row['share']:5.1f} %  {row['name']}")
    if args.out is not None:
        (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Do the parity verdicts move when the kernels do? ``jaxvae.parity`` under XLA and torch kernel settings.

Each setting (environment variables, and torch switches set before the comparison) runs in its own process:
one worker checks every (latent size, batch size, seed) of the grid with ``run_parity`` and prints one JSON
line per case. The table gives, per setting: cases passed, the worst relative error of each compared run
(float64 exact; jaxvae and torch in float32), the kink flips, and whether the numbers moved from the default's:
a fingerprint of every compared run's errors, which differs exactly when a setting changed which kernels ran.

    python scripts/parity_kernels.py --seeds 5 --out runs/parity_kernels
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's jaxvae, installed or not

from jaxvae.layers import CONV_IMPLS  # noqa: E402

# name -> (environment, torch switches applied in the worker before comparing)
SETTINGS = {
    "default": ({}, {}),
    "xla max ISA AVX2": ({"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}, {}),
    "xla max ISA SSE4.2": ({"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"}, {}),
    "xla no XNNPACK/YNNPACK": (
        {"XLA_FLAGS": "--xla_cpu_use_xnnpack=false --xla_cpu_experimental_ynn_fusion_type="},
        {},
    ),
    "xla oneDNN": ({"XLA_FLAGS": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"}, {}),
    "xla fast math": ({"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}, {}),
    "aten default ISA": ({"ATEN_CPU_CAPABILITY": "default"}, {}),
    "aten AVX2": ({"ATEN_CPU_CAPABILITY": "avx2"}, {}),
    "torch oneDNN off": ({}, {"mkldnn": False}),
    "torch 1 thread": ({}, {"threads": 1}),
    "all alternatives": (
        {
            "XLA_FLAGS": "--xla_cpu_max_isa=AVX2 --xla_cpu_use_xnnpack=false --xla_cpu_experimental_ynn_fusion_type=",
            "ATEN_CPU_CAPABILITY": "default",
        },
        {"mkldnn": False, "threads": 1},
    ),
}


def worker(cases: list[tuple[int, int, int]], torch_switches: dict, impls: list[str]) -> None:
    """Run ``run_parity`` for each (latent, batch, seed) and print one JSON line per case."""
    import torch

    from jaxvae.parity.check import parity_inputs, parity_weights
    from jaxvae.parity.method import run_parity
    from jaxvae.parity.report import report_json

    if "mkldnn" in torch_switches:
        torch.backends.mkldnn.enabled = torch_switches["mkldnn"]
    if "threads" in torch_switches:
        torch.set_num_threads(torch_switches["threads"])
    for latent, batch, seed in cases:
        state = parity_weights(None, latent, seed)
        x, eps = parity_inputs(batch, latent, seed)
        report = run_parity(state, x, eps, impls)
        record = report_json({"latent_dim": latent, "batch_size": batch, "seed": seed}, report)
        record["fingerprint"] = _fingerprint(report)
        record["aten_capability"] = torch.backends.cpu.get_cpu_capability()
        print(json.dumps(record), flush=True)


def _fingerprint(report) -> str:
    """A hash of every compared run's relative errors: equal exactly when the same kernels computed the same sums."""
    verdicts = report.verdicts()
    rels = [f"{r.rel:.6e}" for v in verdicts for r in v.rows]
    return hashlib.sha1(",".join(rels).encode()).hexdigest()[:8]


def run_setting(name: str, cases, timeout: int, impls: list[str]) -> list[dict]:
    env_vars, switches = SETTINGS[name]
    env = {**os.environ, **env_vars}
    command = [sys.executable, __file__, "--worker", json.dumps(cases), json.dumps(switches), json.dumps(impls)]
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).parent.parent
    )
    if done.returncode != 0:
        raise SystemExit(f"{name}: the worker failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def summarise(name: str, records: list[dict]) -> dict:
    """Worst relative error per compared run over every case and implementation; flips; fingerprints."""
    worst = {"float64 exact": 0.0, "jaxvae float32": 0.0, "torch float32": 0.0}
    flips = {"jaxvae": 0, "torch": 0}
    for r in records:
        worst["torch float32"] = max(worst["torch float32"], *(row["rel"] for row in r["torch_float32"]["rows"]))
        flips["torch"] += sum(r["torch_float32"]["kinks"]["flips"].values())
        for impl in r["impls"].values():
            worst["float64 exact"] = max(worst["float64 exact"], *(row["rel"] for row in impl["float64"]["rows"]))
            worst["jaxvae float32"] = max(worst["jaxvae float32"], *(row["rel"] for row in impl["float32"]["rows"]))
            flips["jaxvae"] += sum(impl["float32"]["kinks"]["flips"].values())
    return {
        "setting": name,
        "cases": len(records),
        "passed": sum(r["passed"] for r in records),
        "worst_rel": worst,
        "flips": flips,
        "fingerprints": sorted({r["fingerprint"] for r in records}),
        "aten_capability": records[0]["aten_capability"] if records else None,
    }


def format_rows(summaries: list[dict], baseline: set) -> str:
    lines = [
        f"{'setting':<24} {'passed':>7} {'f64 exact':>10} {'f32 jaxvae':>11} {'f32 torch':>10} "
        f"{'flips j/t':>10}  numbers"
    ]
    for s in summaries:
        w = s["worst_rel"]
        moved = "same as default" if set(s["fingerprints"]) == baseline else "moved"
        lines.append(
            f"{s['setting']:<24} {s['passed']:>3}/{s['cases']:<3} {w['float64 exact']:10.1e} "
            f"{w['jaxvae float32']:11.1e} "
            f"{w['torch float32']:10.1e} {s['flips']['jaxvae']:>5}/{s['flips']['torch']:<4}  {moved} "
            f"(aten {s['aten_capability']})"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5, help="seeds per (latent, batch) case")
    p.add_argument("--latents", default="2,16")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated names from SETTINGS")
    p.add_argument("--impls", default=",".join(CONV_IMPLS), help="conv implementations compared (default: all)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per setting")
    p.add_argument("--out", type=Path, default=None, help="folder for summary.json")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown or args.seeds < 1:
        p.error(f"unknown setting {unknown[0]!r}; choose from {list(SETTINGS)}" if unknown else "--seeds must be >= 1")
    cases = [
        (int(latent), int(b), s)
        for latent in args.latents.split(",")
        for b in args.batches.split(",")
        for s in range(args.seeds)
    ]
    summaries, started = [], time.perf_counter()
    for name in names:
        summaries.append(summarise(name, run_setting(name, cases, args.timeout, args.impls.split(","))))
        print(
            f"{name}: {summaries[-1]['passed']}/{summaries[-1]['cases']} passed "
            f"({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    baseline = set(summaries[0]["fingerprints"]) if names[0] == "default" else set()
    print(format_rows(summaries, baseline))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps({"cases": cases, "settings": summaries}, indent=2) + "\n")
    return 0 if all(s["passed"] == s["cases"] for s in summaries) else 1


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker([tuple(c) for c in json.loads(sys.argv[2])], json.loads(sys.argv[3]), json.loads(sys.argv[4]))
    else:
        sys.exit(main())

"""The parity harness over many cases: no false alarms at every seed, under every kernel setting; and how far each
deliberately wrong port lands from float64.

    python scripts/parity_sweep.py --seeds 20 --out runs/parity_sweep           # every case, the default kernels
    python scripts/parity_sweep.py --seeds 5 --settings all --cases gaussian   # every kernel setting
    python scripts/parity_sweep.py --mutants                                    # docs/parity.md's mutant tables

Each case (latent size, batch, loss, continuous or thresholded digits) runs ``jaxvae.parity.check.sweep_case`` at
seeds 0 .. N-1: torch_ref's initial weights, real test digits and noise all drawn from the seed, every convolution
implementation (``--impls``), every jaxvae verdict. Each kernel setting (environment variables, and torch switches
set before comparing) runs in a process of its own. Prints, per setting and case, the seeds passed, the worst
relative error of each compared run, the kink flips the float64 reference followed, and whether the numbers moved
from the default's (a fingerprint of every relative error: it differs exactly when other kernels ran); writes
``--out``/summary.json; exits 1 if any case failed. The suite runs a subset (parity_tests/, docs/parity.md).

``--mutants`` prints, for every mutant of ``parity_tests.mutants`` applied as the suite applies it, the worst
relative error of the float64, float32 and bfloat16 verdicts (the mutants' case: batch 8, latent 2, seed 4; the xla
form, the pad form for its own mutant) and which verdicts still passed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's jaxvae and parity_tests

from jaxvae.layers import CONV_IMPLS  # noqa: E402
from jaxvae.parity.check import parity_inputs, parity_weights, sweep_case  # noqa: E402
from jaxvae.parity.method import run_parity  # noqa: E402

# (name, latent size, batch, likelihood, thresholded digits)
CASES = [
    ("gaussian latent 2 batch 1", 2, 1, "gaussian", False),
    ("gaussian latent 2 batch 32", 2, 32, "gaussian", False),
    ("gaussian latent 16 batch 1", 16, 1, "gaussian", False),
    ("gaussian latent 16 batch 32", 16, 32, "gaussian", False),
    ("bernoulli latent 2 batch 32", 2, 32, "bernoulli", False),
    ("bernoulli latent 16 batch 8 thresholded", 16, 8, "bernoulli", True),
]
NO_XNNPACK = "--xla_cpu_use_xnnpack=false --xla_cpu_experimental_ynn_fusion_type="
SETTINGS = {  # name -> (environment, torch switches applied in the worker before comparing)
    "default": ({}, {}),
    "xla max ISA AVX2": ({"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}, {}),
    "xla max ISA SSE4.2": ({"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"}, {}),
    "xla no XNNPACK/YNNPACK": ({"XLA_FLAGS": NO_XNNPACK}, {}),
    "xla oneDNN": ({"XLA_FLAGS": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"}, {}),
    "xla fast math": ({"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"}, {}),
    "aten default ISA": ({"ATEN_CPU_CAPABILITY": "default"}, {}),
    "aten AVX2": ({"ATEN_CPU_CAPABILITY": "avx2"}, {}),
    "torch oneDNN off": ({}, {"mkldnn": False}),
    "torch 1 thread": ({}, {"threads": 1}),
    "all alternatives": (
        {"XLA_FLAGS": f"--xla_cpu_max_isa=AVX2 {NO_XNNPACK}", "ATEN_CPU_CAPABILITY": "default"},
        {"mkldnn": False, "threads": 1},
    ),
}


def worker(cases: list, seeds: int, impls: list[str], switches: dict) -> None:
    """``sweep_case`` of each case under this process's kernels: one JSON line per case."""
    import torch

    torch.backends.mkldnn.enabled = switches.get("mkldnn", torch.backends.mkldnn.enabled)
    torch.set_num_threads(switches.get("threads", torch.get_num_threads()))
    for name, latent, batch, likelihood, binary in cases:
        result = sweep_case(latent, batch, range(seeds), likelihood, binary, impls)
        print(json.dumps({"case": name, "aten": torch.backends.cpu.get_cpu_capability(), **result}), flush=True)


def run_setting(name: str, cases: list, seeds: int, impls: list[str]) -> list[dict]:
    env, switches = SETTINGS[name]
    command = [sys.executable, __file__, "--worker", json.dumps([cases, seeds, impls, switches])]
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name}: the worker failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def mutant_table() -> int:
    from _pytest.monkeypatch import MonkeyPatch

    from parity_tests.mutants import BATCH, BFLOAT16_MUTANTS, JAX_MUTANTS, LATENT, SEED, TORCH_MUTANTS

    x, eps = parity_inputs(BATCH, LATENT, SEED)
    state = parity_weights(None, LATENT, SEED)
    print(f"{'mutant':<36} {'impl':<6} {'f64':>8} {'f32':>8} {'bf16':>8}  passed")
    for mutant in TORCH_MUTANTS + JAX_MUTANTS + BFLOAT16_MUTANTS:
        impl, patch = "pad" if "pad_form" in mutant.__name__ else "xla", MonkeyPatch()
        mutant(patch)
        try:
            runs = run_parity(state, x, eps, [impl]).by_impl[impl]
        finally:
            patch.undo()
        worst = [float("inf") if v.error else max((r.rel for r in v.rows), default=float("inf")) for v in runs.values()]
        cells = " ".join(f"{w:8.1e}" for w in worst)
        print(f"{mutant.__name__:<36} {impl:<6} {cells}  {[name for name, v in runs.items() if v.passed]}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--cases", default="", help="only the cases whose name contains this text (e.g. gaussian)")
    p.add_argument("--settings", default="default", help=f"'all', or comma-separated names of: {', '.join(SETTINGS)}")
    p.add_argument("--impls", default=",".join(CONV_IMPLS), help="conv implementations compared (default: all)")
    p.add_argument("--out", type=Path, default=None, help="folder for summary.json")
    p.add_argument("--mutants", action="store_true", help="the mutant table instead")
    args = p.parse_args()
    if args.mutants:
        return mutant_table()
    names = list(SETTINGS) if args.settings == "all" else [n.strip() for n in args.settings.split(",")]
    if set(names) - set(SETTINGS) or args.seeds < 1:
        p.error(f"--settings: choose from {list(SETTINGS)}; --seeds >= 1")
    cases = [c for c in CASES if args.cases in c[0]]
    labels = ["jaxvae float64", "jaxvae float32", "jaxvae bfloat16", "torch float32"]
    print(
        f"{'setting':<24} {'case':<42} {'passed':>7} " + " ".join(f"{n[7:] if n[0] == 'j' else n:>13}" for n in labels)
    )
    results, default = {}, None
    for name in names:
        results[name] = run_setting(name, cases, args.seeds, args.impls.split(","))
        fingerprints = [r["fingerprint"] for r in results[name]]
        default = fingerprints if name == "default" else default
        for r in results[name]:
            passed = args.seeds - len({seed for seed, *_ in r["failed"]})
            worst = " ".join(f"{r['worst'].get(n, float('nan')):13.1e}" for n in labels)
            print(
                f"{name:<24} {r['case']:<42} {passed:>3}/{args.seeds:<3} {worst}  flips {r['flips']} aten {r['aten']}"
            )
        if default is not None and name != "default":
            print(f"{name}: the numbers {'are the default' + chr(39) + 's' if fingerprints == default else 'moved'}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps({"seeds": args.seeds, "settings": results}, indent=2))
    return 0 if all(not r["failed"] for rs in results.values() for r in rs) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(*json.loads(sys.argv[2]))
    else:
        sys.exit(main())

"""Does this checkout train exactly as another commit does? Runs the same ``jaxvae train`` flags under both.

    python scripts/compare_with_ref.py --ref 8da4d2c --out runs/compare

For each case (a set of ``jaxvae train`` flags; the built-in list covers both likelihoods, every binarisation,
both conv implementations, micro-batches, sparse evaluation, 2 virtual devices and an ensemble), on this machine:

- the reference commit (checked out with ``git worktree`` into ``OUT/ref-tree``) trains the case for 2 epochs,
  and for 1 epoch into a second folder;
- this checkout trains the case for 2 epochs; then it resumes the reference's 1-epoch folder to 2 epochs.

Verdicts per case (an ensemble's: per member): ``metrics.jsonl``'s training rows byte-identical to the reference's
(fresh and resumed);
its test rows within float32 rounding (1e-6 relative: the evaluation may be compiled differently; a resumed
folder also keeps the test record its first part wrote after its last epoch); and
``jaxvae evaluate`` of the reference's folder by this checkout against the reference's own, within 1e-6
(IWAE with 16 samples). Writes ``OUT/summary.json``; exits 1 if any case differs. The reference's runs are
kept in ``OUT/ref`` and reused when the script runs again with the same ``--ref``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--train-examples", "256", "--test-examples", "100", "--batch-size", "32", "--chunk-steps", "4"]
CASES = {
    "default": [],
    "bernoulli-sample": ["--likelihood", "bernoulli", "--binarize", "sample", "--latent-dim", "8"],
    "bernoulli-threshold": ["--likelihood", "bernoulli", "--binarize", "threshold", "--seed", "5"],
    "xla-whole-batch": ["--conv-impl", "xla", "--micro-batch", "32", "--reconstruction-weight", "0.5"],
    "matmul-micro-8": ["--conv-impl", "matmul", "--micro-batch", "8", "--lr", "1e-3"],
    "eval-every-2": ["--eval-every", "2", "--batch-size", "64"],
    "two-devices": ["--devices", "2"],
    "ensemble": ["--seed", "3,4", "--lr", "5e-4,2e-3", "--reconstruction-weight", "1,0.25"],
}
DEVICES_ENV = {"two-devices": "--xla_force_host_platform_device_count=2"}
EVALUATE = ["--iw-samples", "16", "--test-examples", "40"]


def jaxvae(tree: Path | None, case: str, *args) -> subprocess.CompletedProcess:
    """``jaxvae ARGS`` run in ``tree`` (None: this checkout), whose jaxvae comes first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree or ROOT)}
    env["XLA_FLAGS"] = DEVICES_ENV.get(case, "--xla_force_host_platform_device_count=1")
    entry = "jaxvae" if ((tree or ROOT) / "jaxvae" / "__main__.py").exists() else "jaxvae.cli"  # the older trees'
    command = [sys.executable, "-m", entry, *map(str, args)]
    result = subprocess.run(command, cwd=tree or ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{case}: jaxvae {' '.join(map(str, args))} failed:\n{result.stderr[-3000:]}")
    return result


def logs(folder: Path) -> list[Path]:
    """A run folder's metrics.jsonl, or each member's."""
    return sorted(folder.glob("members/*/metrics.jsonl")) or [folder / "metrics.jsonl"]


def rows(log: Path) -> tuple[list[str], list[dict]]:
    lines = log.read_text().splitlines()
    return [line for line in lines if '"split"' not in line], [json.loads(line) for line in lines if '"split"' in line]


def same_rows(ref_two: Path, ref_one: Path, new_two: Path, resumed: Path) -> dict:
    """One run's (or member's) verdicts: training rows byte-identical, test rows close, fresh and resumed."""
    (ref_train, ref_test), (new_train, new_test) = rows(ref_two), rows(new_two)
    resumed_train, resumed_test = rows(resumed)
    # a resumed folder keeps the test record of its first part's last epoch, which that part evaluated
    first_part = rows(ref_one)[1]
    done = max((t["epoch"] for t in first_part), default=0)
    resumed_ref_test = first_part + [r for r in ref_test if r["epoch"] > done]
    return {
        "train_rows_identical": new_train == ref_train and len(ref_train) > 0,
        "resumed_train_rows_identical": resumed_train == ref_train,
        "test_rows_close": len(new_test) == len(ref_test) and all(map(close, new_test, ref_test)),
        "resumed_test_rows_close": len(resumed_test) == len(resumed_ref_test)
        and all(map(close, resumed_test, resumed_ref_test)),
    }


def close(a: dict, b: dict, rtol: float = 1e-6) -> bool:
    if "members" in b:  # an ensemble's evaluation: every member's figures
        return a["members"].keys() == b["members"].keys() and all(
            close(a["members"][k], v) for k, v in b["members"].items()
        )
    keys = [k for k in ("loss", "reconstruction", "kl", "reconstruction_at_mean", "elbo_nats", "log_px_nats") if k in b]
    return all(abs(a[k] - b[k]) <= rtol * abs(b[k]) for k in keys)


def reference_runs(ref_tree: Path, out: Path, case: str, flags: list[str]) -> dict:
    folder = out / "ref" / case
    saved = folder / "evaluate.json"
    if not (folder / "two" / "summary.json").exists():
        shutil.rmtree(folder, ignore_errors=True)
        jaxvae(ref_tree, case, "train", "--epochs", "2", "--out", folder / "two", *SMALL, *flags)
        jaxvae(ref_tree, case, "train", "--epochs", "1", "--out", folder / "one", *SMALL, *flags)
        saved.write_text(jaxvae(ref_tree, case, "evaluate", "--run", folder / "two", *EVALUATE).stdout)
    return {"two": folder / "two", "one": folder / "one", "evaluate": json.loads(saved.read_text())}


def compare_case(ref_tree: Path, out: Path, case: str, flags: list[str]) -> dict:
    ref = reference_runs(ref_tree, out, case, flags)
    new = out / "new" / case
    shutil.rmtree(new, ignore_errors=True)
    jaxvae(None, case, "train", "--epochs", "2", "--out", new / "two", *SMALL, *flags)
    shutil.copytree(ref["one"], new / "resumed")
    jaxvae(None, case, "train", "--epochs", "2", "--resume", "--out", new / "resumed", *SMALL, *flags)
    evaluated = json.loads(jaxvae(None, case, "evaluate", "--run", ref["two"], *EVALUATE).stdout)
    runs = [logs(f) for f in (ref["two"], ref["one"], new / "two", new / "resumed")]
    verdicts = [same_rows(*member) for member in zip(*runs)]
    result = {"flags": flags, "runs": len(verdicts), **{k: all(v[k] for v in verdicts) for k in verdicts[0]}}
    result["evaluate_close"] = close(evaluated, ref["evaluate"])
    result["passed"] = all(v for k, v in result.items() if k not in ("flags", "runs"))
    return result


def worktree(ref: str, out: Path) -> Path:
    tree = out / "ref-tree"
    verify = ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"]
    found = subprocess.run(verify, cwd=ROOT, capture_output=True, text=True)
    if found.returncode != 0:
        raise SystemExit(f"compare_with_ref.py: --ref {ref} is not a commit of this repository")
    commit = found.stdout.strip()
    marker = out / "ref" / "commit"
    if not tree.exists() or not marker.exists() or marker.read_text() != commit:
        shutil.rmtree(out / "ref", ignore_errors=True)
        subprocess.run(["git", "worktree", "remove", "--force", tree], cwd=ROOT, capture_output=True)
        shutil.rmtree(tree, ignore_errors=True)
        subprocess.run(["git", "worktree", "add", "--detach", tree, commit], cwd=ROOT, check=True, capture_output=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(commit)
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True, help="the commit to compare with (e.g. main before a change)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    parser.add_argument("--ref-only", action="store_true", help="only train the reference's runs (to compare later)")
    args = parser.parse_args()
    cases = args.cases.split(",")
    if set(cases) - CASES.keys():
        parser.error(f"--cases takes names from {', '.join(CASES)}")
    out = args.out.resolve()
    tree = worktree(args.ref, out)
    results = {}
    for case in cases:
        if args.ref_only:
            reference_runs(tree, out, case, CASES[case])
            print(f"{case}: reference trained", flush=True)
            continue
        results[case] = compare_case(tree, out, case, CASES[case])
        print(f"{case}: {'same' if results[case]['passed'] else 'DIFFERENT'} {json.dumps(results[case])}", flush=True)
    if args.ref_only:
        return 0
    (out / "summary.json").write_text(
        json.dumps({"ref": (out / "ref" / "commit").read_text(), "cases": results}, indent=2)
    )
    passed = all(r["passed"] for r in results.values())
    print("all cases train as the reference does" if passed else "SOME CASES DIFFER")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

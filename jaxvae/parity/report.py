"""``jaxvae parity``'s output: per conv implementation, one table with both verdicts per tensor; or JSON."""

from __future__ import annotations

from dataclasses import asdict

from jaxvae.parity.method import BFLOAT16, EXACT, FLOAT32, RUNS, ParityReport, Verdict, kink_names

_COLUMN = {"float64": "f64 exact", "float32": "f32 jaxvae", "bfloat16": "bf16 jaxvae", "torch": "f32 torch"}


def tolerance_line() -> str:
    return (
        f"tolerances, max|difference| / max|float64 reference| per tensor: float64 exact {EXACT.activations:.0e}; "
        f"float32 activations {FLOAT32.activations:.0e}, loss {FLOAT32.loss:.0e}, gradients {FLOAT32.grads:.0e}; "
        f"bfloat16 (reference with bfloat16 operands) activations {BFLOAT16.activations:.0e}, loss "
        f"{BFLOAT16.loss:.0e}, gradients {BFLOAT16.grads:.1e}"
    )


def _cell(verdict: Verdict, name: str) -> str:
    row = next((r for r in verdict.rows if r.name == name), None)
    if row is None:
        return f"{'-':>10}"
    return f"{row.rel:10.1e}" + ("" if row.passed else "!")


def _failed_columns(columns: list[str], verdicts: list[Verdict], name: str) -> list[str]:
    failed = []
    for column, v in zip(columns, verdicts):
        row = next((r for r in v.rows if r.name == name), None)
        if row is not None and not row.passed:
            failed.append(column)
    return failed


def _kink_cells(single: Verdict, torch32: Verdict, name: str) -> str:
    if name not in kink_names():
        return f"{'':>6} {'':>7}"
    flips = f"{single.kinks.flips.get(name, 0)}/{torch32.kinks.flips.get(name, 0)}"
    return f"{single.kinks.near.get(name, 0):>6} {flips:>7}"


def format_table(impl: str, report: ParityReport) -> str:
    """One row per tensor: the relative error of each compared run, the kink zone and flips, the result."""
    runs = report.by_impl[impl]
    columns = [_COLUMN[name] for name in runs] + [_COLUMN["torch"]]
    verdicts = [*runs.values(), report.torch_float32]
    single = runs.get("float32", report.torch_float32)
    width = 11 * len(verdicts) - 1
    lines = [
        f"[{impl}]",
        f"  {'tensor':<24} {'shape':<14} {' '.join(f'{c:>10}' for c in columns)} {'near':>6} {'flips':>7}  result",
        f"  {'':<24} {'':<14} {'rel. error against float64':^{width}} {'kink':>6} {'j/t':>7}",
    ]
    names = [r.name for r in max(verdicts, key=lambda v: len(v.rows)).rows]
    for name in names:
        shape = "x".join(str(d) for d in next(r.shape for v in verdicts for r in v.rows if r.name == name)) or "1"
        failed = _failed_columns(columns, verdicts, name)
        result = "pass" if not failed else "FAIL (" + ", ".join(failed) + ")"
        cells = " ".join(_cell(v, name) for v in verdicts)
        lines.append(f"  {name:<24} {shape:<14} {cells} {_kink_cells(single, report.torch_float32, name)}  {result}")
    lines += [f"  {v.label}: ERROR {v.error}" for v in verdicts if v.error]
    lines += _kink_summary(impl, runs, report.torch_float32)
    return "\n".join(lines)


def _kink_summary(impl: str, runs: dict[str, Verdict], torch32: Verdict) -> list[str]:
    lines = []
    if "float32" in runs:
        single = runs["float32"]
        lines.append(
            f"  [{impl}] float32: {single.kinks.total_near()} LeakyReLU pre-activations lie within float32 rounding "
            f"({FLOAT32.activations:.0e} x max) of the kink; jaxvae took the other branch at "
            f"{single.kinks.total_flips()}, torch at {torch32.kinks.total_flips()}, and the float64 reference "
            "follows each there."
        )
    if "float64" in runs:
        exact = runs["float64"]
        lines.append(
            f"  [{impl}] float64: {exact.kinks.total_near()} within {EXACT.activations:.0e} x max of the kink, "
            f"{exact.kinks.total_flips()} flipped."
        )
    if "bfloat16" in runs:
        half = runs["bfloat16"]
        rounded = sum(n for key, n in half.kinks.flips.items() if key.endswith(" input"))
        lines.append(
            f"  [{impl}] bfloat16: the reference rounds every layer's weight and input to bfloat16; at {rounded} "
            "inputs within float32 rounding of a bfloat16 tie it takes jaxvae's rounding."
        )
    return lines


def format_report(header: str, report: ParityReport) -> str:
    parts = [header, tolerance_line()]
    parts += [format_table(impl, report) for impl in report.by_impl]
    parts.append("all passed" if report.passed else "SOME FAILED")
    return "\n".join(parts)


def verdict_json(v: Verdict) -> dict:
    rows = [
        {
            "name": r.name,
            "shape": list(r.shape),
            "max_abs": r.max_abs,
            "rel": r.rel,
            "tolerance": r.tolerance,
            "passed": r.passed,
        }
        for r in v.rows
    ]
    return {
        "label": v.label,
        "passed": v.passed,
        "error": v.error,
        "rows": rows,
        "kinks": {"near": v.kinks.near, "flips": v.kinks.flips},
    }


def report_json(header: dict, report: ParityReport) -> dict:
    return {
        **header,
        "passed": report.passed,
        "torch_device": report.torch_device,
        "tolerances": {name: asdict(tol) for name, (_, _, tol) in RUNS.items()},
        "torch_float32": verdict_json(report.torch_float32),
        "impls": {impl: {name: verdict_json(v) for name, v in runs.items()} for impl, runs in report.by_impl.items()},
    }

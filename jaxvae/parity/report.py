"""``jaxvae parity``'s output: per conv implementation, one table with both verdicts per tensor; or JSON."""

from __future__ import annotations

from dataclasses import asdict

from jaxvae.parity.method import EXACT, FLOAT32, ParityReport, Verdict, kink_names

_COLUMNS = ("f64 exact", "f32 jaxvae", "f32 torch")


def tolerance_line() -> str:
    return (
        f"tolerances, max|difference| / max|float64 reference| per tensor: float64 exact {EXACT.activations:.0e}; "
        f"float32 activations {FLOAT32.activations:.0e}, loss {FLOAT32.loss:.0e}, gradients {FLOAT32.grads:.0e}"
    )


def _cell(verdict: Verdict, name: str) -> str:
    row = next((r for r in verdict.rows if r.name == name), None)
    if row is None:
        return f"{'-':>10}"
    return f"{row.rel:10.1e}" + ("" if row.passed else "!")


def _failed_columns(verdicts: list[Verdict], name: str) -> list[str]:
    failed = []
    for column, v in zip(_COLUMNS, verdicts):
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
    exact, single = report.by_impl[impl]
    verdicts = [exact, single, report.torch_float32]
    lines = [
        f"[{impl}]",
        f"  {'tensor':<24} {'shape':<14} {_COLUMNS[0]:>10} {_COLUMNS[1]:>10} {_COLUMNS[2]:>10} {'near':>6} "
        f"{'flips':>7}  result",
        f"  {'':<24} {'':<14} {'rel. error against float64':^32} {'kink':>6} {'j/t':>7}",
    ]
    names = [r.name for r in max(verdicts, key=lambda v: len(v.rows)).rows]
    for name in names:
        shape = "x".join(str(d) for d in next(r.shape for v in verdicts for r in v.rows if r.name == name)) or "1"
        failed = _failed_columns(verdicts, name)
        result = "pass" if not failed else "FAIL (" + ", ".join(failed) + ")"
        cells = " ".join(_cell(v, name) for v in verdicts)
        lines.append(f"  {name:<24} {shape:<14} {cells} {_kink_cells(single, report.torch_float32, name)}  {result}")
    lines += [f"  {v.label}: ERROR {v.error}" for v in verdicts if v.error]
    lines.append(_kink_summary(impl, exact, single, report.torch_float32))
    return "\n".join(lines)


def _kink_summary(impl: str, exact: Verdict, single: Verdict, torch32: Verdict) -> str:
    return (
        f"  [{impl}] float32: {single.kinks.total_near()} LeakyReLU pre-activations lie within float32 rounding "
        f"({FLOAT32.activations:.0e} x max) of the kink; jaxvae took the other branch at {single.kinks.total_flips()}, "
        f"torch at {torch32.kinks.total_flips()}, and the float64 reference follows each there. "
        f"float64: {exact.kinks.total_near()} within {EXACT.activations:.0e} x max, "
        f"{exact.kinks.total_flips()} flipped."
    )


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
        "tolerances": {"float64": asdict(EXACT), "float32": asdict(FLOAT32)},
        "torch_float32": verdict_json(report.torch_float32),
        "impls": {
            impl: {"float64": verdict_json(e), "float32": verdict_json(s)} for impl, (e, s) in report.by_impl.items()
        },
    }

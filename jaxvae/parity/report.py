"""``jaxvae parity``'s output: per conv implementation, one table with every verdict per tensor; or JSON."""

from __future__ import annotations

from dataclasses import asdict

from jaxvae.parity.capture import KINKS
from jaxvae.parity.method import BFLOAT16, EXACT, FLOAT32, RUNS, ParityReport, Verdict

COLUMNS = {"float64": "f64 exact", "float32": "f32 jaxvae", "bfloat16": "bf16 jaxvae", "torch": "f32 torch"}
CELL = max(map(len, COLUMNS.values()))  # a column of figures is as wide as the widest heading


def tolerance_line() -> str:
    return (
        f"tolerances, max|difference| / max|float64 reference| per tensor: float64 exact {EXACT.activations:.0e}; "
        f"float32 activations {FLOAT32.activations:.0e}, loss {FLOAT32.loss:.0e}, gradients {FLOAT32.grads:.0e}; "
        f"bfloat16 (reference with bfloat16 operands) activations {BFLOAT16.activations:.0e}, loss "
        f"{BFLOAT16.loss:.0e}, gradients {BFLOAT16.grads:.1e}"
    )


def format_table(impl: str, report: ParityReport) -> str:
    """One row per tensor: the relative error of each compared run ('!': over its bound), the kink zone and the
    flips of jaxvae / torch in float32, the result; then what the kink zones held."""
    runs, torch32 = report.by_impl[impl], report.torch_float32
    verdicts = {COLUMNS[name]: v for name, v in runs.items()} | {COLUMNS["torch"]: torch32}
    rows = {column: {r.name: r for r in v.rows} for column, v in verdicts.items()}
    single, width = runs.get("float32", torch32), (CELL + 1) * len(verdicts) - 1
    lines = [
        f"[{impl}]",
        f"  {'tensor':<24} {'shape':<14} {' '.join(f'{c:>{CELL}}' for c in verdicts)} {'near':>6} {'flips':>7}  result",
        f"  {'':<24} {'':<14} {'rel. error against float64':^{width}} {'kink':>6} {'j/t':>7}",
    ]
    for name, row in max(rows.values(), key=len).items():
        cells = {column: rows[column].get(name) for column in verdicts}
        failed = [column for column, r in cells.items() if r is not None and not r.passed]
        figures = ("-" if r is None else f"{r.rel:.1e}" + ("" if r.passed else "!") for r in cells.values())
        text = " ".join(f"{figure:>{CELL}}" for figure in figures)
        flips = f"{single.kinks.flips.get(name, 0)}/{torch32.kinks.flips.get(name, 0)}"
        kink = f"{single.kinks.near.get(name, 0):>6} {flips:>7}" if name in KINKS.values() else " " * 14
        result = f"FAIL ({', '.join(failed)})" if failed else "pass"
        lines.append(f"  {name:<24} {'x'.join(map(str, row.shape)) or '1':<14} {text} {kink}  {result}")
    lines += [f"  {v.label}: ERROR {v.error}" for v in verdicts.values() if v.error]
    if "float32" in runs:
        lines.append(
            f"  [{impl}] float32: {single.kinks.total_near()} LeakyReLU pre-activations lie within float32 rounding "
            f"({FLOAT32.activations:.0e} x max) of the kink; jaxvae took the other branch at "
            f"{single.kinks.total_flips()}, torch at {torch32.kinks.total_flips()}, and the float64 reference "
            "follows each there."
        )
    if "float64" in runs:
        exact = runs["float64"].kinks
        within = f"{EXACT.activations:.0e} x max of the kink"
        lines.append(f"  [{impl}] float64: {exact.total_near()} within {within}, {exact.total_flips()} flipped.")
    if "bfloat16" in runs:
        rounded = sum(n for key, n in runs["bfloat16"].kinks.flips.items() if key.endswith(" input"))
        lines.append(
            f"  [{impl}] bfloat16: the reference rounds every layer's weight and input to bfloat16; at {rounded} "
            "inputs within float32 rounding of a bfloat16 tie it takes jaxvae's rounding."
        )
    return "\n".join(lines)


def format_report(header: str, report: ParityReport) -> str:
    tables = [format_table(impl, report) for impl in report.by_impl]
    return "\n".join([header, tolerance_line(), *tables, "all passed" if report.passed else "SOME FAILED"])


def verdict_json(v: Verdict) -> dict:
    rows = [{**asdict(r), "shape": list(r.shape), "passed": r.passed} for r in v.rows]
    return {"label": v.label, "passed": v.passed, "error": v.error, "rows": rows, "kinks": asdict(v.kinks)}


def report_json(header: dict, report: ParityReport) -> dict:
    return {
        **header,
        "passed": report.passed,
        "torch_device": report.torch_device,
        "tolerances": {name: asdict(tol) for name, (_, _, tol) in RUNS.items()},
        "torch_float32": verdict_json(report.torch_float32),
        "impls": {impl: {name: verdict_json(v) for name, v in runs.items()} for impl, runs in report.by_impl.items()},
    }

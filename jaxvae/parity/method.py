"""The parity method: jaxvae against torch_ref, with float64 as the arbiter (docs/parity.md gives the grounds).

From the same weights, images and reparameterisation noise, each compared run is held to torch_ref in float64,
tensor by tensor (every activation, both heads, the loss, every parameter's gradient), ``max|a - b| <= tol *
max|b|`` with ``b`` the float64 reference:

- **float64 exact**: jaxvae in float64. Both frameworks do the same math to ~1e-16 rounding (measured <= 1e-14), so
  any semantic difference fails ``EXACT_RTOL`` by orders of magnitude.
- **float32, as users run it**: jaxvae in float32 (and torch_ref in float32 beside it as a yardstick), each held to
  absolute float32 bounds against float64, not to the other's error.
- **bfloat16 compute dtype**: against a float64 reference that rounds the same operands to bfloat16 (every layer's
  weight and input; ``jaxvae.parity.torch_side``), exact otherwise: activations and loss meet the float32 bounds;
  the gradients, whose backward pass rounds each layer's cotangent and input gradient (u = 2^-8, at most 22
  roundings on the longest path; measured at most 4.1u), are held to 12u.

A *kink flip* (a LeakyReLU pre-activation within rounding of 0 landing on the other side, which changes that
element's gradient by 99 %) is what bounds cannot cover: so the float64 reference of each compared run takes that
run's branch wherever its own pre-activation lies within the run's forward tolerance of the kink, and is exact
math otherwise; the zone and the flips are counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from jaxvae.layers import CONV_IMPLS
from jaxvae.parity.capture import Capture, KinkStats
from jaxvae.parity.jax_side import jax_capture

EXACT_RTOL = 1e-10  # float64 against float64: measured <= 1e-14; a 1e-6 change in a weight moves its layer ~1e-6
F32_ACTIVATION_RTOL = 2e-5  # float32 activations and heads against float64
F32_LOSS_RTOL = 2e-6  # float32 loss against float64
F32_GRAD_RTOL = 1e-4  # float32 gradients against the branch-matched float64 reference
BF16_UNIT_ROUNDOFF = 2.0**-8  # bfloat16 keeps 8 significant bits and rounds to nearest
BF16_GRAD_RTOL = 12 * BF16_UNIT_ROUNDOFF  # bfloat16-computed gradients against the operand-rounded reference


@dataclass(frozen=True)
class Tolerances:
    activations: float
    loss: float
    grads: float


EXACT = Tolerances(EXACT_RTOL, EXACT_RTOL, EXACT_RTOL)
FLOAT32 = Tolerances(F32_ACTIVATION_RTOL, F32_LOSS_RTOL, F32_GRAD_RTOL)
BFLOAT16 = Tolerances(F32_ACTIVATION_RTOL, F32_LOSS_RTOL, BF16_GRAD_RTOL)
# The compared jaxvae runs per conv implementation: (data dtype, compute dtype, tolerances).
RUNS = {
    "float64": (np.float64, "float32", EXACT),
    "float32": (np.float32, "float32", FLOAT32),
    "bfloat16": (np.float32, "bfloat16", BFLOAT16),
}


@dataclass(frozen=True)
class Row:
    """One compared tensor: the largest absolute difference, and that relative to the reference's largest |value|."""

    name: str
    shape: tuple
    max_abs: float
    rel: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.rel <= self.tolerance


def compare(name: str, got, want, tolerance: float) -> Row:
    """``got`` against the reference ``want`` (same shape, or an infinite difference)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return Row(name, want.shape, float("inf"), float("inf"), tolerance)
    max_abs = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    if not np.isfinite(got).all():
        rel = float("inf")
    return Row(name, want.shape, max_abs, rel, tolerance)


def compare_captures(got: Capture, want: Capture, tol: Tolerances) -> list[Row]:
    """Every activation (in torch's order), the loss, then every gradient; a tensor one side lacks fails."""
    missing = np.full((0,), np.nan)
    rows = [compare(k, got.activations.get(k, missing), a, tol.activations) for k, a in want.activations.items()]
    rows.append(compare("loss", [got.loss], [want.loss], tol.loss))
    rows += [compare(f"grad {k}", got.grads.get(k, missing), g, tol.grads) for k, g in want.grads.items()]
    return rows


def objective_tolerances(tol: Tolerances, objective: str, loss: float) -> Tolerances:
    """``tol`` for ``objective``. The importance-weighted bound's gradient weighs each draw by softmax(log w), and a
    softmax weight's relative error is the absolute error of the log weights' differences. A log weight is an image's
    loss, which float32 holds to ``F32_LOSS_RTOL`` of itself: so the gradients' bound gains twice that error (two log
    weights in a difference) for twice the batch's mean ``|loss|`` (an image's may be larger), 4 * 2e-6 * |loss|:
    4e-4 of a Gaussian loss of ~50 nats, 4e-3 of an untrained Bernoulli one of ~540 (measured there: 1.9e-4).
    float64's rounding makes it ~1e-13, inside ``EXACT``."""
    if objective != "iwae" or tol is EXACT:
        return tol
    return replace(tol, grads=tol.grads + 4 * F32_LOSS_RTOL * abs(loss))


@dataclass
class Verdict:
    """One compared run against its float64 reference."""

    label: str  # "jaxvae float64", "jaxvae float32", "jaxvae bfloat16", "torch float32"
    rows: list[Row]
    kinks: KinkStats = field(default_factory=KinkStats)
    error: str | None = None  # set when a side could not compute at all: a failed verdict, not a crash

    @property
    def passed(self) -> bool:
        return self.error is None and all(r.passed for r in self.rows)


def verdict(label: str, compute, state_dict, x, eps, tol: Tolerances, loss=None, bfloat16_operands=False):
    """``compute()``'s capture against torch_ref in float64 on the CPU (the loss of ``loss``, torch_capture's
    ``likelihood`` and ``objective``; default the seed's), matched to its branches within its kink zone (and, with
    ``bfloat16_operands``, to its operands' bfloat16 rounding). An exception on either side is a failed verdict
    that names it."""
    import torch  # optional: the parity harness needs it, training does not

    from jaxvae.parity.torch_side import torch_capture

    try:
        got = compute()
        options = dict(follow=got, zone=tol.activations, bfloat16_operands=bfloat16_operands, **(loss or {}))
        reference = torch_capture(state_dict, x, eps, torch.float64, "cpu", **options)
    except Exception as exc:  # a port that cannot run, or a reference that cannot load the weights, fails
        return Verdict(label, [], error=f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}")
    tol = objective_tolerances(tol, (loss or {}).get("objective", "elbo"), reference.loss)
    return Verdict(label, compare_captures(got, reference, tol), reference.kinks)


@dataclass
class ParityReport:
    """All verdicts of one comparison: torch float32 once, then one per compared run (``RUNS``) per conv
    implementation."""

    torch_float32: Verdict
    by_impl: dict[str, dict[str, Verdict]]
    torch_device: str

    def verdicts(self) -> list[Verdict]:
        return [self.torch_float32] + [v for runs in self.by_impl.values() for v in runs.values()]

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.verdicts())


def run_parity(
    state_dict, x, eps, conv_impls=CONV_IMPLS, likelihood="gaussian", runs=tuple(RUNS), objective="elbo"
) -> ParityReport:
    """Compare jaxvae with torch_ref from ``state_dict`` on images ``x`` (NHWC, [0, 1]) with noise ``eps`` (``(B, L)``,
    or ``(B, k, L)``: k draws per image), for each of ``conv_impls`` and ``runs`` (names in ``RUNS``); the loss and
    its gradients are those of ``likelihood`` (with ``"bernoulli"`` torch's Sigmoid output is not computed) and
    ``objective``."""
    loss = dict(likelihood=likelihood, objective=objective)
    import torch  # optional: the parity harness needs it, training does not

    from jaxvae.parity.torch_side import float32_without_tf32, torch_capture, torch_device

    def jaxvae_verdict(run: str, impl: str) -> Verdict:
        dtype, compute_dtype, tol = RUNS[run]
        capture = lambda: jax_capture(state_dict, x, eps, dtype, impl, compute_dtype=compute_dtype, **loss)  # noqa: E731
        return verdict(f"jaxvae {run}", capture, state_dict, x, eps, tol, loss, compute_dtype == "bfloat16")

    device = torch_device()
    with float32_without_tf32():
        reference = lambda: torch_capture(state_dict, x, eps, torch.float32, device, **loss)  # noqa: E731
        torch32 = verdict("torch float32", reference, state_dict, x, eps, FLOAT32, loss)
        by_impl = {impl: {run: jaxvae_verdict(run, impl) for run in runs} for impl in conv_impls}
    return ParityReport(torch32, by_impl, device)

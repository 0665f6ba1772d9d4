"""What ``jaxvae parity`` does: its inputs (a state dict, real digits, noise), the comparison, the report; and the
same at many seeds, for a no-false-alarm sweep. torch is imported where it is used (each place says so), so that
jaxvae imports and trains without it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax
import numpy as np

from jaxvae.convert import WeightMismatchError, infer_latent_dim, params_from_torch, params_to_torch
from jaxvae.data import binarize, load_mnist5k
from jaxvae.errors import UserError
from jaxvae.layers import CONV_IMPLS
from jaxvae.parity.method import run_parity
from jaxvae.parity.report import format_report, report_json
from jaxvae.run.config import check_value


def load_torch_weights(path: Path) -> dict:
    """A seed-style state dict from a file saved with ``torch.save`` (loaded with ``weights_only=True``)."""
    import torch  # optional: the parity harness needs it, training does not

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"--torch-weights {path} does not exist") from None
    except Exception as exc:  # pickle, zip and torch errors for damaged files
        first = (str(exc).strip().splitlines() or [""])[0].split(". ")[0]  # torch's advice to unpickle it is not ours
        raise UserError(
            f"--torch-weights {path} is not a loadable torch state dict ({type(exc).__name__}: {first}); save "
            "model.state_dict() with torch.save"
        ) from None
    if not isinstance(state, dict):
        raise UserError(
            f"--torch-weights {path} holds a {type(state).__name__}, not a state dict; save model.state_dict()"
        )
    return state


def parity_inputs(batch_size: int, latent_dim: int, seed: int, test=None, samples=1) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` real test digits drawn by ``seed`` (from mnist5k's test images, or from ``test``), and
    standard-normal noise from ``PRNGKey(seed)``: ``(B, L)``, or ``(B, samples, L)`` for several draws per image."""
    test = load_mnist5k().test.images if test is None else test
    if not 1 <= batch_size <= len(test):
        raise UserError(f"--batch-size must be between 1 and {len(test)} (the test digits), got {batch_size}")
    x = test[np.sort(np.random.default_rng(seed).choice(len(test), batch_size, replace=False))]
    shape = (batch_size, latent_dim) if samples == 1 else (batch_size, samples, latent_dim)
    return x, np.asarray(jax.random.normal(jax.random.PRNGKey(seed), shape))


def parity_weights(torch_weights: Path | None, latent_dim: int, seed: int) -> dict:
    """The state dict to compare from: a file's (checked against the seed's VAE), or torch_ref's init at ``seed``."""
    import torch  # optional: the parity harness needs it, training does not

    from torch_ref import VAE as TorchVAE

    if torch_weights is None:
        check_value("latent_dim", latent_dim)
        torch.manual_seed(seed)
        return {k: v.numpy() for k, v in TorchVAE(latent_dim).state_dict().items()}
    state = load_torch_weights(torch_weights)
    try:
        weights = params_to_torch(params_from_torch(state))  # float32; names a bad key, shape or dtype
        TorchVAE(infer_latent_dim(state)).load_state_dict(state, strict=True)  # and values that are no tensors
    except (WeightMismatchError, RuntimeError) as exc:
        raise UserError(
            f"--torch-weights {torch_weights} does not fit the seed's VAE: {str(exc).strip().splitlines()[-1].strip()}"
        ) from None
    broken = [k for k, v in weights.items() if not np.all(np.isfinite(v))]
    if broken:  # every tensor downstream would be NaN in both frameworks: nothing left to compare
        raise UserError(f"--torch-weights {torch_weights} holds non-finite values ({broken[0]}); give trained weights")
    return weights


def parity_check(
    torch_weights: Path | None, latent_dim: int, batch_size: int, seed: int, conv_impls: list[str], as_json=False,
    likelihood: str = "gaussian", test_images=None, objective: str = "elbo", samples: int = 1,
) -> tuple[str, bool]:  # fmt: skip
    """Every verdict per tensor for each implementation (a table, or JSON); and whether the port passed. The
    digits are mnist5k's test images, or ``test_images``; the loss is ``objective``'s with ``samples`` draws of z
    per image."""
    check_value("iw_train_samples", samples)
    check_value("seed", seed)
    state = parity_weights(torch_weights, latent_dim, seed)
    latent_dim = infer_latent_dim(state)
    x, eps = parity_inputs(batch_size, latent_dim, seed, test_images, samples)
    report = run_parity(state, x, eps, conv_impls, likelihood, objective=objective)
    weights = f"from {torch_weights}" if torch_weights else f"random (torch_ref's initialisation, seed {seed})"
    loss = dict(likelihood=likelihood, objective=objective, iw_train_samples=samples)
    if as_json:
        header = dict(latent_dim=latent_dim, batch_size=batch_size, seed=seed, weights=weights, **loss)
        return json.dumps(report_json(header, report)), report.passed
    tf32 = "; TF32 off for this comparison (torch's default allows it)" if report.torch_device == "cuda" else ""
    header = (
        f"parity: jaxvae vs torch_ref, latent {latent_dim}, batch {batch_size} real MNIST test digits (seed {seed}), "
        f"weights {weights}; {likelihood} loss, {objective} objective with {samples} draw(s) of z per image; torch "
        f"float32 on {report.torch_device}{tf32}; float64 on the CPU"
    )
    if objective == "iwae":
        header += "\nthe bound's float32 and bfloat16 gradients: their bound + 8e-6 x |loss| (objective_tolerances)"
    return format_report(header, report), report.passed


def sweep_case(latent_dim: int, batch_size: int, seeds, likelihood="gaussian", binary=False, conv_impls=None) -> dict:
    """The harness at each seed (weights, digits and noise all drawn from it), for a no-false-alarm sweep: the
    verdicts that failed, the worst relative error of each compared run, the kink flips, the rows of each, and a
    fingerprint of every relative error (equal exactly when the same kernels computed the same sums).
    ``conv_impls``: the implementations compared (default: every one)."""
    failed, worst, flips, rows, fingerprint = [], {}, {}, set(), hashlib.sha1()
    for seed in seeds:
        x, eps = parity_inputs(batch_size, latent_dim, seed)
        weights, x = parity_weights(None, latent_dim, seed), binarize.threshold(x) if binary else x
        report = run_parity(weights, x, eps, conv_impls or CONV_IMPLS, likelihood=likelihood)
        for v in report.verdicts():
            if not v.passed:
                failed.append((seed, v.label, v.error, [r.name for r in v.rows if not r.passed]))
            worst[v.label] = max([worst.get(v.label, 0.0)] + [r.rel for r in v.rows])
            flips[v.label] = flips.get(v.label, 0) + v.kinks.total_flips()
            fingerprint.update(",".join(f"{r.rel:.6e}" for r in v.rows).encode())
        rows.add(len(report.torch_float32.rows))
    return dict(failed=failed, worst=worst, flips=flips, rows=sorted(rows), fingerprint=fingerprint.hexdigest()[:8])
